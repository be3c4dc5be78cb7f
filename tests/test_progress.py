"""Progress (docs/handlers.md "Progress", docs/jobs.md "Progress"): ``await job.progress(value)``
and ``job.progress_from_thread(value)`` show a small JSON value on the job.

The replicated rule: a ``Progress`` value is stored only under the running attempt's fence (a
stale one changes nothing), replaces the previous one, is bounded in size and counted in the
cluster's held bytes, and a new claim clears it. The worker keeps each job's latest value and
sends all its jobs' values in one command at most every ``limits.PROGRESS_INTERVAL_MS``, so a
handler calling it in a loop costs one small entry per interval, not one per call.
"""

from __future__ import annotations

import itertools
import json
import time

import attrs
import pytest
import trio
from starlette.testclient import TestClient

import raftq
from raftq import limits
from raftq.app import App, JobContext
from raftq.client.commands import describe
from raftq.client.job import Job
from raftq.client.worker import Worker
from raftq.errors import ConfigError
from raftq.jobs.backoff import RetryPolicy
from raftq.jobs.commands import (
    Claim,
    ClaimResult,
    Enqueue,
    Lease,
    Outcome,
    Progress,
    ProgressResult,
    Report,
)
from raftq.jobs.job import JobState
from raftq.jobs.machine import JobStateMachine
from raftq.web import asgi_app
from tests.fake_node import FakeCluster, fake_cluster_in_thread
from tests.test_app import FAST, running
from tests.test_claims import MachineClient, run_until
from tests.test_jobs_commands import Log, done, rejected, spec


def progress(log: Log, lease: Lease, value: bytes, *, now_ms: int = 0) -> object:
    command = Progress(
        now_ms=now_ms, job_ids=(lease.job_id,), fences=(lease.fence,), values=(value,)
    )
    result = log.apply(command)
    assert isinstance(result, ProgressResult)
    (answer,) = result.outcomes
    return answer


# --- the state machine ----------------------------------------------------------------------------


def test_progress_is_stored_under_the_current_fence_only() -> None:
    log = Log()
    (job_id,) = log.enqueue(spec(max_attempts=3))
    first = log.claim_one()
    held = log.machine.held_bytes
    done(progress(log, first, b'{"done": 1}'), "running")
    done(progress(log, first, b'{"done": 2}'), "running")
    assert log.view(job_id).progress == b'{"done": 2}'
    assert log.machine.held_bytes == held + len(b'{"done": 2}')
    log.fail(first, now_ms=1)
    rejected(progress(log, first, b"9", now_ms=2), "lease_lost")  # failed: no lease
    assert log.view(job_id).progress == b'{"done": 2}'  # the last attempt's, until a claim
    held = log.machine.held_bytes
    second = log.claim_one(now_ms=100_000)
    assert log.view(job_id).progress == b""  # a new attempt starts without progress
    assert log.machine.held_bytes == held - len(b'{"done": 2}')
    rejected(progress(log, first, b"9", now_ms=100_001), "lease_lost")  # a stale fence
    assert log.view(job_id).progress == b""
    done(progress(log, second, b"3", now_ms=100_002), "running")
    log.complete(second, now_ms=100_003)
    rejected(progress(log, second, b"4", now_ms=100_004), "lease_lost")
    assert log.view(job_id).progress == b"3"


def test_progress_is_bounded_and_counted_in_the_held_bytes() -> None:
    # The largest Progress a worker sends is one entry a frame carries.
    value_bytes = limits.JOB_PROGRESS_BYTES_MAX + limits.JOB_ID_CHARS_MAX + 16
    assert limits.PROGRESS_JOBS_MAX * value_bytes <= limits.COMMAND_BYTES_MAX
    with pytest.raises(ValueError, match="progress value must be 1 to"):
        Progress(
            now_ms=0,
            job_ids=("j",),
            fences=(1,),
            values=(b"x" * (limits.JOB_PROGRESS_BYTES_MAX + 1),),
        )
    log = Log()
    log.enqueue(spec())
    lease = log.claim_one()
    log.machine.held_bytes_max = log.machine.held_bytes + 3
    done(progress(log, lease, b"123"), "running")
    rejected(progress(log, lease, b"1234"), "full")
    assert log.view(lease.job_id).progress == b"123"


def test_progress_survives_a_snapshot_and_is_forgotten_with_its_job() -> None:
    log = Log()
    (job_id,) = log.enqueue(spec())
    lease = log.claim_one()
    done(progress(log, lease, b"[1, 2]"), "running")
    restored = JobStateMachine.restore(log.machine.snapshot())
    assert restored.snapshot() == log.machine.snapshot()
    assert restored.held_bytes == log.machine.held_bytes
    view = restored.get(job_id)
    assert view is not None
    assert view.progress == b"[1, 2]"
    log.complete(lease, now_ms=10)
    log.count(raftq.jobs.commands.Purge(now_ms=20, before_ms=20))
    assert log.machine.held_bytes == 0


# --- the worker -----------------------------------------------------------------------------------


@attrs.define(eq=False)
class ProgressClient(MachineClient):
    """``MachineClient`` that also takes progress, keeping each ``Progress`` it applied."""

    sent: list[tuple[float, Progress]] = attrs.field(factory=list)

    async def progress(self, values: object) -> tuple[str | None, ...]:
        await trio.sleep(self.round_trip_s)
        items = list(values)  # type: ignore[call-overload]
        command = Progress(
            now_ms=self.now_ms(),
            job_ids=tuple(job_id for job_id, _, _ in items),
            fences=tuple(fence for _, fence, _ in items),
            values=tuple(value for _, _, value in items),
        )
        self.sent.append((trio.current_time(), command))
        result = self.apply(command)
        assert isinstance(result, ProgressResult)
        return tuple(getattr(each, "state", None) for each in result.outcomes)


async def test_a_chatty_handler_costs_one_entry_per_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = ProgressClient()
    jobs = tuple(spec(type="work", id=f"j{n}") for n in range(3))
    client.apply(Enqueue(now_ms=0, jobs=jobs))
    seen: dict[str, list[bytes]] = {}
    app = App(builtins=False)

    @app.handler("work")
    async def work(job: JobContext) -> object:
        for step in range(1, 501):  # 500 calls over 5 s
            await job.progress({"step": step})
            await trio.sleep(0.01)
            if step % 100 == 0:  # what the cluster shows meanwhile
                seen.setdefault(job.id, []).append(client.machine.jobs[job.id].run.progress)  # type: ignore[union-attr]
        return None

    worker = Worker(client, app, concurrency=3, poll_max_s=0.02)
    await run_until(worker, lambda: client.count(JobState.SUCCEEDED) == 3, 60)
    times = [at for at, _ in client.sent]
    interval_s = limits.PROGRESS_INTERVAL_MS / 1000
    assert all(later - earlier >= interval_s for earlier, later in itertools.pairwise(times))
    assert 4 <= len(client.sent) <= 7  # 1,500 calls: about one entry a second, all jobs in it
    assert {len(command.job_ids) for _, command in client.sent[1:-1]} == {3}
    for job_id in ("j0", "j1", "j2"):
        values = [json.loads(value)["step"] for value in seen[job_id][1:]]
        assert values == sorted(values)  # it moves on, and is at most an interval behind
        assert all(step * 100 - value <= 110 for step, value in enumerate(values, start=2))
    assert worker.statistics.progress_sent == sum(len(c.job_ids) for _, c in client.sent)


async def test_the_value_not_sent_when_its_attempt_ends_rides_in_its_report(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A job's last value is not lost to the interval: it goes in the outcome's report, under
    the same fence, and no ``Progress`` follows the outcome (it would be stale)."""
    client = ProgressClient()
    client.apply(Enqueue(now_ms=0, jobs=(spec(type="work", id="a"),)))
    app = App(builtins=False)

    @app.handler("work")
    async def work(job: JobContext) -> object:
        await job.progress(1)  # sent at once: none sent yet
        await trio.sleep(0.1)
        await job.progress(2)  # waits for the interval: the job ends first
        return None

    worker = Worker(client, app, poll_max_s=0.02)
    await run_until(worker, lambda: client.count(JobState.SUCCEEDED) == 1, 60)
    await trio.sleep(3 * limits.PROGRESS_INTERVAL_MS / 1000)
    assert [command.values for _, command in client.sent] == [(b"1",)]
    view = client.machine.get("a")
    assert view is not None
    assert (view.state, view.progress) == ("succeeded", b"2")


async def test_a_value_that_is_not_json_or_too_large_is_the_handlers_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = ProgressClient()
    client.apply(Enqueue(now_ms=0, jobs=(spec(type="work", id="a", max_attempts=1),)))
    app = App(builtins=False)

    @app.handler("work")
    async def work(job: JobContext) -> object:
        with pytest.raises(ConfigError, match="progress of job a:"):
            await job.progress("x" * limits.JOB_PROGRESS_BYTES_MAX)
        await job.progress({1, 2})  # a set: not JSON
        return None

    worker = Worker(client, app, poll_max_s=0.02)
    await run_until(worker, lambda: client.count(JobState.DEAD) == 1, 60)
    view = client.machine.get("a")
    assert view is not None
    assert "ConfigError: progress of job a:" in view.error
    assert client.sent == []


@pytest.fixture
async def cluster(nursery: trio.Nursery) -> FakeCluster:
    fake = FakeCluster(("n1",))
    await fake.start(nursery)
    return fake


async def test_a_sync_handler_reports_progress_from_its_thread(cluster: FakeCluster) -> None:
    app = App()
    release = trio.Event()
    token = trio.lowlevel.current_trio_token()

    @app.handler("sync-progress")
    def work(job: JobContext) -> object:
        job.progress_from_thread({"percent": 50})
        for _ in range(200):  # bounded: 2 s
            if release.is_set():
                break
            time.sleep(0.01)
        return "done"

    async with running(cluster, app) as (client, _):
        job_id = await client.enqueue("sync-progress")
        shown: Job | None = None
        for _ in range(200):  # bounded: 2 s
            shown = await client.get(job_id)
            if shown.progress is not None:
                break
            await trio.sleep(0.01)
        token.run_sync_soon(release.set)
        finished = await client.wait(job_id, timeout=FAST)
    assert shown is not None
    assert (shown.state, shown.progress) == ("running", {"percent": 50})
    assert f"progress      {json.dumps({'percent': 50})}" in describe(shown)
    assert shown.to_json()["progress"] == {"percent": 50}
    assert (finished.state, finished.progress) == ("succeeded", {"percent": 50})


def test_the_http_api_and_the_job_page_show_progress_snoozes_and_policy() -> None:
    policy = RetryPolicy(base_ms=1_500, max_ms=60_000, jitter_percent=10)
    with fake_cluster_in_thread(FakeCluster(("n1",))) as fake:

        def prepare() -> str:
            fake.apply(Enqueue(now_ms=0, jobs=(spec(id="shown", retry_policy=policy),)))
            claimed = fake.apply(Claim(now_ms=0, claimer="w1"))
            assert isinstance(claimed, ClaimResult)
            (lease,) = claimed.leases
            snoozed = Outcome(job_id="shown", fence=lease.fence, succeeded=False, snooze_ms=0)
            fake.apply(Report(now_ms=0, outcomes=(snoozed,)))
            claimed = fake.apply(Claim(now_ms=0, claimer="w1"))
            assert isinstance(claimed, ClaimResult)
            (lease,) = claimed.leases
            values = (b'{"done": 3, "total": 7}',)
            fake.apply(Progress(now_ms=0, job_ids=("shown",), fences=(lease.fence,), values=values))
            return lease.job_id

        job_id = fake.in_loop(prepare)
        with TestClient(asgi_app(fake.addresses, timeout=FAST)) as http:
            shown = http.get(f"/api/v1/jobs/{job_id}").json()
            page = http.get(f"/jobs/{job_id}").text
    assert shown["progress"] == {"done": 3, "total": 7}
    assert shown["snoozes"] == 1
    assert shown["retry_policy"] == {
        "backoff_ms": 1_500,
        "backoff_max_ms": 60_000,
        "jitter_percent": 10,
    }
    assert 'id="job-progress">{"done": 3, "total": 7}<' in page
    assert 'id="job-snoozes">1<' in page
    assert "jitter 10%" in page
