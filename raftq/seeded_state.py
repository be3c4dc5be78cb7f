"""Data directories that start from a snapshot of many pending jobs, for benchmarks and tests.

Filling a cluster with a million jobs through its clients takes a minute and is not what such
a benchmark measures; writing the snapshot a cluster would have taken takes seconds. Each node
gets the same snapshot at index 1, term 1, as if the cluster had compacted its log there.
"""

from __future__ import annotations

from pathlib import Path

from raftq.ids import NodeId
from raftq.jobs.commands import Enqueue, JobSpec
from raftq.jobs.machine import JobStateMachine
from raftq.raft.types import HardState, Membership, SnapshotMeta
from raftq.storage.disk import RealDisk
from raftq.storage.durable_log import DurableLog

PAYLOAD = b'{"pad":"' + b"x" * 80 + b'"}'
"""About 100 bytes, as ``bench_recovery.py`` enqueues."""

JOBS_PER_ENQUEUE = 500


def pending_jobs(jobs: int) -> JobStateMachine:
    """A job state machine holding ``jobs`` pending noop jobs with ~100-byte payloads."""
    machine = JobStateMachine()
    machine.jobs_max = max(machine.jobs_max, jobs)
    for index, start in enumerate(range(0, jobs, JOBS_PER_ENQUEUE), start=1):
        count = min(JOBS_PER_ENQUEUE, jobs - start)
        specs = tuple(
            JobSpec(
                id="",
                type="noop",
                payload=PAYLOAD,
                queue="default",
                priority=0,
                delay_ms=0,
                max_attempts=3,
                timeout_ms=30_000,
                key="",
            )
            for _ in range(count)
        )
        machine.apply(index, Enqueue(now_ms=1_000, jobs=specs), 1)
    assert len(machine.jobs) == jobs
    return machine


def voters_at(addresses: dict[str, str]) -> Membership:
    """The membership of a cluster of these voters (node -> HOST:PORT)."""
    return Membership(
        voters=tuple(sorted(NodeId(node) for node in addresses)),
        addresses=tuple((NodeId(node), address) for node, address in sorted(addresses.items())),
    )


async def seed_snapshot(data_dir: Path, membership: Membership, data: bytes) -> None:
    """Make ``data`` (a job state machine's ``snapshot()``) the snapshot of the empty data
    directory ``data_dir``, at index 1, term 1."""
    log = await DurableLog.open(RealDisk(str(data_dir)))
    try:
        assert log.last_index() == 0, f"{data_dir} is not empty"
        writer = await log.begin_snapshot_install(
            SnapshotMeta(index=1, term=1, membership=membership)
        )
        await writer.write(data)
        await log.finish_snapshot_install(writer)
        await log.save_hard_state(HardState(term=1, vote=None, commit=1))
    finally:
        await log.close()
