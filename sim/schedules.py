"""Fault schedules: multi-step cases that independent random faults rarely line up.

Each is a fault kind a seed may draw (``sim.options.FAULT_KINDS``); a seed that drew some runs
one of them every ``schedule_pause_s`` or so during the fault phase:

- ``ack_crash``: the leader's link to one follower is cut (that follower lags), a write is
  acknowledged, then either the leader crashes while the followers that hold the write are
  isolated (the lagging one and the restarted leader must elect), or every node holding the
  write crashes at once. Whatever was acknowledged must survive: it is on a majority's disks.
- ``down_compaction``: a follower is down while the leader compacts its log past everything the
  follower holds; it must catch up from a snapshot.
- ``membership_partition``: a node is isolated, then voters are removed and added back while
  the partition lasts.
- ``lease_skew``: a follower's clock jumps by about a lease length (ahead or behind), then it
  becomes leader (a transfer or the leader's crash): leases must be extended, not expired, by
  the new leader, and fences still hold.
- ``deposed_read``: the leader is cut off from every other node and producer, but a reader
  still reaches it; once the others elect a new leader and it acknowledges a write, the
  reader asks the old leader for that job. A leader that answers reads without confirming
  it still leads (ReadIndex, thesis 6.4) answers from before the write.
- ``figure_8``: Raft's figure 8 on three nodes. Leader A appends entries the others never
  get, and crashes; C is elected with B's vote, and B crashes before C's first entry is on
  its disk, then C crashes too; A comes back and is elected with B's vote, and replicates its
  old entries to B one at a time (``FIGURE_8_APPEND_BYTES``), B crashing before A's new
  no-op is on its disk, A crashing too; C comes back and is elected with B's vote (C's last
  term is the higher). A leader that committed an entry of an earlier term by counting
  replicas (5.4.2) sees C overwrite it.
- ``held_snapshot``: a follower's acknowledgements to the leader stall (a one-way cut) while it
  keeps receiving entries, until the leader has snapshotted past what it knows the follower
  holds, while the follower holds that snapshot's last entry (and has not snapshotted there
  itself); then it crashes, losing the WAL write in progress, and comes back. Its answers
  send the leader back to the follower's last acknowledged index, compacted: the leader sends
  its snapshot, whose last entry the follower already holds, with more after it (figure 13:
  keep those).
- ``late_release``: as a claim's answer reaches a follower's worker, the worker is stopped
  (SIGTERM) and its node's messages stop getting through (it still hears the leader). The
  worker releases the jobs it never started; the Release waits in the network while their
  leases expire and other workers claim them again; then the node is heard again and the
  Release arrives, carrying fences that are no longer the jobs' own. It must change nothing.
- ``slow_snapshot``: one node's snapshot saves are slow (each fdatasync under ``snapshots``
  takes up to 1.5 s longer: a big snapshot on a busy device) while its WAL goes on, so the
  WAL rolls to a new segment between the snapshot's index and the end of its save; once the
  save and the compaction behind it are done, the node crashes and restarts from its disk.
  A compaction that deletes the segment still holding the entries after the newest snapshot
  leaves a gap that the restart refuses (mutant ``compact_past_snapshot``).

- ``rot_remove``: a follower crashes and its disk rots (it will refuse to start until the
  operator wipes it), and before the operator gets to it, the operator removes another voter.
  On three voters that change would leave two, one of them silent for good: no majority ever
  again, not even for the repair. The leader must refuse a change after which fewer than a
  majority of the new voters answer (etcd's strict reconfiguration check; mutant
  ``reconfig_loses_quorum``); the corrupt node is then repaired as ``corruption`` repairs it.
- ``lost_answers``: for longer than a client's timeout, no node's answer reaches the producers
  (their requests still arrive and commit: a one-way cut), so their enqueues fail as not
  acknowledged; after the heal the producers retry those keys with the same commands, and
  each must name the job its first, committed try named. Where the producers' jobs carry
  unique-while-active keys (``sim.workload.job_unique``), a first try answered by the key's
  holder is retried after that holder finished (mutant ``unique_answer_forgets_key``).

- ``pause``: a node's process stops as under SIGSTOP (the leader in half the runs), for
  0.2-3 s, across an election timeout or not, and continues: its timers fire late, at once,
  its clock has jumped, and what it had to do (answer a read it took before the stop, a
  worker's report, a heartbeat round, expiring leases) it does on waking, perhaps deposed by
  then. Random faults model a stop only as a partition, where the node's own timers still
  run (it steps down, its worker stops on its own lease clock): here nothing of it runs.
Every step respects the fault atlas of ``sim.disk``: crashes lose only unsynced bytes.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from typing import TYPE_CHECKING, Any

import attrs
import trio

from raftq import limits
from raftq.client.client import Client, connect
from raftq.errors import RaftqError
from raftq.jobs.commands import Lease
from raftq.raft.ready import Role
from sim.checkers import Violation
from sim.cluster import CLIENT_TIMEOUT_S
from sim.workload import JOB_TYPE, checked_read, draw_job

if TYPE_CHECKING:
    from raftq.node.node import Node
    from raftq.raft.core import RaftCore
    from sim.cluster import SimNode
    from sim.runner import Simulation

SCHEDULES = (
    "ack_crash",
    "down_compaction",
    "membership_partition",
    "lease_skew",
    "deposed_read",
    "figure_8",
    "held_snapshot",
    "late_release",
    "slow_snapshot",
    "rot_remove",
    "lost_answers",
    "pause",
)

SCHEDULE_COUNTERS = {
    "ack_crash": "ack_crashes",
    "down_compaction": "down_compactions",
    "membership_partition": "membership_partitions",
    "lease_skew": "lease_skews",
    "deposed_read": "deposed_reads",
    "figure_8": "figure_8s",
    "held_snapshot": "held_snapshots",
    "late_release": "late_releases",
    "slow_snapshot": "slow_snapshots",
    "rot_remove": "rot_removes",
    "lost_answers": "lost_answers",
    "pause": "pauses",
}
"""Schedule -> its count in the run's ``faults`` (``runner.FaultCounts``)."""

ACK_WAIT_S = 5.0
"""How long ``ack_crash`` waits for an acknowledgement with one follower lagging."""

COMPACTION_WAIT_S = 20.0
"""How long ``down_compaction`` keeps a follower down waiting for the leader to compact."""

HELD_SNAPSHOT_WAIT_S = 8.0
"""How long ``held_snapshot`` stalls a follower's acknowledgements waiting for the leader to
snapshot past them (60 entries: a few seconds at all but the slowest enqueue rates)."""

FIGURE_8_STEP_S = 3.0
"""How long each step of ``figure_8`` may take (an election, a crash landing)."""

FIGURE_8_APPEND_BYTES = 1
"""While A replicates its old entries to B, each AppendEntries carries one entry and one is in
flight at a time (``RaftConfig.append_bytes_max`` and ``inflight_max`` of A's running core):
B then acknowledges each old entry before the one that holds A's no-op arrives. Figure 8
needs the append to stop between an old entry and the new term's first; by default one
append carries them together."""

LATE_RELEASE_WAIT_S = 5.0
"""How long ``late_release`` waits for a claim's answer to reach a follower's worker."""

LATE_RELEASE_CUT_S = 15.0
"""How long ``late_release`` keeps the cut at most, waiting for one of the jobs it released to
be claimed again: a lease lasts the hold and the timeout (4 s at most in the workload), the
leader expires leases every second, and a free worker claims the job at once."""

SLOW_SNAPSHOT_WAIT_S = 8.0
"""How long ``slow_snapshot`` waits for the node's next snapshot (60 entries: a few seconds at
all but the slowest enqueue rates, as ``HELD_SNAPSHOT_WAIT_S``)."""

SLOW_SNAPSHOT_SYNC_S = (0.3, 1.5)
"""The range each fdatasync of the slow snapshot save takes longer (a file and its directory:
twice that in all). A simulated WAL segment holds about 1.6 snapshot intervals
(``sim.cluster.wal_segment_bytes``); at tens of entries a second the WAL rolls within it."""

ROT_SILENCE_S = (1.0, 2.0)
"""How long ``rot_remove`` waits after the crash before it removes another voter: past two
check-quorum rounds (an election timeout each, 300-600 ms), so the leader knows the rotten node
is silent."""

LOST_ANSWERS_S = (CLIENT_TIMEOUT_S + 0.5, CLIENT_TIMEOUT_S + 3.0)
"""How long ``lost_answers`` keeps the producers from hearing any node: past a client's
timeout, so the enqueues in flight fail and their keys wait to be retried."""

PAUSE_S = (0.2, 3.0)
"""How long ``pause`` stops a process: from under an election timeout to several of them."""

PAUSE_READ_WAIT_S = (0.02, 0.3)
"""How long the stopped leader's reader waits, its read sent, before the leader continues."""

PAUSE_HEAR_AFTER_S = (0.002, 0.03)
"""How long after it continues the stopped leader hears its followers again."""

STALL_REMOVE_S = (0.0, 0.05)
"""How long before a stalled leader's Raft peer moves again its operator asks for a removal."""

PAUSE_READ_SHARE = 0.4
"""Of the ``pause`` steps, the share that stops the leader for a stale read."""

PAUSE_STALL_SHARE = 0.4
"""Of the ``pause`` steps, the share that stands the leader's Raft peer still before a
removal; the rest stop a random node's process. The stall lines up its bug in fewer runs (a
five-node cluster keeps quorum), so it gets as many as the read."""

LEASE_SKEWS_MS = (300, 1000, 3000)
"""The job timeouts the workload draws (``sim.workload.draw_job``): skews at lease lengths."""


async def schedule_loop(simulation: Simulation) -> None:
    kinds = [kind for kind in simulation.options.swarm if kind in SCHEDULES]
    if not kinds:
        return
    rng = simulation.rng
    while simulation.phase == "faults":
        await trio.sleep(simulation.options.schedule_pause_s * rng.uniform(0.5, 1.5))
        if simulation.phase != "faults":
            return
        kind = kinds[rng.randrange(len(kinds))]
        simulation.trace.record("schedule", f"{kind} begins")
        await SCHEDULE_STEPS[kind](simulation)
        simulation.faults.schedules += 1
        counter = SCHEDULE_COUNTERS[kind]
        setattr(simulation.faults, counter, getattr(simulation.faults, counter) + 1)
        simulation.trace.record("schedule", f"{kind} ends")


def _faulting(simulation: Simulation) -> bool:
    return simulation.phase == "faults"


def _up_followers(simulation: Simulation, leader: SimNode) -> list[SimNode]:
    return [s for s in simulation.nodes if s is not leader and s.node is not None]


async def _restart_later(simulation: Simulation, simnode: SimNode, delay_s: float) -> None:
    """Restart a node the schedule crashed, in whatever phase (the liveness phase would
    restart it too, once stopped, but the fault phase may go on for a while)."""
    await trio.sleep(delay_s)
    await simnode.stopped.wait()
    if not simnode.running and not simnode.repairing:
        simulation.start(simnode)


def _crash_for_schedule(simulation: Simulation, simnode: SimNode, why: str) -> None:
    """Crash now; the schedule restarts it (``_restart_later``), or the liveness phase does."""
    if _faulting(simulation) and simnode.scope is not None and not simnode.crashing:
        simulation.crash_now(simnode, why)


def _isolate_pairs(isolated: Sequence[str], others: Sequence[str]) -> list[tuple[str, str]]:
    return [(a, b) for a in isolated for b in others] + [(b, a) for a in isolated for b in others]


async def ack_crash(simulation: Simulation) -> None:
    leader = simulation.leader()
    if leader is None:
        return
    followers = _up_followers(simulation, leader)
    if len(followers) < 2:
        return
    rng = simulation.rng
    lagging = followers[rng.randrange(len(followers))]
    holders = [follower for follower in followers if follower is not lagging]
    simulation.cut([(leader.id, lagging.id)], f"schedule: {lagging.id} lags")
    acked = len(simulation.ledger.acked)
    for _ in range(int(ACK_WAIT_S / 0.005)):
        if len(simulation.ledger.acked) > acked or not _faulting(simulation):
            break
        await trio.sleep(0.005)
    if len(simulation.ledger.acked) == acked or not _faulting(simulation):
        simulation.heal()
        return
    down_s = rng.uniform(0.05, 0.5)
    if rng.random() < 0.5:
        names = [simnode.id for simnode in simulation.nodes]
        others = [name for name in names if name not in {h.id for h in holders}]
        simulation.cut(_isolate_pairs([h.id for h in holders], others), "schedule: holders cut")
        _crash_for_schedule(simulation, leader, "schedule: leader after an ack")
        crashed = [leader]
    else:
        simulation.heal()
        crashed = [leader, *holders]
        for simnode in crashed:
            _crash_for_schedule(simulation, simnode, "schedule: a holder after an ack")
    async with trio.open_nursery() as nursery:
        for simnode in crashed:
            nursery.start_soon(_restart_later, simulation, simnode, down_s)
        await trio.sleep(rng.uniform(1.0, 3.0))
    if _faulting(simulation):
        simulation.heal()


async def down_compaction(simulation: Simulation) -> None:
    leader = simulation.leader()
    if leader is None or leader.node is None:
        return
    followers = _up_followers(simulation, leader)
    if not followers:
        return
    victim = followers[simulation.rng.randrange(len(followers))]
    past = leader.node.raft.core.log.last_index()
    _crash_for_schedule(simulation, victim, "schedule: down across a compaction")

    def compacted() -> bool:
        current = simulation.leader()
        node = current.node if current is not None else None
        return node is not None and node.raft.core.log.first_index() > past + 1

    for _ in range(int(COMPACTION_WAIT_S / 0.05)):
        if compacted() or not _faulting(simulation):
            break
        await trio.sleep(0.05)
    simulation.trace.record("schedule", f"{victim.id} back (compacted: {compacted()})")
    await _restart_later(simulation, victim, 0.0)


async def membership_partition(simulation: Simulation) -> None:
    rng = simulation.rng
    names = [simnode.id for simnode in simulation.nodes]
    isolated = names[rng.randrange(len(names))]
    others = [name for name in names if name != isolated]
    simulation.cut(_isolate_pairs([isolated], others), f"schedule: {isolated} isolated")
    await trio.sleep(rng.uniform(0.1, 0.5))
    for toward_full in (False, False, True, True):
        if not _faulting(simulation):
            return
        await simulation.membership_step(toward_full=toward_full)
        await trio.sleep(rng.uniform(0.1, 1.0))
    if _faulting(simulation):
        simulation.heal()


async def lease_skew(simulation: Simulation) -> None:
    leader = simulation.leader()
    if leader is None or leader.node is None:
        return
    followers = _up_followers(simulation, leader)
    if not followers:
        return
    rng = simulation.rng
    target = followers[rng.randrange(len(followers))]
    skew_ms = rng.choice(LEASE_SKEWS_MS) * rng.choice([1, -1]) + rng.randint(-50, 50)
    original_ms = target.clock.skew_ms
    target.clock.skew_ms = leader.clock.skew_ms + skew_ms
    simulation.trace.record("clock", f"{target.id} skew {original_ms} -> {target.clock.skew_ms}")
    if rng.random() < 0.5:
        simulation.transfer_to(leader, target)
    else:
        _crash_for_schedule(simulation, leader, "schedule: leader, a skewed clock next")
        await _restart_later(simulation, leader, rng.uniform(0.5, 2.0))
    await trio.sleep(rng.uniform(2.0, 5.0))
    target.clock.skew_ms = original_ms
    simulation.trace.record("clock", f"{target.id} skew back to {original_ms}")


async def deposed_read(simulation: Simulation) -> None:
    leader = simulation.leader()
    if leader is None or leader.node is None or not _everyone_votes(simulation, leader.node):
        return
    if len(_up_followers(simulation, leader)) < 2:
        return
    others = [simnode for simnode in simulation.nodes if simnode is not leader]
    writer_name, reader_name = "deposed-writer", "deposed-reader"
    cut_off = [s.id for s in others] + simulation.producer_names() + [writer_name]
    simulation.cut(_isolate_pairs([leader.id], cut_off), f"schedule: {leader.id} deposed")
    try:
        new_leader = await _wait_for_new_leader(simulation, others)
        if new_leader is not None:
            await _write_then_read_old(simulation, leader, new_leader, writer_name, reader_name)
    finally:
        if _faulting(simulation):
            simulation.heal()


def _everyone_votes(simulation: Simulation, leader: Node | None) -> bool:
    """Whether every node is a voter in the leader's configuration (none removed, no
    learners): the schedules that need a majority without one node ask for it."""
    if leader is None:
        return False
    membership = leader.raft.core.membership
    everyone = tuple(simnode.id for simnode in simulation.nodes)
    return membership.voters == everyone and not membership.learners


async def _wait_for_new_leader(simulation: Simulation, others: list[SimNode]) -> SimNode | None:
    """The node among ``others`` that leads with an entry of its term committed, or None."""
    for _ in range(int(ACK_WAIT_S / 0.005)):
        if not _faulting(simulation):
            return None
        for simnode in others:
            core = simnode.node.raft.core if simnode.node is not None else None
            if core is not None and core.role is Role.LEADER and core.committed_in_current_term():
                return simnode
        await trio.sleep(0.005)
    return None


async def _write_then_read_old(
    simulation: Simulation,
    old: SimNode,
    new: SimNode,
    writer_name: str,
    reader_name: str,
    reader: Client | None = None,
) -> None:
    """A write through ``new`` (acknowledged), then a read of it through ``old``, judged by
    the read checker; through ``reader`` if given (connected to ``old`` already)."""
    rng = simulation.rng
    key = (
        f"d-{simulation.faults.deposed_reads}"
        if reader is None
        else f"p-{simulation.faults.pauses}"
    )
    fields = draw_job(rng, simulation.options)
    simulation.ledger.fields[key] = fields
    async with contextlib.AsyncExitStack() as stack:
        writer = await stack.enter_async_context(_client_of(simulation, new, writer_name))
        if reader is None:
            reader = await stack.enter_async_context(_client_of(simulation, old, reader_name))
        try:
            job_id = await writer.enqueue(JOB_TYPE, key=key, **fields)
        except RaftqError as error:
            simulation.ledger.unacked[key] = fields
            simulation.trace.record("enqueue", f"{key} not acknowledged: {type(error).__name__}")
            return
        _acknowledged(simulation, key, job_id)
        old_core = old.node.raft.core if old.node is not None else None
        still = old_core is not None and old_core.role is Role.LEADER
        simulation.trace.record("schedule", f"read {job_id} through {old.id} (leads: {still})")
        await checked_read(simulation, reader, old.id, job_id)


def _client_of(simulation: Simulation, simnode: SimNode, name: str) -> AsyncContextManager[Client]:
    """A client named ``name`` that talks to ``simnode`` only."""
    return connect(
        [simnode.config.address],
        network=simulation.network.endpoint(name),
        rng=random.Random(simulation.rng.random()),
        timeout=CLIENT_TIMEOUT_S,
    )


def _acknowledged(simulation: Simulation, key: str, job_id: str) -> None:
    """What a producer records of an acknowledged enqueue (``Simulation.producer``)."""
    ledger = simulation.ledger
    ledger.unacked.pop(key, None)
    ledger.fresh_acks.append(job_id)
    try:
        simulation.node_checks.acknowledged(simulation.nodes, job_id)
    except Violation as violation:
        simulation.fail(violation)
    known = ledger.acked.setdefault(key, job_id)
    if known != job_id:
        simulation.fail(Violation("idempotency keys dedupe", f"{key}: {known}, {job_id}"))
    simulation.trace.record("acked", f"{key} -> {job_id}")


async def _poll(
    simulation: Simulation, condition: Callable[[], bool], bound_s: float, step_s: float = 0.001
) -> bool:
    for _ in range(int(bound_s / step_s)):
        if condition() or not _faulting(simulation):
            break
        await trio.sleep(step_s)
    return condition() and _faulting(simulation)


def _core(simnode: SimNode) -> RaftCore | None:
    return simnode.node.raft.core if simnode.node is not None else None


def _crash_at_wal_write(
    simulation: Simulation, simnode: SimNode, when: Callable[[RaftCore], bool], why: str
) -> None:
    """Crash ``simnode`` at its next WAL write for which ``when(core)`` holds (the entries it
    writes are already in its core's log): what that write holds is lost."""

    def hook(operation: str, path: str) -> None:
        core = _core(simnode)
        if operation == "write" and path.startswith("wal/") and core is not None and when(core):
            simnode.disk.hook = None
            _crash_for_schedule(simulation, simnode, why)

    simnode.disk.hook = hook


async def figure_8(simulation: Simulation) -> None:
    """See the module docstring; each step gives up (restarting what it crashed) if it does
    not happen within ``FIGURE_8_STEP_S``."""
    a = simulation.leader()
    core_a = _core(a) if a is not None else None
    names = tuple(simnode.id for simnode in simulation.nodes)
    if a is None or core_a is None or len(names) != 3 or len(_up_followers(simulation, a)) != 2:
        return
    if not _everyone_votes(simulation, a.node) or not core_a.committed_in_current_term():
        return
    term_a = core_a.term
    x, y = _up_followers(simulation, a)
    try:
        await _figure_8_steps(simulation, a, x, y, term_a)
    finally:
        for simnode in simulation.nodes:
            simnode.disk.hook = None
            core = _core(simnode)
            if core is not None and core.config.inflight_max == 1:  # a step gave up on A
                core.config = attrs.evolve(
                    core.config,
                    append_bytes_max=limits.RAFT_APPEND_BYTES_MAX,
                    inflight_max=limits.RAFT_INFLIGHT_MAX,
                )
        if _faulting(simulation):
            simulation.heal()
            for simnode in simulation.nodes:
                await _start_again(simulation, simnode)


async def _figure_8_steps(
    simulation: Simulation, a: SimNode, x: SimNode, y: SimNode, term_a: int
) -> None:
    trace = simulation.trace
    simulation.cut(_isolate_pairs([a.id], [x.id, y.id]), f"schedule: figure 8, {a.id} alone")

    def a_ahead() -> bool:
        core, last = _core(a), max(_last_index(x), _last_index(y))
        return core is not None and not core.log.unstable and core.log.last_index() > last

    if not await _poll(simulation, a_ahead, FIGURE_8_STEP_S):
        return
    _crash_for_schedule(simulation, a, f"schedule: figure 8, {a.id} holds entries alone")
    simulation.heal()
    # (b) Whichever of x and y is elected is C; the other, B, crashes at its first write.
    for simnode in (x, y):
        _crash_at_wal_write(
            simulation,
            simnode,
            lambda core: core.role is not Role.LEADER and core.term > term_a,
            "schedule: figure 8, before the new leader's entry is durable",
        )

    def c_durable() -> SimNode | None:
        for c, b in ((x, y), (y, x)):
            core = _core(c)
            if core is None or b.scope is not None or core.role is not Role.LEADER:
                continue
            if not core.log.unstable and core.log.last_term() == core.term:
                return c
        return None

    if not await _poll(simulation, lambda: c_durable() is not None, FIGURE_8_STEP_S):
        return
    c = c_durable()
    assert c is not None
    b = y if c is x else x
    x.disk.hook = y.disk.hook = None
    trace.record("schedule", f"figure 8: {c.id} leads, {b.id} lost its first entry")
    _crash_for_schedule(simulation, c, "schedule: figure 8, C after its entry is durable")
    # (c) A is elected again with B's vote; it replicates its old entries one at a time.
    await _start_again(simulation, a)
    await _start_again(simulation, b)
    if not await _poll(simulation, lambda: _core(a) is not None, FIGURE_8_STEP_S):
        return
    core_a = _core(a)
    assert core_a is not None
    core_a.config = attrs.evolve(
        core_a.config, append_bytes_max=FIGURE_8_APPEND_BYTES, inflight_max=1
    )
    _crash_at_wal_write(
        simulation,
        b,
        lambda core: core.log.last_term() > term_a,
        "schedule: figure 8, before A's new entry is durable",
    )
    if not await _poll(simulation, lambda: b.scope is None, FIGURE_8_STEP_S):
        return
    simulation.cut(_isolate_pairs([a.id], [b.id, c.id]), f"schedule: figure 8, {a.id} cut")
    await trio.sleep(0.05)  # what A committed is applied and seen by the checkers
    _crash_for_schedule(simulation, a, "schedule: figure 8, A after B's crash")
    simulation.heal()
    # (d) C, whose last term is the higher, is elected with B's vote.
    await _start_again(simulation, c)
    await _start_again(simulation, b)
    await _poll(simulation, lambda: simulation.leader() not in (None, a), FIGURE_8_STEP_S)
    leader = simulation.leader()
    trace.record("schedule", f"figure 8: {leader.id if leader else None} leads, C back")
    await trio.sleep(0.5)


async def _start_again(simulation: Simulation, simnode: SimNode) -> None:
    """Start ``simnode`` again if it is down or going down (only while faulting; the
    liveness phase restarts every node itself)."""
    if simnode.crashing:
        await simnode.stopped.wait()
    if _faulting(simulation) and not simnode.running and not simnode.repairing:
        simulation.start(simnode)


def _last_index(simnode: SimNode) -> int:
    core = _core(simnode)
    return core.log.last_index() if core is not None else 0


async def held_snapshot(simulation: Simulation) -> None:
    """See the module docstring."""
    leader = simulation.leader()
    followers = _up_followers(simulation, leader) if leader is not None else []
    if leader is None or not followers or not simulation.options.snapshot_entries:
        return
    follower = followers[simulation.rng.randrange(len(followers))]

    def holds_the_next_snapshot(core: RaftCore) -> bool:
        leader_core = _core(leader)
        progress = leader_core.progress.get(follower.id) if leader_core is not None else None
        if leader_core is None or progress is None:
            return False
        snapshot = leader_core.log.storage.snapshot_meta.index
        storage: Any = core.log.storage  # the DurableLog: what is on disk
        own = max(storage.snapshot_meta.index, storage.hard_state.commit)
        last = storage.last_index()
        if not progress.match < snapshot < last or own >= snapshot:
            return False
        simulation.trace.record(
            "schedule",
            f"{leader.id} knows {follower.id} to {progress.match}, snapshotted at {snapshot}; "
            f"{follower.id} holds to {last}, its own commit and snapshot {own}",
        )
        return True

    simulation.cut([(follower.id, leader.id)], f"schedule: {follower.id} acks stall")
    _crash_at_wal_write(
        simulation,
        follower,
        holds_the_next_snapshot,
        "schedule: it holds the leader's next snapshot; its acknowledgements are lost",
    )
    crashed = await _poll(simulation, lambda: follower.scope is None, HELD_SNAPSHOT_WAIT_S)
    follower.disk.hook = None
    if _faulting(simulation):
        simulation.heal()
    if crashed:
        await _start_again(simulation, follower)
        await trio.sleep(2.0)  # the leader's snapshot goes out, is installed, answered


async def late_release(simulation: Simulation) -> None:
    """See the module docstring."""
    stopped: list[tuple[SimNode, tuple[Lease, ...]]] = []

    def stop_there(claimer: str, leases: tuple[Lease, ...]) -> None:
        leader = simulation.leader()
        for simnode in _up_followers(simulation, leader) if leader is not None else []:
            worker = simnode.worker
            if worker is not None and worker.claimer_id == claimer and not stopped:
                simulation.network.silence(simnode.id, True)
                worker.stop()  # before it starts any of them: they are all released
                stopped.append((simnode, leases))

    simulation.claim_rules.on_claimed = stop_there
    try:
        await _poll(simulation, lambda: bool(stopped), LATE_RELEASE_WAIT_S)
    finally:
        simulation.claim_rules.on_claimed = None
    if not stopped:
        return
    follower, leases = stopped[0]
    try:
        simulation.faults.partitions += 1
        simulation.trace.record(
            "schedule",
            f"{follower.id} unheard; its worker stops as {len(leases)} leases reach it",
        )
        held = simulation.oracle.held

        def claimed_again() -> bool:
            return any(
                lease.job_id in held and held[lease.job_id].fence != lease.fence for lease in leases
            )

        again = await _poll(simulation, claimed_again, LATE_RELEASE_CUT_S)
        simulation.trace.record("schedule", f"late release: claimed again {again}")
    finally:
        simulation.network.silence(follower.id, False)
    simulation.trace.record("heal", f"schedule: {follower.id} heard again")
    await trio.sleep(0.5)  # the release arrives and commits
    await _restart_later(simulation, follower, 0.0)  # once its process has exited


async def slow_snapshot(simulation: Simulation) -> None:
    """See the module docstring."""
    up = [simnode for simnode in simulation.nodes if simnode.node is not None]
    if not up or not simulation.options.snapshot_entries:
        return
    simnode = up[simulation.rng.randrange(len(up))]
    slow_s = simulation.rng.uniform(*SLOW_SNAPSHOT_SYNC_S)
    before = _snapshot_index(simnode)
    simnode.disk.slow_paths = ("snapshots", slow_s)
    simulation.trace.record(
        "schedule", f"{simnode.id} saves snapshots slowly (+{slow_s:.2f} s a sync), after {before}"
    )
    try:
        saved = await _poll(
            simulation, lambda: _snapshot_index(simnode) > before, SLOW_SNAPSHOT_WAIT_S, 0.01
        )
    finally:
        simnode.disk.slow_paths = None
    if not saved:
        return
    await trio.sleep(0.2)  # the compaction behind it (a few file removals) is done
    wal = _wal_span(simnode)
    simulation.trace.record(
        "schedule", f"{simnode.id} saved {_snapshot_index(simnode)}, its wal holds {wal}"
    )
    _crash_for_schedule(simulation, simnode, "schedule: after a slow snapshot and its compaction")
    await _restart_later(simulation, simnode, simulation.rng.uniform(0.05, 0.5))


async def rot_remove(simulation: Simulation) -> None:
    """See the module docstring."""
    leader = simulation.leader()
    if leader is None or leader.node is None:
        return
    pair = _rotten_and_removed(simulation, leader)
    if pair is None:
        return
    rotten, removed = pair
    rng = simulation.rng
    _crash_for_schedule(simulation, rotten, "schedule: its disk rots")
    if rotten.node is not None:  # the crash did not land (the fault phase is over)
        return
    if not _rot(simulation, rotten):  # no segment holds two records yet
        await _restart_later(simulation, rotten, 0.0)
        return
    try:
        await trio.sleep(rng.uniform(*ROT_SILENCE_S))
        if _faulting(simulation):
            await _remove_beside(simulation, removed, rotten)
    finally:
        # It refuses to start: the operator repairs it (``Simulation.repair``).
        await _restart_later(simulation, rotten, 0.0)


def _rotten_and_removed(simulation: Simulation, leader: SimNode) -> tuple[SimNode, SimNode] | None:
    """Two up followers of ``leader``: one whose disk is to rot and one the operator is then
    asked to remove; None if there are not two, or the fault atlas allows no rot now."""
    if not simulation.may_rot():
        return None
    rng = simulation.rng
    followers = _up_followers(simulation, leader)
    if len(followers) < 2:
        return None
    rotten = followers[rng.randrange(len(followers))]
    others = [follower for follower in followers if follower is not rotten]
    return rotten, others[rng.randrange(len(others))]


def _rot(simulation: Simulation, rotten: SimNode) -> bool:
    """Rot a synced record of the crashed ``rotten``'s WAL (it will refuse to start until the
    operator repairs it); False if no segment holds two records yet."""
    path = rotten.disk.rot_synced_record()
    if path is None:
        return False
    rotten.rotten, rotten.rotten_at = True, trio.current_time()
    simulation.faults.corruptions += 1
    simulation.trace.record("corrupt", f"{rotten.id}: a synced record of {path}")
    return True


async def _remove_beside(
    simulation: Simulation, removed: SimNode, rotten: SimNode, client: Client | None = None
) -> None:
    """The operator removes ``removed`` while ``rotten`` is out for good, through ``client``
    (or a client of its own); traced either way."""
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(simulation.operator())
        try:
            await client.remove_node(removed.id)
        except RaftqError as error:
            outcome = f"refused: {error!s:.100}"
        else:
            outcome = "done"
            simulation.faults.membership_changes += 1
    simulation.trace.record("membership", f"remove {removed.id} beside {rotten.id}: {outcome}")


async def lost_answers(simulation: Simulation) -> None:
    """See the module docstring."""
    producers = [*simulation.producer_names(), "dependent"]
    nodes = [simnode.id for simnode in simulation.nodes]
    cuts: list[tuple[str, str]] = [(node, producer) for node in nodes for producer in producers]
    simulation.cut(cuts, "schedule: the producers hear no answer")
    await trio.sleep(simulation.rng.uniform(*LOST_ANSWERS_S))
    if _faulting(simulation):
        simulation.heal()


async def pause(simulation: Simulation) -> None:
    """See the module docstring."""
    rng = simulation.rng
    leader = simulation.leader()
    variant = rng.random()
    if leader is not None and variant < PAUSE_READ_SHARE:
        await _pause_leader_and_read(simulation, leader)
        return
    if leader is not None and variant < PAUSE_READ_SHARE + PAUSE_STALL_SHARE:
        await _stall_leader_and_remove(simulation, leader)
        return
    running = [simnode for simnode in simulation.nodes if simnode.node is not None]
    if not running or not simulation.pause(running[rng.randrange(len(running))]):
        return
    try:
        await trio.sleep(rng.uniform(*PAUSE_S))
    finally:
        simulation.resume()
    await trio.sleep(0.5)  # what it does on waking, before the next schedule


async def _pause_leader_and_read(simulation: Simulation, leader: SimNode) -> None:
    """The leader stops hearing its followers (a one-way cut: their answers to its next
    heartbeat wait in the network), then stops (SIGSTOP); the others elect a new leader,
    which acknowledges a write; a reader asks the stopped leader for that job (the request
    waits too); the leader continues, takes the read, and only then are its followers heard
    again: the first answers it gets are to a heartbeat sent before the read arrived. They say
    nothing of its leadership at the read's time (mutant ``read_confirmed_by_older_round``
    takes them as a confirmation and answers from before the write)."""
    rng = simulation.rng
    node = leader.node
    if node is None or not _everyone_votes(simulation, node):
        return
    if len(_up_followers(simulation, leader)) < 2:
        return
    others = [simnode for simnode in simulation.nodes if simnode is not leader]
    async with _client_of(simulation, leader, "paused-reader") as reader:
        try:
            await reader.status()  # its connection is up before the stop
        except RaftqError:
            return
        cuts: list[tuple[str, str]] = [(simnode.id, leader.id) for simnode in others]
        simulation.cut(cuts, f"schedule: {leader.id} hears none of its followers")
        try:
            await _answers_wait_a_round(simulation, leader)
            if not _faulting(simulation) or not simulation.pause(leader):
                return
            new_leader = await _wait_for_new_leader(simulation, others)
            if new_leader is None:
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    _write_then_read_old,
                    simulation,
                    leader,
                    new_leader,
                    "paused-writer",
                    "paused-reader",
                    reader,
                )
                await trio.sleep(rng.uniform(*PAUSE_READ_WAIT_S))
                simulation.resume()
                await trio.sleep(rng.uniform(*PAUSE_HEAR_AFTER_S))
                if _faulting(simulation):
                    simulation.heal()
        finally:
            simulation.resume()
            if _faulting(simulation):
                simulation.heal()
    await trio.sleep(0.5)


async def _stall_leader_and_remove(simulation: Simulation, leader: SimNode) -> None:
    """The leader's Raft peer stands still (a long fdatasync): its connections go on reading
    into its inbox. A follower's answers to the last heartbeats before the stall reach the
    inbox during it (they are held back a round first, by a one-way cut healed as the stall
    begins); then that follower crashes and its disk rots (it will refuse to start, as in
    ``rot_remove``). A second or two later, just as the peer moves again, an operator
    connected to it beforehand asks it to remove the other follower (the request may wait in
    the inbox with the answers). Its check-quorum rounds stood still (a node counts at most
    three ticks of a stall), and the dead follower's last answers come in just now: it must
    not count that follower as up (mutant ``reconfig_trusts_stalled_rounds``; sweep seed
    7000117)."""
    rng = simulation.rng
    pair = _rotten_and_removed(simulation, leader)
    if pair is None:
        return
    rotten, removed = pair
    crashed = False
    try:
        async with _client_of(simulation, leader, "stall-operator") as operator:
            try:
                await operator.status()  # its connection is up before the stall
            except RaftqError:
                return
            if not await _stall_as_late_answers_arrive(simulation, leader, rotten):
                return
            try:
                await trio.sleep(rng.uniform(0.02, 0.1))
                _crash_for_schedule(simulation, rotten, "schedule: its disk rots")
                crashed = rotten.node is None
                if not (crashed and _rot(simulation, rotten)):
                    return
                await trio.sleep(rng.uniform(*ROT_SILENCE_S))
                async with trio.open_nursery() as nursery:
                    if _faulting(simulation):
                        nursery.start_soon(_remove_beside, simulation, removed, rotten, operator)
                        await trio.sleep(rng.uniform(*STALL_REMOVE_S))
                    simulation.resume("moves again")  # the removal may still be on its way
            finally:
                simulation.resume("moves again")
    finally:
        if crashed:  # rotten, it refuses to start: the operator repairs it (``repair``)
            await _restart_later(simulation, rotten, 0.0)


async def _stall_as_late_answers_arrive(
    simulation: Simulation, leader: SimNode, rotten: SimNode
) -> bool:
    """Hold ``rotten``'s answers to ``leader`` back a round, then stand the leader's Raft peer
    still and let them through into its inbox; False if the stall did not begin."""
    simulation.cut([(rotten.id, leader.id)], f"schedule: {leader.id} hears {rotten.id} late")
    try:
        await _answers_wait_a_round(simulation, leader)
        return _faulting(simulation) and simulation.pause(leader, raft_peer_only=True)
    finally:
        if _faulting(simulation):
            simulation.heal()


async def _answers_wait_a_round(simulation: Simulation, leader: SimNode) -> None:
    """Sleep past ``leader``'s next heartbeat or two, so answers to it held back by a cut
    pile up in the network."""
    config = leader.config
    heartbeat_s = config.tick_ms * config.heartbeat_ticks / 1000
    await trio.sleep(heartbeat_s * simulation.rng.uniform(1.2, 2.0))


def _snapshot_index(simnode: SimNode) -> int:
    """The newest snapshot on the node's disk as its process knows it (0 when down)."""
    core = _core(simnode)
    storage: Any = core.log.storage if core is not None else None  # the DurableLog
    return int(storage.snapshot_meta.index) if storage is not None else 0


def _wal_span(simnode: SimNode) -> str:
    core = _core(simnode)
    if core is None:
        return "nothing (down)"
    statistics = core.log.storage.wal_statistics()  # type: ignore[attr-defined]
    return f"{statistics.first_index}..{statistics.last_index} in {statistics.segments} segments"


SCHEDULE_STEPS: dict[str, Callable[[Simulation], Awaitable[None]]] = {
    "ack_crash": ack_crash,
    "down_compaction": down_compaction,
    "membership_partition": membership_partition,
    "lease_skew": lease_skew,
    "deposed_read": deposed_read,
    "figure_8": figure_8,
    "held_snapshot": held_snapshot,
    "late_release": late_release,
    "slow_snapshot": slow_snapshot,
    "rot_remove": rot_remove,
    "lost_answers": lost_answers,
    "pause": pause,
}
