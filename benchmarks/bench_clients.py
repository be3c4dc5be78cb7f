"""The client from every kind of Python program, side by side (issue 13 "Figures"): three real
node processes on 127.0.0.1, fsync on, no workers (the jobs stay pending), and through them:

- ``trio``: ``raftq.connect`` under ``trio.run``;
- ``asyncio``: the same call under ``asyncio.run``;
- ``sync``: ``raftq.SyncClient`` from the main thread (its loop thread behind a portal);
- ``sync x8``: one ``SyncClient`` shared by 8 threads (and, for reference, ``trio x8`` and
  ``asyncio x8``: one async client shared by 8 tasks).

For each: enqueue latency (``--samples`` single enqueues one at a time, each from send to
acknowledgement; p50, p99) and ``enqueue_many`` throughput (``--batches`` batches of
``--batch`` jobs, one batch at a time); from 1 and from 8 threads or tasks, the
throughput of single enqueues (each thread or task enqueueing one job at a time). The clients take
turns in ``--rounds`` short rounds, so load from elsewhere on the machine falls on all of them
alike.

    python benchmarks/bench_clients.py [--samples 100] [--rounds 10] [--json]

Targets: the asyncio client within 10% of the Trio client; the SyncClient's p50 within 0.3 ms
of the async clients'; 8 threads at least 4x the single-enqueue throughput of one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import trio
from anyio.from_thread import start_blocking_portal

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


async def measure_async(
    client: raftq.Client,
    figures: Figures,
    concurrent: Figures,
    samples: int,
    batches: int,
    batch: int,
) -> None:
    """The same code under trio.run and asyncio.run: the client takes no side."""
    await client.enqueue("noop")  # connections open, the leader known
    start = time.perf_counter()
    for n in range(samples):
        sent = time.perf_counter()
        await client.enqueue("noop", n)
        figures.latencies_s.append(time.perf_counter() - sent)
    figures.single_seconds += time.perf_counter() - start
    figures.single_jobs += samples

    async def produce(count: int) -> None:
        for n in range(count):
            await client.enqueue("noop", n)

    # The reference for the SyncClient's threads: as many tasks, on one client.
    start = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for _ in range(THREADS):
            tasks.start_soon(produce, samples // THREADS)
    concurrent.single_seconds += time.perf_counter() - start
    concurrent.single_jobs += samples // THREADS * THREADS
    jobs = [{"type": "noop", "payload": n} for n in range(batch)]
    start = time.perf_counter()
    for _ in range(batches):
        await client.enqueue_many(jobs)
    figures.batch_seconds += time.perf_counter() - start
    figures.batch_jobs += batches * batch


def run_async_client(
    runner: Callable[[Callable[[], Awaitable[None]]], None],
    addresses: list[str],
    figures: Figures,
    concurrent: Figures,
    arguments: argparse.Namespace,
) -> None:
    async def main() -> None:
        async with raftq.connect(addresses, timeout=30) as client:
            await measure_async(
                client, figures, concurrent, arguments.samples, arguments.batches, arguments.batch
            )

    runner(main)


def run_asyncio(main: Callable[[], Awaitable[None]]) -> None:
    async def coroutine() -> None:
        await main()

    asyncio.run(coroutine())


def measure_sync(client: raftq.SyncClient, figures: Figures, arguments: argparse.Namespace) -> None:
    client.enqueue("noop")
    for n in range(arguments.samples):
        start = time.perf_counter()
        client.enqueue("noop", n)
        figures.latencies_s.append(time.perf_counter() - start)
    jobs = [{"type": "noop", "payload": n} for n in range(arguments.batch)]
    start = time.perf_counter()
    for _ in range(arguments.batches):
        client.enqueue_many(jobs)
    figures.batch_seconds += time.perf_counter() - start
    figures.batch_jobs += arguments.batches * arguments.batch


def measure_threads(
    client: raftq.SyncClient, figures: Figures, threads: int, enqueues_per_thread: int
) -> None:
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
    figures.single_seconds += time.perf_counter() - start
    figures.single_jobs += threads * enqueues_per_thread
    if errors:
        raise errors[0]


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    names = (
        "trio",
        f"trio x{THREADS}",
        "asyncio",
        f"asyncio x{THREADS}",
        "sync",
        f"sync x{THREADS}",
    )
    figures = {name: Figures() for name in names}
    with (
        tempfile.TemporaryDirectory(prefix="raftq-bench-clients-") as root,
        start_blocking_portal("trio") as portal,
    ):
        cluster = LocalCluster(Path(root), 3, workers=0, fsync=True)
        try:
            portal.call(cluster.start_all)
            addresses = cluster.client_addresses
            with raftq.SyncClient(addresses, timeout=30) as client:
                client.status()
                for _ in range(arguments.rounds):
                    for name, runner in (("trio", trio.run), ("asyncio", run_asyncio)):
                        run_async_client(
                            runner,
                            addresses,
                            figures[name],
                            figures[f"{name} x{THREADS}"],
                            arguments,
                        )
                    measure_sync(client, figures["sync"], arguments)
                    per_thread = arguments.samples // THREADS
                    measure_threads(client, figures["sync"], 1, per_thread * THREADS)
                    measure_threads(client, figures[f"sync x{THREADS}"], THREADS, per_thread)
            cluster.check_running()
        finally:
            portal.call(cluster.stop)
    report = {name: each.report() for name, each in figures.items()}
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
        f"trio_x{THREADS}_tasks_vs_1_task": round(
            report[f"trio x{THREADS}"]["single_enqueues_per_s"] / on_trio["single_enqueues_per_s"],
            2,
        ),
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
