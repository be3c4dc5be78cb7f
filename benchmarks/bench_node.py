"""End-to-end benchmark: three real node processes on 127.0.0.1, fsync on.

Run by hand (``make bench``); figures, not a test. Starts ``python -m raftq.node`` three times
(free ports, a temporary data directory, ``--workers`` in-process workers each running the
built-in ``noop`` handler), then measures through the client library:

1. throughput: ``--jobs`` noop jobs enqueued in batches of ``--batch`` from ``--producers``
   concurrent producers; jobs/s from the first enqueue to the moment every job has
   succeeded (polled from ``status``);
2. latency: ``--samples`` single enqueues, one at a time, ``--gap-ms`` apart, on the otherwise
   idle cluster: each call's time from send to acknowledgement (committed and applied on the
   leader). The node CPU per enqueue includes running the job (claim, report) when there are
   workers;
3. failover: ``--failovers`` times, kill -9 the leader while a producer enqueues one job at a
   time; the time from the kill to the next acknowledged enqueue (the killed node is then
   restarted and the cluster settles before the next round).

    python benchmarks/bench_node.py [--jobs 20000] [--workers 64] [--json]

``--workers`` is each node's number of job slots (async handlers running at once). A worker
claims ahead of its free slots while its jobs run fast (docs/jobs.md, "Claims and prefetch"),
so one Claim entry serves hundreds of noop jobs whatever the slots: ``raftq bench`` runs the
throughput at 1, 4, 16 and 64 slots per node (``--samples 0 --failovers 0``). The report gives
node CPU per job, which holds even when other work shares the machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

import raftq
from raftq.client.client import Client
from raftq.local_cluster import LocalCluster


async def leader_of(client: Client) -> str:
    for _ in range(600):
        try:
            status = await client.status()
        except raftq.NoQuorum:  # the nodes are still starting
            status = {"cluster": {"leader": None}}
        leader = status["cluster"]["leader"]
        if leader:
            return str(leader)
        await trio.sleep(0.05)
    raise RuntimeError("no leader")


async def measure_throughput(
    cluster: LocalCluster, client: Client, jobs: int, batch: int, producers: int
) -> dict[str, Any]:
    batches = [
        [{"type": "noop", "payload": {}, "key": f"t-{start + n}"} for n in range(batch)]
        for start in range(0, jobs, batch)
    ]
    started = time.perf_counter()
    cpu_started = cluster.cpu_seconds()
    queue = iter(batches)

    async def producer() -> None:
        for chunk in queue:
            await client.enqueue_many(chunk)

    async with trio.open_nursery() as nursery:
        for _ in range(producers):
            nursery.start_soon(producer)
    enqueued = time.perf_counter()
    for _ in range(100_000 if cluster.workers else 0):  # no workers: enqueue only
        status = await client.status()
        if status["jobs"]["succeeded"] >= jobs:
            break
        await trio.sleep(0.02)
    finished = time.perf_counter()
    cpu = cluster.cpu_seconds() - cpu_started
    return {
        "node_cpu_ms_per_job": cpu * 1000 / jobs,
        "jobs": jobs,
        "enqueue_jobs_per_second": jobs / (enqueued - started),
        "end_to_end_jobs_per_second": jobs / (finished - started),
        "seconds": finished - started,
    }


async def measure_latency(
    cluster: LocalCluster, client: Client, samples: int, gap_s: float
) -> dict[str, Any] | None:
    if not samples:
        return None
    latencies = []
    cpu_started = cluster.cpu_seconds()
    for n in range(samples):
        await trio.sleep(gap_s)  # low load: the previous job has run before the next comes
        began = time.perf_counter()
        await client.enqueue("noop", {}, key=f"lat-{n}")
        latencies.append(time.perf_counter() - began)
    cpu = cluster.cpu_seconds() - cpu_started
    latencies.sort()
    return {
        "samples": samples,
        "node_cpu_ms_per_enqueue": cpu * 1000 / samples,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


async def measure_failover(cluster: LocalCluster, client: Client, rounds: int) -> dict[str, Any]:
    times = []
    for round_number in range(rounds):
        leader = await leader_of(client)
        for n in range(20):  # the cluster is live before the kill
            await client.enqueue("noop", {}, key=f"f{round_number}-pre-{n}")
        await cluster.kill(leader)
        killed = time.perf_counter()
        await client.enqueue("noop", {}, key=f"f{round_number}-after")
        times.append(time.perf_counter() - killed)
        await cluster.start(leader)
        await trio.sleep(2)  # let it catch up before the next round
    return {"rounds": rounds, "seconds": times, "worst_seconds": max(times, default=0.0)}


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="raftq-bench-node-"))
    cluster = LocalCluster(root, 3, workers=arguments.workers, tick_ms=arguments.tick_ms)
    try:
        for node in cluster.addresses:
            await cluster.start(node)
        async with raftq.connect(list(cluster.addresses.values()), timeout=30) as client:
            await leader_of(client)
            throughput = await measure_throughput(
                cluster, client, arguments.jobs, arguments.batch, arguments.producers
            )
            latency = await measure_latency(
                cluster, client, arguments.samples, arguments.gap_ms / 1000
            )
            failover = await measure_failover(cluster, client, arguments.failovers)
        return {
            "workers_per_node": arguments.workers,
            "throughput": throughput,
            "latency": latency,
            "failover": failover,
        }
    finally:
        with trio.CancelScope(shield=True):
            await cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--workers", type=int, default=64, help="job slots per node")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=5.0,
        help="pause before each latency sample (0: back to back, each enqueue then overlaps "
        "the previous job's claim and report)",
    )
    parser.add_argument("--failovers", type=int, default=3)
    parser.add_argument("--tick-ms", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    report = trio.run(run, arguments)
    if arguments.json:
        print(json.dumps(report))
        return
    throughput, latency, failover = report["throughput"], report["latency"], report["failover"]
    print(
        f"throughput: {throughput['jobs']:,} noop jobs, enqueue "
        f"{throughput['enqueue_jobs_per_second']:,.0f}/s, end to end "
        f"{throughput['end_to_end_jobs_per_second']:,.0f}/s, "
        f"node CPU {throughput['node_cpu_ms_per_job']:.3f} ms per job (all three nodes)"
    )
    if latency is not None:
        print(
            f"latency: enqueue p50 {latency['p50_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms, "
            f"node CPU {latency['node_cpu_ms_per_enqueue']:.2f} ms per enqueue (all three nodes)"
        )
    print(
        "failover: kill -9 of the leader to the next acknowledged enqueue: "
        + ", ".join(f"{seconds:.2f} s" for seconds in failover["seconds"])
    )


if __name__ == "__main__":
    main()
