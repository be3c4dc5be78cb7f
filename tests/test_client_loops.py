"""The remote worker, the job helpers, TLS and the secret handshake under asyncio and under Trio
(CONTRACT.md "Every kind of Python program": ``raftq.connect`` and all it yields run unchanged
on either loop), and ``raftq worker --loop asyncio`` against a real 3-node cluster.

The anyio tests run once per backend (tests/conftest.py); the fake cluster runs in a thread with
its own ``trio.run`` (``tests/fake_node.py``)."""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
import sniffio
import trio

import raftq
from raftq.app import App, JobContext
from raftq.client.client import Client
from raftq.client.worker import Worker
from raftq.jobs.commands import Extend
from raftq.jobs.machine import LEASE_EXPIRED
from raftq.local_cluster import open_local_cluster
from tests.fake_node import FakeCluster, fake_cluster_in_thread
from tests.test_security import SECRET, Pki, pki  # noqa: F401  (pki: a fixture)

FAST = 5.0
"""Client and wait timeouts for things that work: never reached when they do."""


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    with fake_cluster_in_thread(FakeCluster(("n1",))) as fake:
        yield fake


@asynccontextmanager
async def running(
    cluster: FakeCluster, app: App, **options: object
) -> AsyncIterator[tuple[Client, Worker]]:
    """A client, and a worker running until the block ends (then stopped and drained)."""
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        worker = Worker(client, app, poll_max_s=0.02, claimer_id="w1", **options)  # type: ignore[arg-type]
        async with anyio.create_task_group() as tasks:
            await tasks.start(worker.run)
            yield client, worker
            worker.stop()


def loop_app() -> App:
    app = App()

    @app.handler("where")
    async def where(job: JobContext) -> object:
        """Says which loop runs it; heartbeats on the way (an ``Extend`` each)."""
        await job.heartbeat()
        await anyio.sleep(0.01)
        await job.heartbeat()
        return {"loop": sniffio.current_async_library(), "payload": job.payload}

    @app.handler("asyncio_only")
    async def asyncio_only(job: JobContext) -> object:
        """Uses asyncio itself, as asyncpg or aiohttp would: fails under Trio."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.01)
        return {"loop_running": loop.is_running()}

    @app.handler("blocking")
    def blocking(job: JobContext) -> object:
        """A sync handler: a worker thread, with a heartbeat through the worker's loop."""
        time.sleep(0.01)
        job.heartbeat_from_thread()
        return {"thread": "worker"}

    @app.handler("hang")
    async def hang(job: JobContext) -> object:
        await anyio.sleep(60)
        return None

    return app


@pytest.mark.anyio
async def test_a_remote_worker_runs_handlers_with_heartbeats_on_either_loop(
    cluster: FakeCluster, anyio_backend: str
) -> None:
    async with running(cluster, loop_app()) as (client, worker):
        ids = [
            await client.enqueue("where", {"n": 1}),
            await client.enqueue("blocking"),
            await client.enqueue("hang", timeout=0.3, max_attempts=1),
        ]
        where, blocking, hang = [await client.wait(job_id, timeout=FAST) for job_id in ids]
    assert (where.state, where.result) == (
        "succeeded",
        {"loop": anyio_backend, "payload": {"n": 1}},
    )
    assert (blocking.state, blocking.result) == ("succeeded", {"thread": "worker"})
    assert hang.state == "dead"
    # The worker cancels it a tenth of its timeout before its lease ends and reports it timed
    # out; on a machine busy enough to hold that report past the lease, the lease's expiry ends
    # the attempt first, and says so (the worker counts its timeout either way, below).
    assert hang.error.startswith("timed out") or hang.error == LEASE_EXPIRED, hang.error
    assert len(cluster.submitted(Extend)) == 3  # two heartbeats of `where`, one of `blocking`
    assert (worker.statistics.succeeded, worker.statistics.timed_out) == (2, 1)


@pytest.mark.anyio
async def test_an_asyncio_only_handler_needs_the_asyncio_loop(
    cluster: FakeCluster, anyio_backend: str
) -> None:
    """What ``raftq worker --loop asyncio`` is for: under Trio the same handler fails."""
    async with running(cluster, loop_app()) as (client, _):
        job_id = await client.enqueue("asyncio_only", max_attempts=1)
        job = await client.wait(job_id, timeout=FAST)
    if anyio_backend == "asyncio":
        assert (job.state, job.result) == ("succeeded", {"loop_running": True})
    else:
        assert job.state == "dead"
        assert "no running event loop" in job.error


@pytest.mark.anyio
async def test_stop_lets_running_jobs_finish_on_either_loop(cluster: FakeCluster) -> None:
    app = App()
    started = anyio.Event()

    @app.handler("slow")
    async def slow(job: JobContext) -> object:
        started.set()
        await anyio.sleep(0.2)
        return "done"

    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        job_id = await client.enqueue("slow")
        worker = Worker(client, app, poll_max_s=0.02, grace_s=FAST)
        async with anyio.create_task_group() as tasks:
            await tasks.start(worker.run)
            with anyio.fail_after(FAST):
                await started.wait()
            worker.stop()  # run() returns once the job is reported
        assert (await client.get(job_id)).result == "done"


@pytest.mark.anyio
async def test_tls_and_the_secret_handshake_on_either_loop(
    pki: Pki,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeCluster(("n1",), secret=SECRET, tls=pki.node_tls())
    with fake_cluster_in_thread(fake):
        async with raftq.connect(
            fake.addresses, secret=SECRET, tls=pki.client_tls(), timeout=FAST
        ) as client:
            job_id = await client.enqueue("noop", {"over": "tls"})
            assert (await client.get(job_id)).payload == {"over": "tls"}
        async with raftq.connect(fake.addresses, tls=pki.client_tls(), timeout=FAST) as client:
            with pytest.raises(raftq.ConfigError, match="secret"):
                await client.enqueue("noop")
        async with raftq.connect(
            fake.addresses, secret=b"a wrong secret, long enough 12345", tls=pki.client_tls()
        ) as client:
            with pytest.raises(raftq.ConfigError, match="wrong secret"):
                await client.enqueue("noop")
        foreign = raftq.TlsConfig(ca_file=pki.foreign_ca)
        async with raftq.connect(fake.addresses, secret=SECRET, tls=foreign) as client:
            with pytest.raises(raftq.ConfigError, match="TLS: self-signed certificate"):
                await client.enqueue("noop")

        # The client told the node why (the TLS alert), so the node's log says it too: once
        # the node's thread has read the alert, which may be after the client has raised.
        def alert_logged() -> bool:
            return any("alert unknown ca" in record.getMessage() for record in caplog.records)

        for _ in range(500):  # at most 5 s; the node's thread logs it within milliseconds
            if alert_logged():
                break
            await anyio.sleep(0.01)
        assert alert_logged()
        async with raftq.connect(fake.addresses, secret=SECRET, timeout=FAST) as client:
            with pytest.raises(raftq.ConfigError, match=r"tls_plaintext"):
                await client.enqueue("noop")


@pytest.mark.anyio
async def test_connect_is_the_same_call_under_both_loops(cluster: FakeCluster) -> None:
    """``asyncio.run`` and ``trio.run`` of one coroutine function, from plain threads."""

    async def produce() -> str:
        async with raftq.connect(cluster.addresses, timeout=FAST) as client:
            job_id = await client.enqueue("noop", {"from": sniffio.current_async_library()})
            return str((await client.get(job_id)).payload["from"])

    def both() -> list[str]:
        return [asyncio.run(produce()), trio.run(produce)]

    assert await anyio.to_thread.run_sync(both) == ["asyncio", "trio"]


# --- `raftq worker --loop`, a real process against a real cluster ---------------------------------

HANDLERS = """
import asyncio

import raftq

app = raftq.App()


@app.handler("asyncio_only")
async def asyncio_only(job):
    loop = asyncio.get_running_loop()  # RuntimeError under Trio: no asyncio loop runs there
    await asyncio.sleep(0.01)
    await job.heartbeat()
    return {"loop": type(loop).__module__.split(".")[0], "n": job.payload["n"]}


@app.handler("blocking")
def blocking(job):
    job.heartbeat_from_thread()
    return {"n": job.payload["n"]}
"""


async def run_worker(
    addresses: str, directory: Path, loop: str, client: Client, jobs: list[tuple[str, int]]
) -> list[raftq.Job]:
    """Start ``raftq worker --loop LOOP``, enqueue ``jobs`` (type, n), wait for each, SIGTERM it
    (exit 0 expected), and return the finished jobs."""
    command = [sys.executable, "-m", "raftq", "worker", "--import", "loop_jobs", "--loop", loop]
    command += ["--cluster", addresses, "--log-level", "warning", "--concurrency", "2"]
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            functools.partial(trio.run_process, command, cwd=str(directory), check=False)
        )
        try:
            ids = [await client.enqueue(job_type, {"n": n}, max_attempts=1) for job_type, n in jobs]
            finished = [await client.wait(job_id, timeout=30) for job_id in ids]
        finally:
            process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            await process.wait()
    assert process.returncode == 0
    return finished


@pytest.mark.slow
async def test_the_worker_command_runs_asyncio_handlers_with_loop_asyncio(tmp_path: Path) -> None:
    """CONTRACT.md ``raftq worker --import MODULE --loop trio|asyncio``: a handler that needs
    asyncio fails under the default (Trio) and succeeds under ``--loop asyncio``."""
    (tmp_path / "loop_jobs.py").write_text(HANDLERS)
    async with (
        open_local_cluster(tmp_path / "cluster", 3) as local,
        raftq.connect(local.client_addresses, timeout=30) as client,
    ):
        addresses = ",".join(local.client_addresses)
        under_trio = await run_worker(addresses, tmp_path, "trio", client, [("asyncio_only", 1)])
        under_asyncio = await run_worker(
            addresses,
            tmp_path,
            "asyncio",
            client,
            [("asyncio_only", 2), ("blocking", 3)],
        )
    assert under_trio[0].state == "dead"
    assert "no running event loop" in under_trio[0].error
    assert [(job.state, job.result) for job in under_asyncio] == [
        ("succeeded", {"loop": "asyncio", "n": 2}),
        ("succeeded", {"n": 3}),
    ]
