"""Regressions for bugs the simulator found, pinned down without its randomness where the race
it hit can be written out step by step (its scenarios in test_scenarios.py cover the rest)."""

from __future__ import annotations

import trio

from raftq.raft.types import SnapshotMeta
from raftq.storage.durable_log import DurableLog
from raftq.storage.memory_disk import MemoryDisk
from sim.runner import run_seed
from tests.storage_helpers import make_entries


async def test_local_snapshot_superseded_by_an_install_in_flight() -> None:
    """Found by the simulator (test_node_down_across_a_compaction, before raftq moved on): the
    applier snapshots at its applied index while the Raft peer installs a leader's newer
    snapshot. The older local snapshot must be dropped, not raise and stop the node, and must
    never replace the newer one."""
    log = await DurableLog.open(MemoryDisk(), segment_bytes=400)
    await log.append(make_entries(1, 41))
    writer = await log.begin_snapshot_install(SnapshotMeta(index=60, term=2))
    await writer.write(b"leader state at 60")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.finish_snapshot_install, writer)
        # The local save races the install's commit (both yield inside the disk).
        nursery.start_soon(log.save_snapshot, SnapshotMeta(index=30, term=1), b"local at 30")
    assert log.snapshot_meta.index == 60
    assert await log.snapshot_data() == b"leader state at 60"
    # Once the install is done, a stale local snapshot is dropped outright.
    await log.save_snapshot(SnapshotMeta(index=30, term=1), b"local at 30")
    assert log.snapshot_meta.index == 60
    await log.close()


def test_the_operator_removes_no_voter_while_a_rot_is_too_fresh_to_be_known() -> None:
    """Seed 5100041 (a sweep of session 9): the membership operator removed the leader 20 ms
    after ``rot_remove`` rotted n2, leaving voters n2 and n3 and no majority ever again. No
    check can know a node gone for good a moment ago; the fault atlas now keeps the operator
    from removing a voter then (``Simulation.rot_unnoticed``). Seen failing before: "liveness:
    88 acknowledged jobs not final"."""
    report = run_seed(5100041, sim_seconds=20.0)
    assert report.verdict == "pass", report.violations
    assert report.faults.rot_removes > 0


def test_a_slot_that_came_while_its_leader_could_not_write_is_the_catch_up_s() -> None:
    """Seed 5500245 (a sweep of session 9): n3 led term 7, its WAL failing (``sync_error``)
    from before the slot of 16 s (by its clock) until n1 deposed it (``figure_8``); the
    firing never reached a log, and n1's catch-up fired the latest missed slot, as designed.
    The checker had demanded the slot of the stalled reign; it now judges a slot by a leader
    only once that leader, still leading, committed past it. Seen failing before: "a schedule
    slot fires while a leader exists: slot 1767225616000 of every-1 fell while one leader led
    throughout, and was not fired within 15 s"."""
    report = run_seed(5500245, sim_seconds=20.0)
    assert report.verdict == "pass", report.violations
    assert report.faults.sync_errors > 0
    assert report.faults.figure_8s > 0


def test_a_leader_that_stalled_takes_no_membership_change_on_answers_from_before() -> None:
    """Seed 7000117 (a sweep of session 10): n2's disk rotted (``rot_remove``) while the
    leader n3 stood still for a second (its fdatasync failing, ``sync_error``); n2's last
    answers waited in n3's inbox and were taken right after, and the operator's "remove n1"
    came 0.35 s later: n3's check-quorum rounds had not moved during the stall, so n2 looked
    up, and voters n2 and n3 were left with n2 gone for good. Seen failing before:
    "liveness: 31 acknowledged jobs not final". A leader now takes no membership change for
    two check-quorum rounds after a stall (``RaftCore.stalled``)."""
    report = run_seed(7000117, nodes=3, sim_seconds=20.0)
    assert report.verdict == "pass", report.violations
    assert report.faults.rot_removes > 0
