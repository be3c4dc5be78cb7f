"""Per-job retry policy, snoozes (``raise raftq.Retry``) and ``raise raftq.Fail`` (docs/jobs.md
"Retry policy, snooze and fail", docs/handlers.md): the replicated rules, then the worker that
reports them, for async handlers (against a real state machine on a virtual clock), sync
handlers (in threads, against the fake cluster) and a ``raftq worker`` process.

The rules: a job's own ``RetryPolicy`` sets its backoff, computed in integers (no policy: the
default, bit for bit as before policies existed); a snooze puts the job back to pending
``snooze_ms`` on and gives its attempt back (attempts as before the claim, so ``max_attempts``
counts failures only), at most ``JOB_SNOOZES_MAX`` times, and the next snooze ends it dead with
an error that says so; ``Fail`` ends it dead at once; everything is fenced.
"""

from __future__ import annotations

import functools
import itertools
import json
import signal
import sys
import time
from pathlib import Path

import attrs
import cbor2
import pytest
import trio

import raftq
from raftq import codec, limits
from raftq.app import App, JobContext
from raftq.client.commands import describe
from raftq.client.jobfile import parse_job_file
from raftq.client.options import job_spec
from raftq.client.worker import Worker
from raftq.errors import ConfigError, DecodeError
from raftq.jobs.backoff import (
    RetryPolicy,
    least_delay_ms,
    policy_delay_ms,
    retry_delay_ms,
)
from raftq.jobs.commands import JobSpec, Lease, Outcome, Report, ReportResult
from raftq.jobs.job import JobState
from raftq.jobs.machine import JobStateMachine
from raftq.jobs.policy import SNOOZED_TOO_OFTEN
from tests.fake_node import FakeCluster
from tests.node_helpers import free_ports
from tests.test_app import FAST, running
from tests.test_claims import MachineClient, run_until
from tests.test_jobs_commands import Log, done, rejected, spec

POLICY = RetryPolicy(base_ms=10_000, max_ms=40_000, jitter_percent=10)

# --- the delay ------------------------------------------------------------------------------------


def test_no_policy_is_the_default_delay_bit_for_bit() -> None:
    """Old logs replay to the same state: a job without a policy waits exactly as before."""
    for attempt in range(1, 30):
        for job_id in ("j1-0", "job-7", "x" * 100):
            assert policy_delay_ms(job_id, attempt, None) == retry_delay_ms(job_id, attempt)


def test_a_policy_delay_is_exponential_capped_with_jitter_in_integers() -> None:
    seen = set()
    for attempt in range(1, 12):
        for n in range(50):
            delay = policy_delay_ms(f"j{n}", attempt, POLICY)
            least = min(40_000, 10_000 * 2 ** (attempt - 1))
            assert type(delay) is int
            assert least == least_delay_ms(attempt, POLICY)
            assert least <= delay <= least + least // 10
            seen.add(delay - least)
    assert len(seen) > 100  # the jitter spreads jobs apart
    flat = RetryPolicy(base_ms=500, max_ms=500, jitter_percent=0)
    assert {policy_delay_ms(f"j{n}", a, flat) for n in range(20) for a in (1, 5)} == {500}


def test_a_policy_is_checked() -> None:
    with pytest.raises(ValueError, match="below its base"):
        RetryPolicy(base_ms=2_000, max_ms=1_000, jitter_percent=0)
    with pytest.raises(ValueError, match="0 to 100"):
        RetryPolicy(base_ms=0, max_ms=1_000, jitter_percent=101)
    with pytest.raises(ValueError, match="from 0 to"):
        RetryPolicy(base_ms=0, max_ms=limits.RETRY_POLICY_MS_MAX + 1, jitter_percent=0)


def test_a_plain_job_spec_is_encoded_as_before_policies() -> None:
    """The policy is an added field: a job without one costs no byte and decodes from an
    entry written before the field existed."""
    plain = spec()
    assert len(cbor2.loads(codec.encode(plain))) == 9
    assert codec.decode(codec.encode(plain), JobSpec) == plain
    with_policy = spec(retry_policy=POLICY)
    assert cbor2.loads(codec.encode(with_policy))[-1] == [10_000, 40_000, 10]
    assert codec.decode(codec.encode(with_policy), JobSpec) == with_policy


# --- the state machine ----------------------------------------------------------------------------


def test_a_failed_attempt_waits_its_policy_delay() -> None:
    log = Log()
    (job_id,) = log.enqueue(spec(retry_policy=POLICY))
    lease = log.claim_one(now_ms=1_000)
    done(log.fail(lease, now_ms=2_000), "failed")
    view = log.view(job_id)
    assert view.run_at_ms == 2_000 + policy_delay_ms(job_id, 1, POLICY)
    assert view.run_at_ms >= 2_000 + 10_000  # the default would be 1 s
    assert view.retry_policy == POLICY
    assert log.claim(now_ms=view.run_at_ms - 1) == ()
    assert log.claim_one(now_ms=view.run_at_ms).attempt == 2


def test_a_policy_with_no_wait_makes_the_job_due_at_once() -> None:
    log = Log()
    (job_id,) = log.enqueue(spec(retry_policy=RetryPolicy(base_ms=0, max_ms=0, jitter_percent=0)))
    log.fail(log.claim_one(now_ms=5), now_ms=7)
    assert (log.state(job_id), log.view(job_id).run_at_ms) == ("pending", 7)
    assert log.claim_one(now_ms=7).attempt == 2


def snooze(log: Log, lease: Lease, delay_ms: int, *, now_ms: int) -> object:
    outcome = Outcome(job_id=lease.job_id, fence=lease.fence, succeeded=False, snooze_ms=delay_ms)
    result = log.apply(Report(now_ms=now_ms, outcomes=(outcome,)))
    assert isinstance(result, ReportResult)
    (answer,) = result.outcomes
    return answer


def test_a_snooze_gives_the_attempt_back_and_waits_its_delay() -> None:
    log = Log()
    (job_id,) = log.enqueue(spec(max_attempts=1))
    lease = log.claim_one(now_ms=100)
    done(snooze(log, lease, 5_000, now_ms=200), "pending")
    view = log.view(job_id)
    assert (view.attempts, view.snoozes, view.run_at_ms) == (0, 1, 5_200)
    assert log.events(job_id)[-1] == "snoozed"
    assert view.history[-1].attempt == 1  # names the attempt it gave back
    assert log.claim(now_ms=5_199) == ()
    again = log.claim_one(now_ms=5_200)
    assert again.attempt == 1  # max_attempts 1: the snooze did not use it up
    rejected(snooze(log, lease, 0, now_ms=5_300), "lease_lost")  # the old fence is stale
    done(log.complete(again, now_ms=5_400), "succeeded")


def test_the_snooze_past_the_bound_ends_the_job_dead_saying_why() -> None:
    log = Log()
    (job_id,) = log.enqueue(spec(max_attempts=1))
    now_ms = 0
    for _ in range(limits.JOB_SNOOZES_MAX):
        done(snooze(log, log.claim_one(now_ms=now_ms), 0, now_ms=now_ms), "pending")
        now_ms += 1
    assert log.view(job_id).snoozes == limits.JOB_SNOOZES_MAX
    done(snooze(log, log.claim_one(now_ms=now_ms), 0, now_ms=now_ms), "dead")
    view = log.view(job_id)
    assert (view.error, view.attempts, log.events(job_id)[-1]) == (
        SNOOZED_TOO_OFTEN,
        1,
        "snoozed too often",
    )
    assert [dead.id for dead in log.machine.dead_letters()] == [job_id]
    done(log.single(raftq.jobs.commands.Retry(now_ms=now_ms, job_id=job_id)), "pending")
    assert log.view(job_id).snoozes == 0  # an operator's retry: as many snoozes again
    done(snooze(log, log.claim_one(now_ms=now_ms), 0, now_ms=now_ms), "pending")


def test_a_snooze_of_a_job_whose_cancel_waits_cancels_it() -> None:
    log = Log()
    (job_id,) = log.enqueue(spec())
    lease = log.claim_one()
    done(log.single(raftq.jobs.commands.Cancel(now_ms=0, job_id=job_id)), "running")
    done(snooze(log, lease, 1_000, now_ms=1), "cancelled")


def test_not_retryable_is_dead_at_once_with_attempts_left() -> None:
    log = Log()
    (job_id,) = log.enqueue(spec(max_attempts=5, retry_policy=POLICY))
    done(log.fail(log.claim_one(), retryable=False, error="bad input"), "dead")
    assert (log.view(job_id).attempts, log.events(job_id)[-1]) == (1, "failed, not retryable")


def test_policies_and_snoozes_survive_a_snapshot() -> None:
    log = Log()
    first, second, _ = log.enqueue(spec(retry_policy=POLICY), spec(), spec(retry_policy=POLICY))
    snooze(log, log.claim_one(now_ms=1, queues=("default",)), 0, now_ms=2)
    restored = JobStateMachine.restore(log.machine.snapshot())
    assert restored.snapshot() == log.machine.snapshot()
    assert restored.get(first) == log.machine.get(first)
    view = restored.get(first)
    assert view is not None
    assert (view.retry_policy, view.snoozes) == (POLICY, 1)
    plain = restored.get(second)
    assert plain is not None
    assert plain.retry_policy is None
    assert restored.jobs[second].extra is None  # a plain job pays no extra record


def test_a_snapshot_section_naming_an_unknown_job_is_refused() -> None:
    log = Log()
    log.enqueue(spec(retry_policy=POLICY))
    machine = log.machine
    original = machine.snapshot_sections

    def tampered() -> dict[str, object]:
        sections = original()
        sections["jobs.retry_policy"] = [["no-such-job", [1, 2, 3]]]
        return sections

    machine.snapshot_sections = tampered  # type: ignore[method-assign]
    with pytest.raises(DecodeError, match="unknown job 'no-such-job'"):
        JobStateMachine.restore(machine.snapshot())
    sections_bad = {"jobs.retry_policy": [[next(iter(machine.jobs)), [5, 1, 0]]]}
    machine.snapshot_sections = lambda: sections_bad  # type: ignore[method-assign]
    with pytest.raises(DecodeError, match="bad retry policy"):
        JobStateMachine.restore(machine.snapshot())


# --- the client's ways to give a policy -----------------------------------------------------------


def test_the_job_file_client_and_defaults() -> None:
    (given, partial, none) = parse_job_file(
        b'[{"payload": 1, "backoff_ms": 200, "backoff_max_ms": 9000, "jitter_percent": 0},'
        b' {"payload": 2, "backoff_ms": 7200000}, {"payload": 3}]'
    )
    assert given.retry_policy == RetryPolicy(base_ms=200, max_ms=9_000, jitter_percent=0)
    # Left out: the default's values, the cap raised to a base above it.
    assert partial.retry_policy == RetryPolicy(
        base_ms=7_200_000, max_ms=7_200_000, jitter_percent=25
    )
    assert none.retry_policy is None
    made = job_spec("t", None, {"queue": "q", "backoff": 0.5, "jitter_percent": 5})
    assert made.retry_policy == RetryPolicy(
        base_ms=500, max_ms=limits.RETRY_CAP_MS, jitter_percent=5
    )


def test_a_handler_enqueued_with_a_policy() -> None:
    app = App(builtins=False)

    @app.handler("resize")
    async def resize(job: JobContext, file: str) -> object:
        return file

    job = resize.options(backoff=2, backoff_max=8, jitter_percent=0).job(file="a.png")
    assert (job["backoff_ms"], job["backoff_max_ms"], job["jitter_percent"]) == (2_000, 8_000, 0)
    (made,) = parse_job_file(json.dumps([job]))
    assert made.retry_policy == RetryPolicy(base_ms=2_000, max_ms=8_000, jitter_percent=0)
    assert "backoff_ms" not in resize.job(file="b.png")


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ('"backoff_ms": -1', "index 0, field 'backoff_ms': -1 is out of range"),
        ('"backoff_ms": 1.5', "index 0, field 'backoff_ms': must be an integer"),
        ('"backoff_ms": 10, "backoff_max_ms": 5', "index 0, field 'backoff_max_ms': 5 is out"),
        ('"jitter_percent": 200', "index 0, field 'jitter_percent': 200 is out of range"),
    ],
)
def test_a_bad_policy_field_is_refused_by_name(fields: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_job_file(f'[{{"payload": 1, {fields}}}]')


def test_bad_policy_keywords_and_snoozes_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="backoff of -1 s is out of range"):
        job_spec("t", None, {"backoff": -1})
    with pytest.raises(ValueError, match="delay_s must be from 0 to"):
        raftq.Retry(delay_s=-0.5)
    with pytest.raises(ValueError, match="delay_s must be from 0 to"):
        raftq.Retry(delay_s=float("nan"))
    with pytest.raises(TypeError, match="delay_s must be a number"):
        raftq.Retry(delay_s="5")  # type: ignore[arg-type]
    assert raftq.Retry(delay_s=1.2345).delay_ms == 1_234
    assert not raftq.Fail("why").retryable


# --- the worker: async handlers on a virtual clock ------------------------------------------------


async def test_an_async_handler_snoozes_then_succeeds_without_using_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = MachineClient()
    client.apply(
        raftq.jobs.commands.Enqueue(now_ms=0, jobs=(spec(type="work", id="a", max_attempts=1),))
    )
    runs: list[tuple[int, float]] = []
    app = App(builtins=False)

    @app.handler("work")
    async def work(job: JobContext) -> object:
        runs.append((job.attempt, trio.current_time()))
        if len(runs) < 3:
            raise raftq.Retry(delay_s=5)
        return "done"

    worker = Worker(client, app, poll_max_s=0.02)
    await run_until(worker, lambda: client.count(JobState.SUCCEEDED) == 1, 60)
    view = client.machine.get("a")
    assert view is not None
    assert (view.state, view.attempts, view.snoozes) == ("succeeded", 1, 2)
    assert [attempt for attempt, _ in runs] == [1, 1, 1]
    assert all(later - earlier >= 5 for (_, earlier), (_, later) in itertools.pairwise(runs))
    assert worker.statistics.snoozed == 2
    assert [event.event for event in view.history].count("snoozed") == 2


async def test_an_async_handler_that_raises_fail_is_dead_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = MachineClient()
    client.apply(
        raftq.jobs.commands.Enqueue(
            now_ms=0, jobs=(spec(type="work", id="a", max_attempts=5, retry_policy=POLICY),)
        )
    )
    app = App(builtins=False)

    @app.handler("work")
    async def work(job: JobContext) -> object:
        raise raftq.Fail("the input cannot work")

    worker = Worker(client, app, poll_max_s=0.02)
    await run_until(worker, lambda: client.count(JobState.DEAD) == 1, 60)
    view = client.machine.get("a")
    assert view is not None
    assert (view.attempts, view.error) == (1, "the input cannot work")
    assert "Traceback" not in view.error


# --- the worker: sync handlers, and a worker process ----------------------------------------------


@pytest.fixture
async def cluster(nursery: trio.Nursery) -> FakeCluster:
    fake = FakeCluster(("n1",))
    await fake.start(nursery)
    return fake


async def test_a_sync_handler_snoozes_and_fails(cluster: FakeCluster) -> None:
    app = App()
    runs: list[int] = []

    @app.handler("sync-snooze")
    def snoozer(job: JobContext) -> object:
        runs.append(job.attempt)
        time.sleep(0.001)  # blocking work, in its thread
        if len(runs) == 1:
            raise raftq.Retry(delay_s=0.01)
        return len(runs)

    @app.handler("sync-fail")
    def failer(job: JobContext) -> object:
        raise raftq.Fail("no")

    async with running(cluster, app) as (client, _):
        snoozed = await client.enqueue("sync-snooze", max_attempts=1)
        failed = await client.enqueue("sync-fail", max_attempts=4)
        job = await client.wait(snoozed, timeout=FAST)
        dead = await client.wait(failed, timeout=FAST)
    assert (job.state, job.result, job.attempts, job.snoozes) == ("succeeded", 2, 1, 1)
    assert runs == [1, 1]
    assert (dead.state, dead.attempts, dead.error) == ("dead", 1, "no")
    assert "snoozes       1" in describe(job)


async def test_a_worker_process_reports_snoozes_fails_and_progress(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    """``raftq worker`` (CONTRACT.md): the same outcomes from another process."""
    (tmp_path / "policy_jobs.py").write_text(
        "import raftq\napp = raftq.App()\n"
        "@app.handler('snooze-once')\nasync def snooze_once(job):\n"
        "    await job.progress({'step': job.payload})\n"
        "    if job.payload == 1:\n        raise raftq.Retry(delay_s=60)\n"
        "    return 'ok'\n"
        "@app.handler('refuse')\ndef refuse(job):\n    raise raftq.Fail('refused')\n"
    )
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        later = await client.enqueue("snooze-once", 1, max_attempts=1)
        now = await client.enqueue("snooze-once", 2)
        refused = await client.enqueue("refuse", max_attempts=3, backoff=30)
        command = [sys.executable, "-m", "raftq", "worker", "--import", "policy_jobs"]
        command += ["--cluster", cluster.addresses, "--log-level", "warning"]
        async with trio.open_nursery() as nursery:
            process = await nursery.start(
                functools.partial(trio.run_process, command, cwd=str(tmp_path), check=False)
            )
            finished = await client.wait(now, timeout=20)
            dead = await client.wait(refused, timeout=20)
            for _ in range(400):  # bounded: 20 s
                snoozed = await client.get(later)
                if snoozed.snoozes:
                    break
                await trio.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                await process.wait()
    assert (finished.state, finished.result) == ("succeeded", "ok")
    assert (dead.state, dead.attempts, dead.error) == ("dead", 1, "refused")
    assert dead.retry_policy == {
        "backoff_ms": 30_000,
        "backoff_max_ms": 3_600_000,
        "jitter_percent": 25,
    }
    assert (snoozed.state, snoozed.attempts, snoozed.snoozes) == ("pending", 0, 1)
    assert snoozed.run_at_ms - snoozed.history[-1].at_ms == 60_000
    assert process.returncode == 0


def test_the_public_names() -> None:
    assert {"Retry", "Fail"} <= set(raftq.__all__)
    assert issubclass(raftq.Fail, raftq.JobFailed)
    assert attrs.has(RetryPolicy)


def test_a_nodes_in_process_workers_snooze_fail_and_show_progress(tmp_path: Path) -> None:
    """In-process workers (``raftq.Queue``, a real single-node cluster): async and sync
    handlers, the same outcomes through the node's own worker."""
    (port,) = free_ports(1)
    app = raftq.App()
    snoozed: list[str] = []

    @app.handler("later")
    async def later(job: raftq.JobContext) -> object:
        await job.progress({"waiting": True})
        if job.id not in snoozed:
            snoozed.append(job.id)
            raise raftq.Retry(delay_s=0.2)
        return job.attempt

    @app.handler("never")
    def never(job: raftq.JobContext) -> object:
        job.progress_from_thread("looked at it")
        raise raftq.Fail("never works")

    with raftq.Queue(str(tmp_path), workers=2, app=app, listen=f"127.0.0.1:{port}") as queue:
        done_later = queue.wait(queue.enqueue("later", max_attempts=1), timeout=20)
        dead = queue.wait(queue.enqueue("never", max_attempts=3, backoff=60), timeout=20)
    assert (done_later.state, done_later.result, done_later.attempts) == ("succeeded", 1, 1)
    assert (done_later.snoozes, done_later.progress) == (1, {"waiting": True})
    assert [e.event for e in done_later.history].count("snoozed") == 1
    assert (dead.state, dead.attempts, dead.error) == ("dead", 1, "never works")
    assert dead.progress == "looked at it"
    assert dead.retry_policy == {
        "backoff_ms": 60_000,
        "backoff_max_ms": limits.RETRY_CAP_MS,
        "jitter_percent": 25,
    }
