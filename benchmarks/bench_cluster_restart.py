"""A three-node cluster holding many pending jobs: all killed and restarted, and one follower.

Run by ``raftq bench`` (steps ``cluster_restart``) or by hand; figures, not a test. Three
``python -m raftq.node`` processes (free 127.0.0.1 ports, a temporary directory, fsync on, no
workers, so every job stays pending, the node's default snapshot settings):

1. fill: ``--jobs`` noop jobs with ~100-byte payloads (``{"pad": "x" * 80}``), each with an
   idempotency key, enqueued with ``enqueue_many`` in batches of 10,000; then as many tiny
   commands (pause/resume of an empty queue) as ``--snapshot-entries``, so that every node
   has snapshotted them all, and until every node has applied the whole log.
2. whole-cluster restart: every node killed with SIGKILL at once, then all three spawned
   again; timed from the first spawn until ``status`` shows a leader and ``--jobs`` pending
   jobs (every job present), and until every node has applied the leader's commit index;
   with the CPU the three new processes used until serving (``/proc``: a figure that holds
   when other work shares the machine, unlike wall time).
3. follower restart: a follower killed with SIGKILL; 20 more ``enqueue_many`` batches of 100
   jobs (no keys) are committed by the other two meanwhile; the follower spawned again, timed until
   its applied index reaches the leader's commit index (it has caught up), and its CPU.

``--rounds`` repeats steps 2 and 3; every figure is reported per round.

    python benchmarks/bench_cluster_restart.py [--jobs 300000] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

import raftq
from raftq.client.client import Client
from raftq.local_cluster import LocalCluster, rss_bytes

BATCH = 10_000
PAYLOAD = {"pad": "x" * 80}
SNAPSHOT_ENTRIES = 100
"""Small enough that the fill's own entries make every node snapshot (the point is a
restart from a snapshot of every job), the same on each node."""
POLL_S = 0.01
FOLLOWER_BATCHES = 20
FOLLOWER_BATCH = 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def status_or_none(client: Client) -> dict[str, Any] | None:
    try:
        return await client.status()
    except raftq.RaftqError:
        return None


async def wait_for(
    cluster: LocalCluster, client: Client, done: Any, seconds: float = 600
) -> dict[str, Any]:
    """Poll ``status`` until ``done(status)``; the status that satisfied it."""
    with trio.fail_after(seconds):
        for _ in range(int(seconds / POLL_S)):
            cluster.check_running()
            status = await status_or_none(client)
            if status is not None and done(status):
                return status
            await trio.sleep(POLL_S)
    raise AssertionError("unreachable: fail_after fires first")


def everyone_applied(status: dict[str, Any]) -> bool:
    commit = status["cluster"]["commit_index"]
    return status["cluster"]["leader"] is not None and all(
        node["applied_index"] >= commit for node in status["cluster"]["nodes"]
    )


async def fill(client: Client, jobs: int) -> None:
    for start in range(0, jobs, BATCH):
        count = min(BATCH, jobs - start)
        await client.enqueue_many(
            [{"type": "noop", "payload": PAYLOAD, "key": f"fill-{start + n}"} for n in range(count)]
        )
    for _ in range(SNAPSHOT_ENTRIES // 2 + 1):
        await client.pause("bench-idle")
        await client.resume("bench-idle")


async def restart_all(cluster: LocalCluster, jobs: int) -> dict[str, float]:
    for node in list(cluster.processes):
        await cluster.kill(node)
    spawned = time.perf_counter()
    await cluster.start_all()
    async with raftq.connect(cluster.client_addresses, timeout=600) as client:

        def serving(status: dict[str, Any]) -> bool:
            return status["cluster"]["leader"] is not None and status["jobs"]["pending"] == jobs

        await wait_for(cluster, client, serving)
        serving_s = time.perf_counter() - spawned
        serving_cpu_s = cluster.cpu_seconds()
        await wait_for(cluster, client, everyone_applied)
        all_applied_s = time.perf_counter() - spawned
    return {
        "serving_seconds": serving_s,
        "serving_cpu_seconds": serving_cpu_s,
        "all_applied_seconds": all_applied_s,
    }


async def restart_follower(cluster: LocalCluster) -> dict[str, Any]:
    async with raftq.connect(cluster.client_addresses, timeout=600) as client:
        status = await wait_for(cluster, client, everyone_applied)
        leader = status["cluster"]["leader"]
        follower = next(node for node in cluster.addresses if node != leader)
        await cluster.kill(follower)
        for _ in range(FOLLOWER_BATCHES):
            await client.enqueue_many(
                [{"type": "noop", "payload": PAYLOAD} for _ in range(FOLLOWER_BATCH)]
            )
        behind = (await client.status())["cluster"]["commit_index"]
        spawned = time.perf_counter()
        await cluster.start(follower)

        def caught_up(status: dict[str, Any]) -> bool:
            nodes = {node["id"]: node for node in status["cluster"]["nodes"]}
            mine = nodes.get(follower)
            return mine is not None and mine["applied_index"] >= behind

        await wait_for(cluster, client, caught_up)
        caught_up_s = time.perf_counter() - spawned
        caught_up_cpu_s = cpu_seconds(cluster.pid(follower))
    return {
        "follower": follower,
        "caught_up_seconds": caught_up_s,
        "caught_up_cpu_seconds": caught_up_cpu_s,
        "rss_bytes": rss_bytes(cluster.pid(follower)),
    }


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="raftq-bench-cluster-restart-"))
    cluster = LocalCluster(
        root, 3, fsync=True, extra_flags=["--snapshot-entries", str(SNAPSHOT_ENTRIES)]
    )
    try:
        await cluster.start_all()
        async with raftq.connect(cluster.client_addresses, timeout=120) as client:
            began = time.perf_counter()
            await fill(client, arguments.jobs)
            await wait_for(cluster, client, everyone_applied)
            fill_s = time.perf_counter() - began
        rounds = []
        for number in range(arguments.rounds):
            held = arguments.jobs + number * FOLLOWER_BATCHES * FOLLOWER_BATCH
            whole = await restart_all(cluster, held)
            follower = await restart_follower(cluster)
            rounds.append({**whole, **follower})
        return {
            "jobs": arguments.jobs,
            "fill_seconds": fill_s,
            "rounds": rounds,
            "serving_seconds": max(r["serving_seconds"] for r in rounds),
            "caught_up_seconds": max(r["caught_up_seconds"] for r in rounds),
        }
    finally:
        await cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    report = trio.run(run, arguments)
    if arguments.json:
        print(json.dumps(report))
        return
    for number, each in enumerate(report["rounds"], 1):
        print(
            f"round {number}: {report['jobs']:,} pending jobs, all 3 nodes killed: serving "
            f"in {each['serving_seconds']:.2f} s, every node applied in "
            f"{each['all_applied_seconds']:.2f} s; follower {each['follower']} killed and "
            f"restarted: caught up in {each['caught_up_seconds']:.2f} s"
        )


if __name__ == "__main__":
    main()
