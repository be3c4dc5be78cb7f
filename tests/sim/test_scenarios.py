"""The classic cases, scripted on the real node under the simulator; each ends with the
liveness phase (heal, restart all, every acknowledged job final, nodes converged), and the
safety checkers run throughout."""

from __future__ import annotations

import functools

import attrs
import trio

from raftq import limits
from raftq.raft.ready import Role
from raftq.storage.memory_disk import TailFate
from sim.checkers import Violation
from sim.cluster import SimNode
from sim.disk import DiskProfile
from sim.options import Options
from sim.runner import NO_PROGRESS_S, Report, Simulation, run_options


def appending(simnode: SimNode) -> bool:
    """The node holds entries it has not seen committed yet."""
    log = simnode.node.raft.core.log if simnode.node else None
    return log is not None and log.last_index() > log.committed


def down(simnode: SimNode) -> bool:
    return simnode.node is None


def leads_in(sim: Simulation, group: list[str]) -> bool:
    leader = sim.leader()
    return leader is not None and leader.id in group


def has_pending_read(simnode: SimNode) -> bool:
    core = simnode.node.raft.core if simnode.node else None
    return core is not None and core.role is Role.LEADER and bool(core.pending_reads)


def newer_leader_acknowledged(sim: Simulation, old: SimNode, acked: int) -> bool:
    leader = sim.leader()
    return leader is not None and leader is not old and len(sim.ledger.acked) > acked


def acknowledged_more(sim: Simulation, count: int) -> bool:
    return len(sim.ledger.acked) >= count


def passed(report: Report) -> Report:
    assert report.verdict == "pass", (report.violations, "\n".join(report.trace_tail))
    return report


def test_leader_crash_mid_append() -> None:
    """Raft 5.4: the leader dies with entries appended but not committed; whatever it had
    acknowledged survives, and the new leader's log wins where they differ."""

    async def script(sim: Simulation) -> None:
        for _ in range(3):
            leader = await sim.wait_for_leader()
            await trio.sleep(0.5)
            await sim.wait_until(
                functools.partial(appending, leader),
                "an uncommitted append on the leader",
                5.0,
            )
            sim.crash_now(leader, "mid-append")
            await trio.sleep(1.0)
            await sim.restart(leader)

    report = passed(run_options(Options.quiet(101), script=script))
    assert report.faults.crashes == 3
    assert report.jobs_acked > 20


def test_partition_with_a_stale_leader() -> None:
    """Raft 5.4 + check-quorum: the leader is cut off from its peers but not from clients; the
    majority elects another; nothing the stale leader accepts meanwhile is acknowledged unless
    committed, and the two never both lead one term."""

    async def script(sim: Simulation) -> None:
        leader = await sim.wait_for_leader()
        old_term = leader.node.raft.core.term if leader.node else 0
        others = [simnode.id for simnode in sim.nodes if simnode is not leader]
        cuts = [(leader.id, other) for other in others] + [(o, leader.id) for o in others]
        await trio.sleep(0.5)
        sim.cut(cuts, "stale leader")
        await sim.wait_until(
            lambda: (
                (new := sim.leader()) is not None
                and new is not leader
                and new.node is not None
                and new.node.raft.core.term > old_term
            ),
            "a new leader in the majority",
            5.0,
        )
        await trio.sleep(2.0)
        sim.heal()
        await trio.sleep(2.0)

    passed(run_options(Options.quiet(102), script=script))


def test_torn_wal_tail_on_restart() -> None:
    """DESIGN.md "Storage formats": a crash between a WAL write and its fdatasync leaves a torn
    tail; the node truncates it at start-up and catches up (the tail was never acknowledged)."""

    async def script(sim: Simulation) -> None:
        await sim.wait_for_leader()
        for round_number in range(4):
            victim = sim.nodes[round_number % len(sim.nodes)]
            await trio.sleep(0.5)
            sim.arm_crash(victim, "fdatasync", "wal/")
            await sim.wait_until(functools.partial(down, victim), "the armed crash", 5.0)
            await sim.restart(victim)

    options = Options.quiet(103, disk=DiskProfile(tail_fate=TailFate.TORN))
    report = passed(run_options(options, script=script))
    assert report.faults.crashes == 4


def test_snapshot_install_interrupted_by_a_crash() -> None:
    """A follower far behind gets the leader's snapshot; it crashes while writing it; after a
    restart the install starts over and completes (no half-written snapshot is ever used)."""

    async def script(sim: Simulation) -> None:
        leader = await sim.wait_for_leader()
        follower = next(simnode for simnode in sim.nodes if simnode is not leader)
        sim.crash_now(follower, "to fall behind")
        first = leader.node.raft.core.log.first_index() if leader.node else 0
        await sim.wait_until(
            lambda: (
                leader.node is not None and leader.node.raft.core.log.first_index() > first + 150
            ),
            "two compactions on the leader",
            30.0,
        )
        await follower.stopped.wait()
        sim.arm_crash(follower, "write", "snapshots/")
        sim.start(follower)
        await sim.wait_until(lambda: sim.faults.crashes == 2, "the crash during install", 10.0)
        await sim.restart(follower)
        await sim.wait_until(
            lambda: (
                follower.node is not None
                and follower.node.log_writer.statistics.snapshots_installed > 0
            ),
            "a snapshot install after the restart",
            10.0,
        )

    options = Options.quiet(104, snapshot_entries=60, enqueue_interval_ms=20)
    passed(run_options(options, script=script))


def test_figure_8() -> None:
    """Raft Figure 8 (5.4.2): on five nodes, leaders replicate entries of their term to a
    minority and crash, again and again; an entry of an old term that reached a majority must
    not count as committed until an entry of the current term does. The checkers compare every
    committed entry across all nodes and crashes."""

    async def script(sim: Simulation) -> None:
        for _ in range(4):
            leader = await sim.wait_for_leader()
            others = [simnode.id for simnode in sim.nodes if simnode is not leader]
            sim.rng.shuffle(others)
            minority = [leader.id, others[0]]
            majority = others[1:]
            cuts = [(a, b) for a in minority for b in majority]
            cuts += [(b, a) for a in minority for b in majority]
            sim.cut(cuts, "figure 8")
            await trio.sleep(0.3)  # the leader appends to itself and one follower
            sim.crash_now(leader, "after replicating to a minority")
            await sim.wait_until(
                functools.partial(leads_in, sim, majority),
                "a leader in the majority",
                5.0,
            )
            await trio.sleep(0.2)
            sim.heal()
            await sim.restart(leader)
            await trio.sleep(0.5)

    report = passed(run_options(Options.quiet(105, nodes=5), script=script))
    assert report.faults.crashes == 4


def test_node_down_across_a_compaction() -> None:
    """A node that took snapshots of its own crashes (its saved commit index lags its snapshot:
    the commit index is saved lazily), stays down while the others compact past its log, then
    restarts: it recovers its own snapshot and catches up from the leader's. Regression: before
    raftq/raft/log.py started the commit index at the snapshot, such a node could not start."""

    async def script(sim: Simulation) -> None:
        leader = await sim.wait_for_leader()
        follower = next(simnode for simnode in sim.nodes if simnode is not leader)
        await sim.wait_until(
            lambda: follower.node is not None and follower.node.raft.core.log.first_index() > 100,
            "the follower's own compactions",
            30.0,
        )
        assert follower.node is not None
        follower_last = follower.node.raft.core.log.last_index()
        sim.crash_now(follower, "down across a compaction")
        # Past the end of the follower's log (not only past the leader's own first index at
        # the crash, which depends on timing): it must need the leader's snapshot.
        await sim.wait_until(
            lambda: (
                leader.node is not None
                and leader.node.raft.core.log.first_index() > follower_last + 1
            ),
            "compactions past the follower's log",
            30.0,
        )
        # The leader's link to the dead follower still queues what it sent meanwhile, from the
        # follower's last entry on, and may deliver all of it on reconnect (whether the first
        # of those messages went into the dying connection is a matter of timing). Drop the
        # queue, as an overflowing one would, so the follower surely needs the snapshot.
        if leader.node is not None:
            queued = leader.node.peers.links[follower.id]._receiver
            for _ in range(limits.PEER_QUEUE_MESSAGES_MAX):
                try:
                    queued.receive_nowait()
                except trio.WouldBlock:
                    break
        await sim.restart(follower)
        await sim.wait_until(
            lambda: (
                follower.node is not None
                and follower.node.log_writer.statistics.snapshots_installed > 0
            ),
            "a snapshot install",
            10.0,
        )

    options = Options.quiet(107, snapshot_entries=60, enqueue_interval_ms=20)
    passed(run_options(options, script=script))


def test_a_violation_is_reported_with_its_trace() -> None:
    """The checkers can fail: a scripted false claim is reported, not swallowed."""

    async def script(sim: Simulation) -> None:
        await sim.wait_for_leader()
        sim.fail(Violation("scenario", "deliberate"))
        await trio.sleep_forever()

    report = run_options(Options.quiet(107), script=script)
    assert report.verdict == "fail"
    assert report.violations == ["scenario: deliberate"]
    assert any("VIOLATION" in line for line in report.trace_tail)


def test_no_progress_is_a_failure_not_a_hang() -> None:
    """The virtual-time watchdog: every node cut off from every other for longer than the
    no-progress bound fails the run (during the fault phase nothing may stall for good)."""

    async def script(sim: Simulation) -> None:
        await sim.wait_for_leader()
        names = [simnode.id for simnode in sim.nodes]
        sim.cut([(a, b) for a in names for b in names if a != b], "everyone alone")
        await trio.sleep(NO_PROGRESS_S + 5)

    report = run_options(Options.quiet(108, producers=1), script=script)
    assert report.verdict == "fail"
    assert report.violations[0].startswith("progress:"), report.violations


def test_wall_clock_budget_stops_a_run_whose_virtual_time_stands_still() -> None:
    """A task that never blocks keeps MockClock from moving; the watchdog at the I/O polls still
    stops it."""

    async def script(sim: Simulation) -> None:
        await sim.wait_for_leader()
        for _ in range(10**9):
            await trio.lowlevel.checkpoint()

    report = run_options(Options.quiet(109), script=script, wall_budget_s=1.0)
    assert report.verdict == "fail"
    assert report.violations[0].startswith("wall-clock budget:"), report.violations


def test_corrupt_synced_record_on_a_minority() -> None:
    """DESIGN.md "Storage formats": a bad record before the WAL's tail is corruption, not a torn
    write: the node refuses to start and names file and offset. The operator removes it, wipes
    it, starts it empty and adds it back (learner, then voter, via a leader's snapshot); the
    cluster loses nothing acknowledged meanwhile."""

    async def script(sim: Simulation) -> None:
        leader = await sim.wait_for_leader()
        follower = next(simnode for simnode in sim.nodes if simnode is not leader)
        await trio.sleep(2.0)
        sim.crash_now(follower, "before its disk rots")
        assert follower.disk.rot_synced_record() is not None
        follower.rotten = True
        await follower.stopped.wait()
        sim.start(follower)
        await sim.wait_until(lambda: sim.faults.repairs == 1, "the operator's repair", 10.0)
        await sim.wait_until(lambda: follower.node is not None, "the wiped node up", 5.0)
        await trio.sleep(1.0)

    options = Options.quiet(110, snapshot_entries=200)
    report = passed(run_options(options, script=script, keep_trace=True))
    assert any("refused to start" in line for line in report.trace_lines or []), "no refusal"


def test_shrink_to_one_voter_stopping_each_removed_leader() -> None:
    """Issue #14 (the class of etcd-io/etcd#10563): the operator removes the leader, stops it
    as soon as ``remove`` answers, and does it again, down to a single voter; the survivor
    must keep committing. Then the stopped nodes start again (as non-members) and the
    liveness phase adds both back (learner, then voter)."""

    async def script(sim: Simulation) -> None:
        stopped = []
        for _ in range(2):
            leader = await sim.wait_for_leader()
            await trio.sleep(0.5)
            async with sim.operator() as client:
                await client.remove_node(leader.id)
            sim.faults.membership_changes += 1
            sim.crash_now(leader, "stopped after its removal")
            stopped.append(leader)
            await sim.wait_until(
                functools.partial(acknowledged_more, sim, len(sim.ledger.acked) + 5),
                "enqueues acknowledged",
                10.0,
            )
        survivor = sim.leader()
        assert survivor is not None
        assert survivor.node is not None
        assert survivor.node.raft.core.membership.voters == (survivor.id,)
        for simnode in stopped:
            await sim.restart(simnode)

    report = passed(run_options(Options.quiet(103), script=script))
    assert report.faults.crashes == 2
    assert report.faults.membership_changes >= 2  # the removals, then the adds


def test_a_stalled_stale_leader_never_answers_a_read_from_an_older_round() -> None:
    """Issue #14 (ReadIndex): the leader has a read in flight, the acknowledgements of its
    heartbeat round are held in the network, and its disk stalls; cut off, it is replaced by
    a new leader that acknowledges writes. Meanwhile a new read reaches it; when the network
    heals, the held acknowledgements (of the older round) must not confirm the new read, or
    it is answered at an index older than the new leader's acknowledged writes (the read
    checker's "linearizable reads"). With the bug planted (any round confirms every pending
    read) this scenario fails on seed 700 in its second round."""

    async def script(sim: Simulation) -> None:
        for _ in range(3):
            leader = await sim.wait_for_leader()
            await trio.sleep(0.5)
            await sim.wait_until(
                functools.partial(has_pending_read, leader), "a read in flight", 3.0
            )
            others = [simnode.id for simnode in sim.nodes if simnode is not leader]
            inbound = [(other, leader.id) for other in others]
            sim.cut(inbound, "the leader's acknowledgements held")
            normal = leader.disk.profile
            leader.disk.profile = attrs.evolve(normal, sync_min_ms=6000.0, sync_max_ms=6500.0)
            await trio.sleep(0.002)
            sim.cut(inbound + [(leader.id, other) for other in others], "stalled leader cut off")
            await sim.wait_until(
                functools.partial(newer_leader_acknowledged, sim, leader, len(sim.ledger.acked)),
                "a new leader acknowledging writes",
                5.5,
            )
            await trio.sleep(0.3)  # the old leader's reader sends it a read
            sim.heal()
            leader.disk.profile = normal
            await trio.sleep(1.5)

    report = passed(run_options(Options.quiet(700), script=script))
    assert report.faults.partitions == 6


def test_a_node_still_stopping_when_the_liveness_phase_begins_is_restarted() -> None:
    """The liveness phase restarts every node that is down, including one whose crashed
    process is still exiting as it begins (a crash may take seconds of simulated time to
    finish) and whose restart nobody else owes: it used to skip it ("n2 is not up")."""

    async def script(sim: Simulation) -> None:
        leader = await sim.wait_for_leader()
        await trio.sleep(1.0)
        follower = next(simnode for simnode in sim.nodes if simnode is not leader)
        sim.crash_now(follower, "as the fault phase ends")
        assert follower.scope is not None  # still exiting when the liveness phase begins

    report = passed(run_options(Options.quiet(102), script=script))
    assert report.faults.crashes == 1
