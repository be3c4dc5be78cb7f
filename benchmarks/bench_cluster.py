"""Throughput of a cluster of real node processes: end to end, and enqueue two ways.

Run by ``raftq bench`` (or by hand); figures, not a test. Starts ``--nodes`` processes of
``python -m raftq.node`` on free 127.0.0.1 ports with ``--workers`` in-process workers each
(the built-in ``noop`` handler) and ``--fsync always|off``, then measures through the client
library, one after the other:

1. end to end: ``--jobs`` noop jobs (empty payload) enqueued with ``enqueue_many`` in batches
   of ``--batch`` from ``--producers`` concurrent producers while the workers run them; jobs/s
   from the first enqueue until ``status`` shows every one succeeded;
2. the queue paused (nothing is claimed, the workers idle), enqueue only:
   a. ``--jobs`` noop jobs with ``enqueue_many``, batches of ``--batch``, ``--producers``
      producers: acknowledged jobs/s;
   b. ``--single-jobs`` noop jobs with ``enqueue`` (one job per call) from ``--concurrency``
      concurrent callers: acknowledged jobs/s.

    python benchmarks/bench_cluster.py [--nodes 3] [--fsync always] [--jobs 20000] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio

import raftq
from raftq.client.client import Client
from raftq.local_cluster import open_local_cluster

QUEUE = "bench"


async def wait_for_leader(client: Client, seconds: float = 30) -> str:
    with trio.fail_after(seconds):
        while True:
            try:
                leader = (await client.status())["cluster"]["leader"]
            except raftq.NoQuorum:  # still starting
                leader = None
            if leader:
                return str(leader)
            await trio.sleep(0.05)


async def enqueue_batches(
    client: Client, jobs: int, batch: int, producers: int, prefix: str
) -> float:
    """Seconds to enqueue ``jobs`` noop jobs with ``enqueue_many`` from concurrent producers."""
    chunks: Iterator[range] = iter(
        [range(start, min(start + batch, jobs)) for start in range(0, jobs, batch)]
    )

    async def producer() -> None:
        for chunk in chunks:
            await client.enqueue_many(
                [
                    {"type": "noop", "payload": {}, "queue": QUEUE, "key": f"{prefix}{n}"}
                    for n in chunk
                ]
            )

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(producers):
            nursery.start_soon(producer)
    return time.perf_counter() - started


async def end_to_end(client: Client, arguments: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    enqueue_s = await enqueue_batches(
        client, arguments.jobs, arguments.batch, arguments.producers, "e2e-"
    )
    for _ in range(30_000):  # ten minutes of polls
        if (await client.status())["jobs"]["succeeded"] >= arguments.jobs:
            break
        await trio.sleep(0.02)
    else:
        raise TimeoutError(f"{arguments.jobs} jobs did not all succeed in ten minutes")
    seconds = time.perf_counter() - started
    return {
        "jobs": arguments.jobs,
        "seconds": seconds,
        "enqueue_seconds": enqueue_s,
        "jobs_per_second": arguments.jobs / seconds,
    }


async def enqueue_single(client: Client, jobs: int, concurrency: int) -> float:
    numbers = iter(range(jobs))

    async def caller() -> None:
        for n in numbers:
            await client.enqueue("noop", {}, queue=QUEUE, key=f"single-{n}")

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(caller)
    return time.perf_counter() - started


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="raftq-bench-cluster-"))
    try:
        async with (
            open_local_cluster(
                root, arguments.nodes, workers=arguments.workers, fsync=arguments.fsync == "always"
            ) as cluster,
            raftq.connect(cluster.client_addresses, timeout=60) as client,
        ):
            await wait_for_leader(client)
            e2e = await end_to_end(client, arguments)
            await client.pause(QUEUE)
            batch_s = await enqueue_batches(
                client, arguments.jobs, arguments.batch, arguments.producers, "batch-"
            )
            single_s = await enqueue_single(client, arguments.single_jobs, arguments.concurrency)
        return {
            "nodes": arguments.nodes,
            "fsync": arguments.fsync,
            "workers_per_node": arguments.workers,
            "end_to_end": e2e,
            "enqueue_batches": {
                "jobs": arguments.jobs,
                "batch": arguments.batch,
                "producers": arguments.producers,
                "jobs_per_second": arguments.jobs / batch_s,
            },
            "enqueue_single": {
                "jobs": arguments.single_jobs,
                "concurrency": arguments.concurrency,
                "jobs_per_second": arguments.single_jobs / single_s,
            },
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--fsync", choices=["always", "off"], default="always")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--workers", type=int, default=8, help="in-process workers per node")
    parser.add_argument("--single-jobs", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    report = trio.run(run, arguments)
    if arguments.json:
        print(json.dumps(report))
        return
    print(
        f"{report['nodes']} node(s), fsync {report['fsync']}: end to end "
        f"{report['end_to_end']['jobs_per_second']:,.0f} jobs/s; enqueue_many "
        f"{report['enqueue_batches']['jobs_per_second']:,.0f} jobs/s; single enqueues "
        f"{report['enqueue_single']['jobs_per_second']:,.0f} jobs/s"
    )


if __name__ == "__main__":
    main()
