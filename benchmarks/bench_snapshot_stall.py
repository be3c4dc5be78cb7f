"""Event-loop stalls and heartbeat gaps while a leader snapshots a large job state.

Run by ``raftq bench`` (or by hand); figures, not a test. Three ``python -m raftq.node``
processes on free 127.0.0.1 ports, fsync on, no workers, default tick (30 ms; heartbeat every
2 ticks, election timeout 10-20 ticks):

1. seed: one job state machine with ``--jobs`` pending noop jobs (~100-byte payloads, built
   by applying ``Enqueue`` commands directly, not timed) is written as each node's snapshot
   (index 1, term 1, the three voters), as if the cluster had compacted its log there.
2. start the three nodes (each restores the snapshot), wait for a leader, then send
   ``--snapshot-entries`` pause/resume commands of an empty queue so that every node applies
   that many entries past its snapshot and takes a new one of the whole state (the leader
   included), and wait until each node's ``raftq_snapshot_seconds_count`` counts it.
3. poll every node's metrics every 0.25 s from step 2's first command until a second after
   the last node's snapshot, keeping the peaks of ``raftq_raft_tick_late_seconds_max`` (the
   longest a Raft tick came after it was due: the longest event-loop stall the Raft peer saw)
   and, on followers, ``raftq_raft_leader_silence_seconds_max`` (the longest time between two
   messages from the leader). Each node reports the longest of its last 10-20 s, so polls
   miss no peak; step 2 starts once start-up's stalls have aged out (22 s after a leader is
   known), and the same figures just before it are reported as the idle baseline.

The target (issue #16 item 3): both under a tenth of the shortest election timeout (30 ms at
the default 300 ms); the heartbeat gap is measured past the heartbeat interval (60 ms), the
silence a follower sees even from a leader that never stalls.

    python benchmarks/bench_snapshot_stall.py [--jobs 1000000] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import trio

import raftq
from raftq.client.client import Client
from raftq.ids import NodeId
from raftq.local_cluster import LocalCluster, free_ports
from raftq.node.config import NodeConfig
from raftq.node.raft_peer import RECENT_WINDOW_S
from raftq.seeded_state import pending_jobs, seed_snapshot, voters_at

TIMEOUT_S = 600
"""Generous: three nodes restoring a million jobs each on two cores take a while."""


def metrics(address: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("raftq_") and "{" not in line:
            name, value = line.split()
            values[name] = float(value)
    return values


async def read_metrics(addresses: dict[str, str]) -> dict[str, dict[str, float]]:
    return {
        node: await trio.to_thread.run_sync(metrics, address) for node, address in addresses.items()
    }


STALL_NAMES = ("raftq_raft_tick_late_seconds_max", "raftq_raft_leader_silence_seconds_max")
SETTLE_S = 2 * RECENT_WINDOW_S + 2
POLL_S = 0.25
"""Metrics polls: far more often than the nodes' 10 s window, so no peak is missed."""


async def settled(
    addresses: dict[str, str], cluster: LocalCluster, settle_s: float
) -> dict[str, dict[str, float]]:
    """The figures once start-up's stalls (restoring the snapshot, the first full garbage
    collection) have aged out of the nodes' 10-20 s window: the idle baseline."""
    with trio.fail_after(TIMEOUT_S):
        for _ in range(int(settle_s)):
            cluster.check_running()
            await trio.sleep(1)
        return await read_metrics(addresses)


async def watch(
    addresses: dict[str, str],
    cluster: LocalCluster,
    peaks: dict[str, dict[str, float]],
    done: trio.CancelScope,
) -> None:
    """Poll every node's stall figures, keeping each one's peak, until every node has taken
    its snapshot and a few heartbeats followed (a gap ends when the next message comes)."""
    with trio.fail_after(TIMEOUT_S):
        finished_at: float | None = None
        while finished_at is None or trio.current_time() < finished_at + 1:
            cluster.check_running()
            now = await read_metrics(addresses)
            for node, values in now.items():
                for name in (*STALL_NAMES, "raftq_raft_term", "raftq_snapshot_seconds_sum"):
                    peaks[node][name] = max(peaks[node].get(name, 0.0), values[name])
            snapshots = (values["raftq_snapshot_seconds_count"] for values in now.values())
            if finished_at is None and all(count >= 1 for count in snapshots):
                finished_at = trio.current_time()
            await trio.sleep(POLL_S)
    done.cancel()


async def leader_of(client: Client, cluster: LocalCluster) -> str:
    with trio.fail_after(TIMEOUT_S):
        while True:
            cluster.check_running()
            try:
                status = await client.status()
            except raftq.RaftqError:
                status = None
            if status and status["cluster"]["leader"]:
                return str(status["cluster"]["leader"])
            await trio.sleep(0.1)


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="raftq-bench-stall-"))
    metrics_addresses = {
        f"n{n}": f"127.0.0.1:{port}" for n, port in enumerate(free_ports(3), start=1)
    }
    snapshot_entries = arguments.snapshot_entries
    cluster = LocalCluster(root, 3)
    membership = voters_at(cluster.addresses)
    try:
        began = time.perf_counter()
        data = pending_jobs(arguments.jobs).snapshot()
        build_s = time.perf_counter() - began
        for node in cluster.addresses:
            await seed_snapshot(cluster.data_dir(node), membership, data)
        snapshot_bytes = len(data)
        del data
        for node, address in metrics_addresses.items():
            cluster.extra_flags = [
                "--snapshot-entries", str(snapshot_entries), "--snapshot-bytes", "0",
                "--metrics-addr", address,
            ]  # fmt: skip
            await cluster.start(node)
        async with raftq.connect(cluster.client_addresses, timeout=TIMEOUT_S) as client:
            leader = await leader_of(client, cluster)
            before = await settled(metrics_addresses, cluster, arguments.settle_seconds)
            peaks: dict[str, dict[str, float]] = {node: {} for node in metrics_addresses}
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch, metrics_addresses, cluster, peaks, nursery.cancel_scope)
                for _ in range(snapshot_entries // 2 + 1):
                    await client.pause("bench-idle")
                    await client.resume("bench-idle")
            status = await client.status()
    finally:
        await cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    followers = [node for node in cluster.addresses if node != leader]
    config = NodeConfig(node_id=NodeId("n1"), members={NodeId("n1"): "127.0.0.1:1"}, data_dir="")
    heartbeat_s = config.heartbeat_ticks * config.tick_ms / 1000
    return {
        "jobs": arguments.jobs,
        "snapshot_bytes": snapshot_bytes,
        "build_seconds": build_s,
        "election_timeout_s": config.election_ticks * config.tick_ms / 1000,
        "heartbeat_interval_s": heartbeat_s,
        "leader": leader,
        "leader_after": status["cluster"]["leader"],
        "leader_snapshot_seconds": peaks[leader]["raftq_snapshot_seconds_sum"],
        "leader_tick_late_max_s": peaks[leader][STALL_NAMES[0]],
        "idle_before": {
            node: {name: before[node][name] for name in STALL_NAMES} for node in cluster.addresses
        },
        "follower_tick_late_max_s": {node: peaks[node][STALL_NAMES[0]] for node in followers},
        "follower_leader_silence_max_s": {node: peaks[node][STALL_NAMES[1]] for node in followers},
        "heartbeat_gap_past_interval_max_s": max(peaks[node][STALL_NAMES[1]] for node in followers)
        - heartbeat_s,
        "term_changes": {
            node: peaks[node]["raftq_raft_term"] - before[node]["raftq_raft_term"]
            for node in cluster.addresses
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--snapshot-entries", type=int, default=200)
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=SETTLE_S,
        help="wait this long before the snapshot, so that start-up's stalls age out of the "
        "figures (raftq bench --quick waits 1 s: its stalls then include start-up's)",
    )
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    result = trio.run(run, arguments)
    if arguments.json:
        print(json.dumps(result))
    else:
        json.dump(result, sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    main()
