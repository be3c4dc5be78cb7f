"""The Raft peer tells its core when it could not run for longer than a few ticks: a leader
then takes no membership change until its check-quorum rounds are live again
(``RaftCore.stalled``, sweep seed 7000117)."""

from __future__ import annotations

import random

import trio

from raftq.ids import NodeId
from raftq.jobs.commands import ExpireLeases
from raftq.node.applier import ApplyBatch
from raftq.node.raft_peer import CATCH_UP_TICKS_MAX, RaftPeer
from raftq.node.waiters import ProposalWaiters
from raftq.raft.core import STALL_ROUNDS, RaftConfig, RaftCore
from raftq.raft.ready import Role
from raftq.raft.types import Membership
from raftq.storage.durable_log import DurableLog
from tests.storage_helpers import SlowSyncDisk

TICK_MS = 30
ELECTION_TICKS = 10


class _FixedClock:
    def now_ms(self) -> int:
        return 1_767_225_600_000


async def _leading_peer(
    disk: SlowSyncDisk,
) -> tuple[RaftPeer, RaftCore, DurableLog, trio.MemoryReceiveChannel[ApplyBatch]]:
    log = await DurableLog.open(disk)
    core = RaftCore(
        RaftConfig(node_id=NodeId("n1"), election_ticks=ELECTION_TICKS, commit_notices=False),
        log,
        random.Random(0),
        initial_membership=Membership(voters=(NodeId("n1"),)),
    )
    apply_send, apply_receive = trio.open_memory_channel[ApplyBatch](64)
    peer = RaftPeer(
        core,
        log,
        _FixedClock(),
        tick_ms=TICK_MS,
        send=lambda message: None,
        apply=apply_send,
        waiters=ProposalWaiters(),
    )
    return peer, core, log, apply_receive  # the applier's end: held open, nothing reads it


async def test_a_leader_that_stood_still_for_an_fsync_is_told_and_counts_its_rounds_again(
    autojump_clock: object,
) -> None:
    disk = SlowSyncDisk(sync_seconds=0.001)
    peer, core, log, _applier_end = await _leading_peer(disk)
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.run)
        for _ in range(200):
            if core.role is Role.LEADER:
                break
            await trio.sleep(TICK_MS / 1000)
        assert core.role is Role.LEADER
        await trio.sleep(1.0)  # live rounds: nothing to forget
        assert core.stall_rounds == 0
        # One append whose fdatasync takes a second: the peer waits in it, ticking nothing.
        disk.sync_seconds = 1.0
        peer.propose(ExpireLeases(now_ms=1))
        stalled_seen = False
        for _ in range(400):  # 2 s: the sync's second and the rounds after it
            await trio.sleep(0.005)
            if core.stall_rounds:
                stalled_seen = True
                break
        assert stalled_seen, "the peer did not tell its core of the stall"
        assert core.stall_rounds == STALL_ROUNDS
        disk.sync_seconds = 0.001
        # Two check-quorum rounds later it trusts its rounds again.
        await trio.sleep((STALL_ROUNDS + 1) * ELECTION_TICKS * TICK_MS / 1000)
        assert core.stall_rounds == 0
        late_s = peer.statistics.tick_late.value(trio.current_time())
        assert late_s > CATCH_UP_TICKS_MAX * TICK_MS / 1000
        nursery.cancel_scope.cancel()
    await log.close()
