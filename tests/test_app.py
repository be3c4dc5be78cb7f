"""``raftq.App`` and the remote ``Worker`` against a fake cluster (``tests/fake_node.py``): jobs
run, results and errors are reported under their fence, deadlines cancel, heartbeats renew,
a lost lease is survived, and ``stop()`` drains (CONTRACT.md "Python API", DESIGN.md "Job
semantics")."""

from __future__ import annotations

import functools
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import raftq
from raftq.app import App, JobContext, JobFailed, load_app
from raftq.client.client import Client
from raftq.client.worker import Worker
from raftq.jobs.commands import Extend, Report
from tests.fake_node import FakeCluster

FAST = 2.0


@pytest.fixture
async def cluster(nursery: trio.Nursery) -> FakeCluster:
    fake = FakeCluster(("n1",))
    await fake.start(nursery)
    return fake


@asynccontextmanager
async def running(
    cluster: FakeCluster, app: App, **options: object
) -> AsyncIterator[tuple[Client, Worker]]:
    """A client, and a worker running until the block ends (then stopped and drained)."""
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        worker = Worker(client, app, poll_max_s=0.02, claimer_id="w1", **options)  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            yield client, worker
            worker.stop()


async def wait_all(client: Client, ids: list[str]) -> list[raftq.Job]:
    return [await client.wait(job_id, timeout=FAST) for job_id in ids]


# --- App -----------------------------------------------------------------------------------------


def test_every_app_has_the_builtin_handlers() -> None:
    app = App()
    assert app.types == ("echo", "fail", "noop", "sleep")

    @app.handler("resize")
    def resize(job: JobContext) -> object:
        return None

    registered = app.lookup("resize")
    assert registered is not None
    assert (registered.function, registered.is_async) == (resize.function, False)
    with pytest.raises(raftq.ConfigError):
        app.register("", resize)


def test_load_app_takes_a_module_app_and_decorated_handlers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "with_app_module.py").write_text(
        "import raftq\napp = raftq.App()\n@app.handler('a')\nasync def a(job):\n    return 1\n"
    )
    (tmp_path / "decorated_module.py").write_text(
        "import raftq\n@raftq.handler('b')\ndef b(job):\n    return 2\n"
    )
    (tmp_path / "wrong_app_module.py").write_text("app = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    app = load_app(["with_app_module", "decorated_module"])
    assert {"a", "b", "noop"} <= set(app.types)
    with pytest.raises(raftq.ConfigError, match=r"not a raftq\.App"):
        load_app(["wrong_app_module"])
    with pytest.raises(raftq.ConfigError, match="cannot import"):
        load_app(["no_such_module_here"])


# --- Worker --------------------------------------------------------------------------------------


async def test_builtin_handlers_run_and_report(cluster: FakeCluster) -> None:
    async with running(cluster, App(), concurrency=4) as (client, worker):
        echo = await client.enqueue("echo", {"hello": ["world"]})
        noop = await client.enqueue("noop")
        sleep = await client.enqueue("sleep", {"sleep_ms": 30})
        fail = await client.enqueue("fail", max_attempts=1)
        jobs = await wait_all(client, [echo, noop, sleep, fail])
    assert [job.state for job in jobs] == ["succeeded", "succeeded", "succeeded", "dead"]
    assert jobs[0].result == {"hello": ["world"]}
    assert "always fails" in jobs[3].error
    assert [e.event for e in jobs[0].history] == ["enqueued", "claimed", "succeeded"]
    assert jobs[0].history[1].node == "w1"
    assert worker.statistics.succeeded == 3


async def test_outcomes_that_finish_together_share_one_report(cluster: FakeCluster) -> None:
    """One report in flight at a time: the jobs finishing meanwhile ride in the next one, so
    a busy worker settles many jobs per log entry."""
    async with running(cluster, App(), concurrency=8) as (client, worker):
        ids = await client.enqueue_many([{"type": "noop", "payload": {}} for _ in range(64)])
        jobs = await wait_all(client, ids)
    assert {job.state for job in jobs} == {"succeeded"}
    reports = cluster.submitted(Report)
    assert sorted(o.job_id for r in reports for o in r.outcomes) == sorted(ids)  # each once
    assert len(reports) <= len(ids) // 2, [len(r.outcomes) for r in reports]
    assert worker.statistics.succeeded == 64


async def test_a_handler_exception_fails_the_attempt_with_its_traceback(
    cluster: FakeCluster,
) -> None:
    app = App()
    attempts: list[int] = []

    @app.handler("flaky")
    async def flaky(job: JobContext) -> object:
        attempts.append(job.attempt)
        raise KeyError("no such thing")

    async with running(cluster, app) as (client, _):
        job = await client.wait(await client.enqueue("flaky", max_attempts=1), timeout=FAST)
    assert job.state == "dead"
    assert "Traceback" in job.error
    assert "KeyError: 'no such thing'" in job.error
    assert attempts == [1]


async def test_sync_handlers_run_in_a_thread(cluster: FakeCluster) -> None:
    app = App()

    @app.handler("blocking")
    def blocking(job: JobContext) -> object:
        time.sleep(0.05)  # would stall the event loop if run on it
        return {"payload": job.payload, "fence": job.fence}

    async with running(cluster, app, concurrency=3) as (client, _):
        ids = [await client.enqueue("blocking", n) for n in range(3)]
        started = trio.current_time()
        jobs = await wait_all(client, ids)
    assert trio.current_time() - started < 0.5
    assert [job.result["payload"] for job in jobs] == [0, 1, 2]
    assert all(job.result["fence"] > 0 for job in jobs)


async def test_concurrency_bounds_the_jobs_running_at_once(cluster: FakeCluster) -> None:
    app = App()
    now_running = 0
    most = 0

    @app.handler("slow")
    async def slow(job: JobContext) -> None:
        nonlocal now_running, most
        now_running += 1
        most = max(most, now_running)
        await trio.sleep(0.02)
        now_running -= 1

    async with running(cluster, app, concurrency=3) as (client, _):
        ids = await client.enqueue_many([{"type": "slow", "payload": n} for n in range(10)])
        jobs = await wait_all(client, ids)
    assert {job.state for job in jobs} == {"succeeded"}
    assert most == 3


async def test_a_handler_past_its_timeout_is_cancelled(cluster: FakeCluster) -> None:
    app = App()
    cancelled = trio.Event()

    @app.handler("hang")
    async def hang(job: JobContext) -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    async with running(cluster, app) as (client, worker):
        # 1 s: the handler is cancelled 100 ms before its lease ends (a tenth of the timeout),
        # room for its report under load; at 0.2 s (20 ms) the fake cluster, which expires
        # leases at every command, often saw the lease expire first on a busy machine.
        job_id = await client.enqueue("hang", timeout=1.0, max_attempts=1)
        job = await client.wait(job_id, timeout=FAST + 1.0)
    assert cancelled.is_set()
    assert job.state == "dead"
    assert "timed out" in job.error
    assert worker.statistics.timed_out == 1


async def test_heartbeats_keep_a_long_job_alive(cluster: FakeCluster) -> None:
    app = App()

    @app.handler("long")
    async def long(job: JobContext) -> str:
        for _ in range(4):  # 4 x 0.1 s, with a timeout of 0.2 s
            await trio.sleep(0.1)
            await job.heartbeat()
        return "done"

    @app.handler("long_sync")
    def long_sync(job: JobContext) -> str:
        for _ in range(4):
            time.sleep(0.1)
            job.heartbeat_from_thread()
        return "done too"

    async with running(cluster, app) as (client, _):
        ids = [await client.enqueue(kind, timeout=0.2) for kind in ("long", "long_sync")]
        jobs = await wait_all(client, ids)
    assert [(job.state, job.result) for job in jobs] == [
        ("succeeded", "done"),
        ("succeeded", "done too"),
    ]
    assert len(cluster.submitted(Extend)) >= 8


async def test_a_lost_lease_is_logged_not_fatal(cluster: FakeCluster) -> None:
    """Another party takes the job over while it runs (here: its lease expires and a test
    client claims it): the worker's report is refused with lease_lost, and it carries on."""
    app = App()
    release = trio.Event()

    @app.handler("slow")
    async def slow(job: JobContext) -> str:
        await release.wait()
        return "late"

    async with running(cluster, app, concurrency=1) as (client, worker):  # so it claims no more
        job_id = await client.enqueue("slow", timeout=60)
        while (await client.get(job_id)).state != "running":  # noqa: ASYNC110 (polls the cluster)
            await trio.sleep(0.01)
        cluster.clock_offset_ms += 61_000  # the lease expires on the cluster ...
        await client.retry(job_id)  # ... so the attempt failed; run it again now
        (lease,) = await client.claim("thief", ["slow"])
        await client.complete(lease.job_id, lease.fence, "stolen")
        release.set()
        job = await client.get(job_id)
        follow_up = await client.wait(await client.enqueue("noop"), timeout=FAST)
    assert (job.state, job.result) == ("succeeded", "stolen")
    assert follow_up.state == "succeeded"  # the worker is still working
    assert worker.statistics.lease_lost >= 1


async def test_stop_lets_running_jobs_finish(cluster: FakeCluster) -> None:
    app = App()
    started = trio.Event()

    @app.handler("slow")
    async def slow(job: JobContext) -> str:
        started.set()
        await trio.sleep(0.1)
        return "finished"

    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        worker = Worker(client, app, poll_max_s=0.02)
        job_id = await client.enqueue("slow")
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            await started.wait()
            worker.stop()
        # run() returned only after the job finished
        assert (await client.get(job_id)).result == "finished"
        assert (await client.get(await client.enqueue("noop"))).state == "pending"


async def test_past_the_grace_period_jobs_are_failed_for_a_quick_retry(
    cluster: FakeCluster,
) -> None:
    app = App()
    started = trio.Event()

    @app.handler("endless")
    async def endless(job: JobContext) -> None:
        started.set()
        await trio.sleep_forever()

    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        worker = Worker(client, app, poll_max_s=0.02, grace_s=0.05)
        job_id = await client.enqueue("endless")
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            await started.wait()
            worker.stop()
        job = await client.get(job_id)
    assert job.state == "failed"
    assert "stopped" in job.error


async def test_job_failed_is_reported_without_a_traceback(cluster: FakeCluster) -> None:
    app = App()

    @app.handler("refuse")
    async def refuse(job: JobContext) -> None:
        raise JobFailed("bad input", retryable=False)

    async with running(cluster, app) as (client, _):
        job = await client.wait(await client.enqueue("refuse", max_attempts=5), timeout=FAST)
    assert (job.state, job.error, job.attempts) == ("dead", "bad input", 1)


def test_a_worker_needs_handlers_and_a_sane_concurrency() -> None:
    client: Callable[..., object] = object  # never used: the constructor refuses first
    with pytest.raises(raftq.ConfigError):
        Worker(client, App(builtins=False))  # type: ignore[arg-type]
    with pytest.raises(raftq.ConfigError):
        Worker(client, App(), concurrency=0)  # type: ignore[arg-type]


async def test_the_worker_command_runs_an_imported_app_until_sigterm(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    """CONTRACT.md: ``raftq worker --import MODULE``; SIGTERM stops it with exit code 0."""
    (tmp_path / "worker_jobs.py").write_text(
        "import raftq\napp = raftq.App()\n"
        "@app.handler('double')\nasync def double(job):\n    return job.payload * 2\n"
    )
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        job_id = await client.enqueue("double", 21)
        command = [sys.executable, "-m", "raftq", "worker", "--import", "worker_jobs"]
        command += ["--cluster", cluster.addresses, "--log-level", "warning"]
        async with trio.open_nursery() as nursery:
            process = await nursery.start(
                functools.partial(trio.run_process, command, cwd=str(tmp_path), check=False)
            )
            job = await client.wait(job_id, timeout=20)
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                await process.wait()
    assert (job.state, job.result) == ("succeeded", 42)
    assert process.returncode == 0
