"""A deposed leader's own proposals (raftq/node/waiters.py ``proposed_command``): the leader
applies the command objects it proposed instead of decoding their entries, so this checks,
under the simulator, that an entry a newer leader wrote over such a proposal is applied from
its committed bytes. The simulator's checkers compare every node's state machine with one
built from the committed log's bytes alone (digests), so a node that applied its stale object
would fail the run."""

from __future__ import annotations

import trio

from raftq.node.waiters import ProposalStatistics
from sim.options import Options
from sim.runner import Simulation, run_options


def test_a_deposed_leaders_overwritten_proposals_are_applied_from_the_new_leaders_bytes() -> None:
    """Raft 5.3/5.4: the leader is cut off from its peers (not from clients) and accepts
    enqueues it can never commit; the majority elects a new leader, whose entries replace
    them at the same indexes. After the heal, the old leader applies the new leader's entries
    there, decoded from their bytes, and its state matches the log's."""
    seen: dict[str, ProposalStatistics] = {}

    async def script(sim: Simulation) -> None:
        leader = await sim.wait_for_leader()
        assert leader.node is not None
        old_node, old_term = leader.node, leader.node.raft.core.term
        await trio.sleep(0.5)
        others = [simnode.id for simnode in sim.nodes if simnode is not leader]
        sim.cut([(leader.id, o) for o in others] + [(o, leader.id) for o in others], "depose")
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
        await sim.wait_until(
            lambda: old_node.applier.proposals.overwritten > 0,
            "the old leader applying an entry written over its own proposal",
            10.0,
        )
        await trio.sleep(1.0)  # the digests are compared meanwhile
        seen["old leader"] = old_node.applier.proposals

    report = run_options(Options.quiet(102), script=script)
    assert report.verdict == "pass", (report.violations, "\n".join(report.trace_tail))
    statistics = seen["old leader"]
    assert statistics.overwritten > 0  # the case under test happened
    assert statistics.reused > 0  # and before it, its committed proposals were not decoded
    assert statistics.bytes_differed == 0
