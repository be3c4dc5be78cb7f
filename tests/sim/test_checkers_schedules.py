"""The rule "a slot fires while a leader exists" of ``sim.checkers_schedules`` judges a slot by
what its leader could do: it fires on a leader that led and committed past the slot, and stays
quiet on one whose disk failed as the slot came and who was deposed before writing again
(sweep seed 5500245: its firing was never in a log; the next leader's catch-up is the rule)."""

from __future__ import annotations

import types

import pytest
import trio
import trio.testing

from raftq import codec
from raftq.jobs.commands import Command, PutSchedule, ScheduleSpec
from raftq.raft.ready import Role
from raftq.raft.types import Entry, EntryKind
from sim.checkers import JobOracle, Violation
from sim.checkers_schedules import FIRED_WITHIN_S, ScheduleRules
from sim.cluster import EPOCH_MS

SLOT_S = 16.0
"""The slot the tests judge (every 1 s, the leader's clock exact); the schedule is added at 0."""


class _Leader:
    """What the checker reads of a node: role, term, commit and last index."""

    def __init__(self) -> None:
        self.role = Role.LEADER
        self.term = 7
        self.committed = 0
        self.last = 0

    def last_index(self) -> int:
        return self.last


def _cluster(leader: _Leader) -> types.SimpleNamespace:
    oracle = JobOracle()
    spec = ScheduleSpec(name="every-1", type="sim", every_ms=1_000)
    entry = Entry(
        index=1,
        term=1,
        kind=EntryKind.COMMAND,
        data=codec.encode(PutSchedule(now_ms=EPOCH_MS, schedule=spec), Command),
    )
    oracle.apply(entry)
    core = types.SimpleNamespace(role=leader.role, term=leader.term, log=leader)
    node = types.SimpleNamespace(raft=types.SimpleNamespace(core=core))
    simnode = types.SimpleNamespace(id="n3", node=node, clock=types.SimpleNamespace(skew_ms=0))
    return types.SimpleNamespace(nodes=[simnode], oracle=oracle, core=core, simnode=simnode)


async def _run(cluster: types.SimpleNamespace, leader: _Leader, story: str, until_s: float) -> None:
    """Checks every 20 ms, as the simulator does. No node leads until 14.6 s (so 16 s is the
    first slot with a leader a second before it); then the leader lives ``story``: ``commits``
    throughout; ``stalls`` stops writing at 15.5 s (its commit stays, nothing more is
    appended) and is deposed at 17.4 s; ``slow`` stops committing at 15.5 s and commits all
    it holds again at 17.4 s, still leading."""
    rules = ScheduleRules()
    node = cluster.simnode.node
    for step in range(round(until_s / 0.02)):
        now_s = trio.current_time()
        cluster.simnode.node = node if now_s >= 14.6 else None
        if story == "commits" or now_s < 15.5:
            leader.last += 5
            leader.committed = leader.last - 2
        elif story == "stalls" and now_s >= 17.4:
            cluster.simnode.node = None  # deposed and crashed: no leader from here
        elif story == "slow" and now_s >= 17.4:
            leader.last += 5
            leader.committed = leader.last
        rules.check(cluster)
        await trio.sleep(0.02)
        assert step < 10_000


@pytest.mark.parametrize("story", ["commits", "slow"])
def test_a_slot_its_leader_led_and_committed_past_must_fire(story: str) -> None:
    leader = _Leader()
    cluster = _cluster(leader)
    until_s = SLOT_S + FIRED_WITHIN_S + 5
    with pytest.raises(Violation, match="slot 1767225616000 of every-1 fell while one leader"):
        trio.run(
            _run,
            cluster,
            leader,
            story,
            until_s,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )


def test_a_slot_that_came_while_its_leader_could_not_write_is_left_to_the_catch_up() -> None:
    leader = _Leader()
    cluster = _cluster(leader)
    until_s = SLOT_S + FIRED_WITHIN_S + 5
    trio.run(
        _run, cluster, leader, "stalls", until_s, clock=trio.testing.MockClock(autojump_threshold=0)
    )
