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

Every step respects the fault atlas of ``sim.disk``: crashes lose only unsynced bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from sim.cluster import SimNode
    from sim.runner import Simulation

SCHEDULES = ("ack_crash", "down_compaction", "membership_partition", "lease_skew")

SCHEDULE_COUNTERS = {
    "ack_crash": "ack_crashes",
    "down_compaction": "down_compactions",
    "membership_partition": "membership_partitions",
    "lease_skew": "lease_skews",
}
"""Schedule -> its count in the run's ``faults`` (``runner.FaultCounts``)."""

ACK_WAIT_S = 5.0
"""How long ``ack_crash`` waits for an acknowledgement with one follower lagging."""

COMPACTION_WAIT_S = 20.0
"""How long ``down_compaction`` keeps a follower down waiting for the leader to compact."""

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


SCHEDULE_STEPS: dict[str, Callable[[Simulation], Awaitable[None]]] = {
    "ack_crash": ack_crash,
    "down_compaction": down_compaction,
    "membership_partition": membership_partition,
    "lease_skew": lease_skew,
}
