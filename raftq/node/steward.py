"""The leader's housekeeping: the commands only a leader proposes, on its own schedule.

On becoming leader it first commits ``ExtendAll`` (so no worker's lease expires because of the
failover), and only then, every ``expire_interval_ms``, ``ExpireLeases``; now and then a
``Purge`` of jobs finished longer ago than the retention period.
"""

from __future__ import annotations

import logging

import trio

from raftq.jobs.commands import Command, ExpireLeases, ExtendAll, Purge
from raftq.node.clock import Clock
from raftq.node.config import NodeConfig
from raftq.node.raft_peer import RaftPeer
from raftq.node.waiters import NotLeaderHere
from raftq.raft.ready import Role
from raftq.transport.wire import Failure

logger = logging.getLogger("raftq.node")

PURGE_EVERY_EXPIRIES = 600
"""Purge once per this many expiry rounds (ten minutes at the default one second)."""


class Steward:
    def __init__(self, raft: RaftPeer, config: NodeConfig, clock: Clock) -> None:
        self._raft = raft
        self._config = config
        self._clock = clock
        self.extend_alls = 0
        self.expiries = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            if self._raft.role is Role.LEADER:
                await self._lead(self._raft.term)  # returns once no longer leader of that term
                continue
            await self._raft.role_changed()

    async def _lead(self, term: int) -> None:
        interval_s = self._config.expire_interval_ms / 1000
        while not await self._commit(ExtendAll(now_ms=0, by_ms=self._config.lease_extension_ms)):
            if not self._still_leading(term):
                return
            await trio.sleep(interval_s)
        self.extend_alls += 1
        rounds = 0
        while self._still_leading(term):
            await trio.sleep(interval_s)
            if not self._still_leading(term):
                return
            await self._commit(ExpireLeases(now_ms=0))
            self.expiries += 1
            rounds += 1
            if rounds % PURGE_EVERY_EXPIRIES == 0:
                cutoff = self._clock.now_ms() - self._config.retention_ms
                await self._commit(Purge(now_ms=0, before_ms=cutoff))

    def _still_leading(self, term: int) -> bool:
        return self._raft.role is Role.LEADER and self._raft.term == term

    async def _commit(self, command: Command) -> bool:
        waiter = self._raft.propose(command)
        with trio.move_on_after(max(1.0, 10 * self._config.expire_interval_ms / 1000)):
            await waiter.event.wait()
        if waiter.outcome is None or isinstance(waiter.outcome, Failure | NotLeaderHere):
            logger.info("leader command not committed command=%s", type(command).__name__)
            return False
        return True
