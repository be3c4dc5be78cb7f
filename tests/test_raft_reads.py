"""Linearizable reads through every node of a real cluster (in-process nodes, real TCP): the
client-level face of issue #14's ReadIndex bug, where two followers' reads with equal
contexts collided at the leader and one waited out the client's request timeout."""

from __future__ import annotations

import time
from pathlib import Path

import trio

import raftq
from tests.node_helpers import running_cluster, wait_for_leader

READERS_PER_NODE = 4
READS_PER_READER = 25
READ_SECONDS_MAX = 1.0
"""Far above a read's normal latency (milliseconds), far below the client's timeout (5 s)
that a dropped read waits out before its retry."""


async def test_concurrent_reads_through_every_node_are_all_answered_promptly(
    tmp_path: Path,
) -> None:
    async with running_cluster(tmp_path, 3) as nodes:
        await wait_for_leader(nodes)
        addresses = [node.config.address for node in nodes.values()]
        async with raftq.connect(addresses, timeout=10) as writer:
            job_id = await writer.enqueue("noop", {"n": 1})
        slowest: list[float] = []

        async def read_through(address: str) -> None:
            async with raftq.connect([address], timeout=10) as client:
                for _ in range(READS_PER_READER):
                    started = time.monotonic()
                    job = await client.get(job_id)
                    slowest.append(time.monotonic() - started)
                    assert job.id == job_id

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for address in addresses:
                    for _ in range(READERS_PER_NODE):
                        nursery.start_soon(read_through, address)
        assert len(slowest) == len(addresses) * READERS_PER_NODE * READS_PER_READER
        assert max(slowest) < READ_SECONDS_MAX, sorted(slowest)[-5:]
