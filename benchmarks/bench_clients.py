"""The client from every kind of Python program, side by side (issue 13 "Figures"): three real
node processes on 127.0.0.1, fsync on, no workers (the jobs stay pending), and through them:

- ``trio``: a ``raftq.connect`` client on a Trio loop;
- ``asyncio``: the same call on an asyncio loop (each loop in its own thread, AnyIO's portal
  hands it the work; the async clients are timed inside their own loop, so the hop between
  threads is not counted for them);
- ``sync``: ``raftq.SyncClient`` from the main thread, timed around the blocking call;
- ``sync x8``: one ``SyncClient`` shared by 8 threads (and, for reference, ``trio x8`` and
  ``asyncio x8``: one async client shared by 8 tasks);
- ``portal hop``: a call of a no-op from the main thread into a portal's Trio loop, the cost
  the SyncClient adds to each call.

Enqueue latency: ``--samples`` single enqueues per round and client, one at a time, each from
send to acknowledgement (p50, p99); the clients alternate enqueue by enqueue, so that load from
elsewhere on the machine falls on all of them alike. Then per round: ``enqueue_many``
throughput (``--batches`` batches of ``--batch`` jobs, one batch at a time) and the throughput
of single enqueues from 1 and from 8 threads (or tasks), each enqueueing one job at a time.

    python benchmarks/bench_clients.py [--samples 100] [--rounds 10] [--json]

Targets: the asyncio client within 10% of the Trio client; the SyncClient's p50 within 0.3 ms
of the async clients'; 8 threads at least 4x the single-enqueue throughput of one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
from anyio.from_thread import BlockingPortal, start_blocking_portal

import raftq
from raftq.local_cluster import LocalCluster

THREADS = 8


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Figures:
    """Samples of one client, gathered over the rounds."""

    def __init__(self) -> None:
        self.latencies_s: list[float] = []
        self.batch_jobs = 0
        self.batch_seconds = 0.0
        self.single_jobs = 0
        self.single_seconds = 0.0

    def add_batches(self, seconds: float, jobs: int) -> None:
        self.batch_seconds += seconds
        self.batch_jobs += jobs

    def add_singles(self, seconds: float, jobs: int) -> None:
        self.single_seconds += seconds
        self.single_jobs += jobs

    def report(self) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        if self.latencies_s:
            figures["p50_ms"] = round(percentile(self.latencies_s, 0.50) * 1000, 3)
            figures["p99_ms"] = round(percentile(self.latencies_s, 0.99) * 1000, 3)
            figures["mean_ms"] = round(statistics.fmean(self.latencies_s) * 1000, 3)
        if self.batch_seconds:
            figures["enqueue_many_jobs_per_s"] = round(self.batch_jobs / self.batch_seconds)
        if self.single_seconds:
            figures["single_enqueues_per_s"] = round(self.single_jobs / self.single_seconds)
        return figures


async def timed_enqueue(client: raftq.Client, number: int) -> float:
    """One enqueue, timed inside the client's own loop (the portal's hop is not counted)."""
    start = time.perf_counter()
    await client.enqueue("noop", number)
    return time.perf_counter() - start


async def time_batches(client: raftq.Client, batches: int, batch: int) -> float:
    jobs = [{"type": "noop", "payload": n} for n in range(batch)]
    start = time.perf_counter()
    for _ in range(batches):
        await client.enqueue_many(jobs)
    return time.perf_counter() - start


async def time_tasks(client: raftq.Client, tasks: int, enqueues_per_task: int) -> float:
    """The reference for the SyncClient's threads: as many tasks on one async client."""

    async def produce() -> None:
        for n in range(enqueues_per_task):
            await client.enqueue("noop", n)

    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(tasks):
            group.start_soon(produce)
    return time.perf_counter() - start


def time_sync_batches(client: raftq.SyncClient, batches: int, batch: int) -> float:
    jobs = [{"type": "noop", "payload": n} for n in range(batch)]
    start = time.perf_counter()
    for _ in range(batches):
        client.enqueue_many(jobs)
    return time.perf_counter() - start


def time_threads(client: raftq.SyncClient, threads: int, enqueues_per_thread: int) -> float:
    """``threads`` threads, each enqueueing one job at a time through the one client."""
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for n in range(enqueues_per_thread):
                client.enqueue("noop", n)
        except BaseException as error:  # re-raised below, in the main thread
            errors.append(error)

    workers = [threading.Thread(target=produce) for _ in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def measure(
    loops: dict[str, tuple[BlockingPortal, raftq.Client]],
    sync_client: raftq.SyncClient,
    figures: dict[str, Figures],
    arguments: argparse.Namespace,
) -> None:
    """One round. Latency samples alternate between the clients one enqueue at a time, so
    that a burst of load elsewhere on the machine falls on all of them alike."""
    for number in range(arguments.samples):
        for name, (portal, client) in loops.items():
            figures[name].latencies_s.append(portal.call(timed_enqueue, client, number))
        start = time.perf_counter()
        sync_client.enqueue("noop", number)
        figures["sync"].latencies_s.append(time.perf_counter() - start)
        start = time.perf_counter()  # what the SyncClient adds: one call into a portal's loop
        loops["trio"][0].call(anyio.lowlevel.checkpoint)
        figures["portal hop"].latencies_s.append(time.perf_counter() - start)
    per_thread = arguments.samples // THREADS
    for name, (portal, client) in loops.items():
        figures[name].add_batches(
            portal.call(time_batches, client, arguments.batches, arguments.batch),
            arguments.batches * arguments.batch,
        )
        seconds = portal.call(time_tasks, client, THREADS, per_thread)
        figures[f"{name} x{THREADS}"].add_singles(seconds, THREADS * per_thread)
    figures["sync"].add_batches(
        time_sync_batches(sync_client, arguments.batches, arguments.batch),
        arguments.batches * arguments.batch,
    )
    figures["sync"].add_singles(
        time_threads(sync_client, 1, THREADS * per_thread), THREADS * per_thread
    )
    seconds = time_threads(sync_client, THREADS, per_thread)
    figures[f"sync x{THREADS}"].add_singles(seconds, THREADS * per_thread)


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    names = [
        "trio",
        f"trio x{THREADS}",
        "asyncio",
        f"asyncio x{THREADS}",
        "sync",
        f"sync x{THREADS}",
        "portal hop",
    ]
    figures = {name: Figures() for name in names}
    with (
        tempfile.TemporaryDirectory(prefix="raftq-bench-clients-") as root,
        ExitStack() as stack,
    ):
        nodes_portal = stack.enter_context(start_blocking_portal("trio"))
        cluster = LocalCluster(Path(root), 3, workers=0, fsync=True)
        stack.callback(nodes_portal.call, cluster.stop)
        nodes_portal.call(cluster.start_all)
        addresses = cluster.client_addresses
        loops = {}
        for backend in ("trio", "asyncio"):  # each client on its own loop, in its own thread
            portal = stack.enter_context(start_blocking_portal(backend))
            connected = portal.wrap_async_context_manager(raftq.connect(addresses, timeout=30))
            loops[backend] = (portal, stack.enter_context(connected))
        sync_client = stack.enter_context(raftq.SyncClient(addresses, timeout=30))
        sync_client.status()  # the cluster has a leader
        for portal, client in loops.values():
            portal.call(timed_enqueue, client, 0)  # connected, the leader known
        sync_client.enqueue("noop")
        for _ in range(arguments.rounds):
            measure(loops, sync_client, figures, arguments)
        cluster.check_running()
    report = with_targets({name: each.report() for name, each in figures.items()})
    # Sample i of every client was taken within milliseconds of the others' sample i: the
    # median of the differences pair by pair is the SyncClient's own cost, with the load of
    # the moment taken out (the p50s above differ by the noise between their samples too).
    for name in ("trio", "asyncio"):
        differences = [
            sync_s - async_s
            for sync_s, async_s in zip(
                figures["sync"].latencies_s, figures[name].latencies_s, strict=True
            )
        ]
        report["targets"][f"sync_minus_{name}_paired_p50_ms"] = round(
            percentile(differences, 0.5) * 1000, 3
        )
    return report


def with_targets(report: dict[str, Any]) -> dict[str, Any]:
    on_trio, on_asyncio = report["trio"], report["asyncio"]
    trio_p50, asyncio_p50 = on_trio["p50_ms"], on_asyncio["p50_ms"]
    threads_ratio = (
        report[f"sync x{THREADS}"]["single_enqueues_per_s"]
        / report["sync"]["single_enqueues_per_s"]
    )
    report["targets"] = {
        "asyncio_p50_vs_trio": round(asyncio_p50 / trio_p50, 3),
        "asyncio_enqueue_many_vs_trio": round(
            on_asyncio["enqueue_many_jobs_per_s"] / on_trio["enqueue_many_jobs_per_s"], 3
        ),
        "sync_p50_minus_async_ms": round(report["sync"]["p50_ms"] - max(trio_p50, asyncio_p50), 3),
        f"sync_x{THREADS}_vs_1_thread": round(threads_ratio, 2),
    }
    return report


def print_table(report: dict[str, Any]) -> None:
    print(f"{'client':<10} {'p50 ms':>8} {'p99 ms':>8} {'enqueue_many/s':>15} {'single/s':>9}")
    for name, figures in report.items():
        if name == "targets":
            continue
        print(
            f"{name:<10} {figures.get('p50_ms', ''):>8} {figures.get('p99_ms', ''):>8} "
            f"{figures.get('enqueue_many_jobs_per_s', ''):>15} "
            f"{figures.get('single_enqueues_per_s', ''):>9}"
        )
    for target, value in report["targets"].items():
        print(f"{target}: {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100, help="single enqueues per round")
    parser.add_argument("--batches", type=int, default=10, help="enqueue_many calls per round")
    parser.add_argument("--batch", type=int, default=100, help="jobs per enqueue_many")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    report = run(arguments)
    if arguments.json:
        print(json.dumps(report))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
