"""Unit tests written for mutants (tests/mutants/*.patch, ``sim.mutants``) that the rest of the
suite let through: each states the rule the mutant breaks."""

from __future__ import annotations

import random
from pathlib import Path

import attrs
import trio

from raftq.ids import NodeId
from raftq.jobs.commands import Command, Count, ExpireLeases, ExtendAll
from raftq.node.applier import ApplyBatch
from raftq.node.config import NodeConfig
from raftq.node.raft_peer import RaftPeer
from raftq.node.steward import Steward
from raftq.node.waiters import ProposalWaiters, Waiter
from raftq.raft.core import RaftConfig, RaftCore
from raftq.raft.messages import AppendEntries, Heartbeat, Message, RequestVote, RequestVoteResponse
from raftq.raft.ready import Role
from raftq.raft.types import HardState, Membership
from raftq.storage.durable_log import DurableLog
from tests.storage_helpers import SlowSyncDisk, make_entries
from tests.test_raft_paper import N1, N2, log_of_terms, new_peer
from tests.test_wal import open_wal, segment_files, write_log


def test_a_heartbeat_with_a_lower_commit_never_lowers_the_followers_commit() -> None:
    """Raft 5.3: the commit index only grows. A new leader's first heartbeats carry a commit
    capped at what it knows the follower holds (0 at first): the follower keeps its own.
    Catches mutant ``commit_regresses``."""
    follower = new_peer(N2, entries=log_of_terms(1, 1, 1, 1, 1))
    core = follower.core
    core.step(AppendEntries(term=1, sender=N1, recipient=N2, prev_index=5, prev_term=1, commit=5))
    assert core.log.committed == 5
    core.step(Heartbeat(term=1, sender=N1, recipient=N2, commit=2))
    assert core.log.committed == 5
    core.step(Heartbeat(term=2, sender=N1, recipient=N2, commit=0))
    assert core.log.committed == 5


async def test_compaction_keeps_the_segment_that_holds_entries_after_the_index(
    tmp_path: Path,
) -> None:
    """Compacting below index ``i`` deletes only segments whose every entry is ``<= i``: the
    segment holding ``i`` also holds later entries a follower may still need (and the log's
    own restart). Catches mutant ``compact_past_snapshot``."""
    entries = make_entries(1, 201, size=50)
    await write_log(tmp_path, entries, segment_bytes=1000)
    firsts = [int(path.stem) for path in segment_files(tmp_path)]
    wal = await open_wal(tmp_path, segment_bytes=1000)
    inside = firsts[3] + 1  # inside the fourth segment, which holds entries after it
    await wal.compact(inside)
    assert wal.first_index == firsts[3]
    assert wal.read(inside + 1, 201) == entries[inside:]
    await wal.close()
    wal = await open_wal(tmp_path, segment_bytes=1000)
    assert wal.first_index == firsts[3]
    await wal.close()


class _FixedClock:
    def now_ms(self) -> int:
        return 1_767_225_600_000


async def test_a_vote_is_sent_only_once_the_vote_is_durable(autojump_clock: object) -> None:
    """The Ready contract (DESIGN.md): persist entries and hard state, only then send. A vote
    sent before the vote is on disk is forgotten by a crash, and the node may vote again in
    the same term. Catches mutants ``send_before_persist`` and ``vote_not_persisted``."""
    log = await DurableLog.open(SlowSyncDisk(sync_seconds=0.01))
    voters = (NodeId("n1"), NodeId("n2"), NodeId("n3"))
    core = RaftCore(
        RaftConfig(node_id=NodeId("n2"), commit_notices=False),
        log,
        random.Random(0),
        initial_membership=Membership(voters=voters),
    )
    durable_when_sent: list[tuple[Message, HardState]] = []
    apply_send, _apply_receive = trio.open_memory_channel[ApplyBatch](16)
    peer = RaftPeer(
        core,
        log,
        _FixedClock(),
        tick_ms=100,
        send=lambda message: durable_when_sent.append((message, log.hard_state)),
        apply=apply_send,
        waiters=ProposalWaiters(),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.run)
        peer.deliver(
            RequestVote(term=5, sender=voters[0], recipient=voters[1], last_index=0, last_term=0)
        )
        for _ in range(100):
            if durable_when_sent:
                break
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    (message, durable), *_ = durable_when_sent
    assert isinstance(message, RequestVoteResponse)
    assert message.granted
    assert (durable.term, durable.vote) == (5, voters[0])
    await log.close()


@attrs.define(eq=False)
class _LeadingRaft:
    """What the steward sees of the Raft peer: a leader of term 3 that commits everything."""

    role: Role = Role.LEADER
    term: int = 3
    proposed: list[Command] = attrs.field(factory=list)

    def propose(self, command: Command) -> Waiter:
        self.proposed.append(command)
        waiter = Waiter()
        waiter.resolve(Count(count=0))
        return waiter


async def test_a_new_leader_extends_every_lease_before_expiring_any(autojump_clock: object) -> None:
    """DESIGN.md, job semantics: "a new leader first extends every outstanding lease by one
    lease period in a committed entry, so a failover never expires a healthy worker's lease
    early". Catches mutant ``no_extend_on_failover``."""
    raft = _LeadingRaft()
    config = NodeConfig(node_id=NodeId("n1"), members={NodeId("n1"): "127.0.0.1:1"}, data_dir="d")
    steward = Steward(raft, config, _FixedClock())  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(steward.run)
        await trio.sleep(3.5 * config.expire_interval_ms / 1000)
        nursery.cancel_scope.cancel()
    kinds = [type(command) for command in raft.proposed]
    assert kinds[0] is ExtendAll, kinds
    assert raft.proposed[0] == ExtendAll(now_ms=0, by_ms=config.lease_extension_ms)
    assert kinds[1:] == [ExpireLeases] * (len(kinds) - 1), kinds
    assert len(kinds) >= 3
