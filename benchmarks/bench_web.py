"""The HTTP JSON API's figures (issue 15 "Figures"): three real node processes on 127.0.0.1
(fsync on, no workers, so the jobs stay pending) and ``raftq web`` (Hypercorn, Trio worker)
in front of them, driven over real HTTP by httpx on this process's Trio loop:

- enqueue throughput: ``--requests`` POSTs of ``--batch`` jobs each, ``--concurrency`` at a
  time; jobs per second from the first send to the last answer;
- enqueue latency: the same POSTs one at a time, send to answer (p50, p99);
- then the cluster is filled to ``--jobs`` jobs (through the client library, 10,000 per
  command); one ``GET /api/v1/status`` at once (``status_after_fill``: every node is still
  decoding and applying the last 10,000-job entries, and status waits for the slowest), then
  the bench waits until every node has applied the commit index, and ``--samples`` times
  each: ``GET /api/v1/status`` (what the overview page shows), the first page of ``GET
  /api/v1/jobs`` (100 jobs), a filtered page of a rare state, the newest page, and the
  dashboard's pages (overview, jobs, queues, dead: whole HTML pages, as a browser first
  loads them): the server's own time (its Server-Timing header: from the request's arrival
  to the answer's first byte) and the payload size.
- ``--apply-cost``: also time, in this process, decoding and applying one 10,000-job Enqueue
  entry to a state machine holding ``--jobs`` jobs (what blocks each node's loop).

    python benchmarks/bench_web.py [--jobs 100000] [--requests 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import trio

import raftq
from raftq.local_cluster import LocalCluster, free_ports

FILL_BATCH = 10_000


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def batch_body(batch: int, tag: str) -> list[dict[str, Any]]:
    return [{"type": "bench", "payload": {"n": n, "tag": tag}} for n in range(batch)]


async def enqueue_throughput(
    http: httpx.AsyncClient, requests: int, batch: int, concurrency: int
) -> dict[str, float]:
    sent = 0
    started = time.perf_counter()

    async def sender() -> None:
        nonlocal sent
        while sent < requests:
            sent += 1
            response = await http.post("/api/v1/jobs", json=batch_body(batch, f"t{sent}"))
            assert response.status_code == 201, response.text

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(sender)
    seconds = time.perf_counter() - started
    return {"jobs_per_s": requests * batch / seconds, "requests_per_s": requests / seconds}


async def enqueue_latency(http: httpx.AsyncClient, requests: int, batch: int) -> dict[str, float]:
    latencies_s = []
    for request in range(requests):
        started = time.perf_counter()
        response = await http.post("/api/v1/jobs", json=batch_body(batch, f"l{request}"))
        latencies_s.append(time.perf_counter() - started)
        assert response.status_code == 201, response.text
    return {
        "p50_ms": percentile(latencies_s, 0.5) * 1000,
        "p99_ms": percentile(latencies_s, 0.99) * 1000,
    }


async def fill(addresses: list[str], jobs: int) -> int:
    async with raftq.connect(addresses, timeout=60) as client:
        held = sum((await client.status())["jobs"].values())
        while held < jobs:
            count = min(FILL_BATCH, jobs - held)
            await client.enqueue_many(
                [{"type": "bench", "payload": {"n": n}} for n in range(count)]
            )
            held += count
        return held


async def settle(addresses: list[str], timeout_s: float = 120.0) -> float:
    """Wait until every node has applied the cluster's commit index; seconds it took."""
    started = time.perf_counter()
    async with raftq.connect(addresses, timeout=60) as client:
        with trio.fail_after(timeout_s):
            while True:
                cluster = (await client.status())["cluster"]
                applied = [node["applied_index"] for node in cluster["nodes"]]
                if cluster["leader"] and min(applied) >= cluster["commit_index"]:
                    return time.perf_counter() - started
                await trio.sleep(0.05)


def apply_cost(jobs_held: int) -> dict[str, float]:
    """Decode and apply one 10,000-job Enqueue entry (as each node does for each such entry,
    in one go on its event loop) to a state machine already holding ``jobs_held`` jobs."""
    from raftq import codec
    from raftq.client.jobfile import encode_json
    from raftq.jobs.commands import Command, Enqueue, JobSpec
    from raftq.jobs.machine import JobStateMachine

    machine = JobStateMachine()
    decode_ms, apply_ms = [], []
    for index in range(1, jobs_held // FILL_BATCH + 1):
        specs = tuple(
            JobSpec(
                id="", type="bench", payload=encode_json({"n": n}, 100), queue="default",
                priority=0, delay_ms=0, max_attempts=3, timeout_ms=30_000, key="",
            )
            for n in range(FILL_BATCH)
        )  # fmt: skip
        entry = codec.encode(Enqueue(now_ms=index, jobs=specs), Command)
        started = time.perf_counter()
        command = codec.decode(entry, Command)
        decoded = time.perf_counter()
        machine.apply(index, command)
        decode_ms.append((decoded - started) * 1000)
        apply_ms.append((time.perf_counter() - decoded) * 1000)
    return {
        "decode_p50_ms": statistics.median(decode_ms),
        "apply_p50_ms": statistics.median(apply_ms),
        "decode_and_apply_max_ms": max(d + a for d, a in zip(decode_ms, apply_ms, strict=True)),
    }


async def read_figures(http: httpx.AsyncClient, path: str, samples: int) -> dict[str, float]:
    server_ms, round_trip_ms, sizes = [], [], []
    for _ in range(samples):
        started = time.perf_counter()
        response = await http.get(path)
        round_trip_ms.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
        timing = response.headers["server-timing"]
        server_ms.append(float(timing.split("dur=")[1]))
        sizes.append(len(response.content))
    return {
        "server_p50_ms": statistics.median(server_ms),
        "server_p99_ms": percentile(server_ms, 0.99),
        "round_trip_p50_ms": statistics.median(round_trip_ms),
        "bytes": statistics.median(sizes),
    }


async def measure(
    arguments: argparse.Namespace, cluster: LocalCluster, port: int
) -> dict[str, Any]:
    report: dict[str, Any] = {}
    base = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=arguments.concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        await enqueue_latency(http, 5, arguments.batch)  # connections up, leader known
        report["enqueue_throughput"] = await enqueue_throughput(
            http, arguments.requests, arguments.batch, arguments.concurrency
        )
        report["enqueue_latency"] = await enqueue_latency(http, arguments.requests, arguments.batch)
        report["jobs_held"] = await fill(cluster.client_addresses, arguments.jobs)
        report["status_after_fill"] = await read_figures(http, "/api/v1/status", 1)
        report["settle_s"] = await settle(cluster.client_addresses)
        for name, path in (
            ("status", "/api/v1/status"),
            ("jobs_first_page", "/api/v1/jobs?limit=100"),
            ("jobs_newest_page", "/api/v1/jobs?limit=100&order=newest"),
            ("jobs_dead_page", "/api/v1/jobs?limit=100&state=dead"),
            ("page_overview", "/"),
            ("page_jobs", "/jobs"),
            ("page_queues", "/queues"),
            ("page_dead", "/dead"),
        ):
            report[name] = await read_figures(http, path, arguments.samples)
    return report


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as root:
        cluster = LocalCluster(Path(root), 3, workers=0)
        (port,) = free_ports(1)
        web: subprocess.Popen[str] | None = None
        try:
            trio.run(cluster.start_all)
            command = [
                sys.executable, "-m", "raftq", "web", "--cluster",
                ",".join(cluster.client_addresses), "--listen", f"127.0.0.1:{port}",
                "--timeout", "60", "--log-level", "warning",
            ]  # fmt: skip
            web = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            assert web.stdout is not None
            assert "serving" in web.stdout.readline()
            return trio.run(measure, arguments, cluster, port)
        finally:
            if web is not None:
                web.terminate()
                web.wait(timeout=30)
            trio.run(cluster.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--apply-cost", action="store_true")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    report = run(arguments)
    if arguments.apply_cost:
        report["apply_cost"] = apply_cost(arguments.jobs)
    report["load_average"] = list(os.getloadavg())
    if arguments.json:
        print(json.dumps(report))
        return
    throughput, latency = report["enqueue_throughput"], report["enqueue_latency"]
    print(
        f"enqueue, batches of {arguments.batch}: {throughput['jobs_per_s']:,.0f} jobs/s "
        f"({arguments.concurrency} requests at a time); one at a time p50 "
        f"{latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms"
    )
    print(f"with {report['jobs_held']:,} jobs held:")
    print(
        f"  status right after the fill: server {report['status_after_fill']['server_p50_ms']:.1f}"
        f" ms; every node applied everything {report['settle_s']:.2f} s after the fill"
    )
    for name in (
        "status", "jobs_first_page", "jobs_newest_page", "jobs_dead_page",
        "page_overview", "page_jobs", "page_queues", "page_dead",
    ):  # fmt: skip
        figures = report[name]
        print(
            f"  {name:<17} server p50 {figures['server_p50_ms']:.1f} ms, "
            f"p99 {figures['server_p99_ms']:.1f} ms; {figures['bytes']:,.0f} bytes"
        )
    if "apply_cost" in report:
        cost = report["apply_cost"]
        print(
            f"one {FILL_BATCH:,}-job Enqueue entry, in this process: decode p50 "
            f"{cost['decode_p50_ms']:.0f} ms, apply p50 {cost['apply_p50_ms']:.0f} ms, both at "
            f"most {cost['decode_and_apply_max_ms']:.0f} ms"
        )
    print("load average: " + ", ".join(f"{load:.2f}" for load in report["load_average"]))


if __name__ == "__main__":
    main()
