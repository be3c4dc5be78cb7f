"""Issue #16 item 3: a leader that snapshots a large job state keeps ticking and heartbeating,
so its followers elect no one meanwhile. Real node processes (the stall is real CPU time, which
a fake clock does not see); only the leader snapshots, so that a stall of its own is not hidden
by its followers stalling at the same moment."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import raftq
from raftq.client.client import Client
from raftq.local_cluster import LocalCluster
from raftq.node.applier import OFFLOAD_SWITCH_INTERVAL_S, run_in_thread
from raftq.seeded_state import pending_jobs, seed_snapshot, voters_at

TICK_MS = 10
ELECTION_TIMEOUT_S = 10 * TICK_MS / 1000
"""The shortest: ``election_ticks`` (10) ticks."""

JOBS = 400_000
"""Encoded in well over three election timeouts: snapshot version 5 encodes 200,000 jobs in
about 0.3 s here, just under (the test failed its own precondition once), so twice that."""

SNAPSHOT_ENTRIES = 40
LEADER = "n1"


def snapshot_indexes(data_dir: Path) -> set[int]:
    return {int(path.stem.split("-")[1]) for path in (data_dir / "snapshots").glob("*.snap")}


async def status_of(client: Client) -> dict[str, Any]:
    with trio.fail_after(60):
        while True:
            try:
                status = await client.status()
            except raftq.RaftqError:
                await trio.sleep(0.1)
                continue
            if status["cluster"]["leader"] and all(
                node["role"] != "unreachable" for node in status["cluster"]["nodes"]
            ):
                return status
            await trio.sleep(0.1)


async def steady_terms(client: Client) -> dict[str, int]:
    """Every node's term once all agree and none changed for ten election timeouts, with
    ``LEADER`` leading: the start-up elections (a node that woke late may still campaign once,
    more likely on a loaded machine) are over before the snapshot is judged."""
    with trio.fail_after(60):
        steady_since, last = time.monotonic(), None
        while True:
            status = await status_of(client)
            terms = {node["id"]: node["term"] for node in status["cluster"]["nodes"]}
            if status["cluster"]["leader"] != LEADER:
                await client.transfer_leader(LEADER)
                steady_since, last = time.monotonic(), None
            elif len(set(terms.values())) != 1:
                steady_since, last = time.monotonic(), None
            elif terms != last:
                steady_since, last = time.monotonic(), terms
            elif time.monotonic() - steady_since >= 10 * ELECTION_TIMEOUT_S:
                return terms
            await trio.sleep(ELECTION_TIMEOUT_S)


@pytest.mark.slow
async def test_a_leader_snapshotting_a_large_state_loses_no_election(tmp_path: Path) -> None:
    machine = pending_jobs(JOBS)
    started = time.perf_counter()
    data = machine.snapshot()
    encode_s = time.perf_counter() - started
    del machine
    assert encode_s >= 3 * ELECTION_TIMEOUT_S, f"{encode_s:.2f} s: make the state larger"
    cluster = LocalCluster(tmp_path, 3, tick_ms=TICK_MS)
    membership = voters_at(cluster.addresses)
    for node in cluster.addresses:
        await seed_snapshot(cluster.data_dir(node), membership, data)
    del data
    try:
        for node in cluster.addresses:  # only n1 snapshots by count; nobody by bytes
            entries = SNAPSHOT_ENTRIES if node == LEADER else 0
            cluster.extra_flags = ["--snapshot-entries", str(entries), "--snapshot-bytes", "0"]
            await cluster.start(node)
        async with raftq.connect(cluster.client_addresses, timeout=60) as client:
            status = await status_of(client)
            if status["cluster"]["leader"] != LEADER:
                await client.transfer_leader(LEADER)
                status = await status_of(client)
            assert status["cluster"]["leader"] == LEADER
            terms = await steady_terms(client)
            for _ in range(SNAPSHOT_ENTRIES // 2 + 1):
                await client.pause("idle")
                await client.resume("idle")
            with trio.fail_after(60):
                while max(snapshot_indexes(cluster.data_dir(LEADER))) <= 1:
                    cluster.check_running()
                    await trio.sleep(0.05)
            await trio.sleep(10 * ELECTION_TIMEOUT_S)  # a late election would start by now
            after = await status_of(client)
        assert after["cluster"]["leader"] == LEADER
        assert {node["id"]: node["term"] for node in after["cluster"]["nodes"]} == terms
        for follower in set(cluster.addresses) - {LEADER}:
            assert snapshot_indexes(cluster.data_dir(follower)) == {1}
    finally:
        await cluster.stop()


async def test_offloaded_work_hands_the_gil_over_every_millisecond_then_as_before() -> None:
    """``run_in_thread`` shortens the GIL switch interval only while a thread runs, and puts
    back what it found, even when two overlap."""
    before = sys.getswitchinterval()
    seen: list[float] = []
    release = threading.Event()

    def work() -> int:
        seen.append(sys.getswitchinterval())
        release.wait(10)
        return 7

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_in_thread, work)
        nursery.start_soon(run_in_thread, work)
        for _ in range(1000):  # ten seconds
            if len(seen) == 2:
                break
            await trio.sleep(0.01)
        release.set()
    assert seen == [OFFLOAD_SWITCH_INTERVAL_S, OFFLOAD_SWITCH_INTERVAL_S]
    assert sys.getswitchinterval() == before
    assert await run_in_thread(lambda: 7) == 7
