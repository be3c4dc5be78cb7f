"""The log writer: makes a Ready durable (snapshot, entries, hard state) in the order the
Ready contract asks, through the ``DurableLog`` (whose WAL shares one fdatasync among
everything written together)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs
import trio

from raftq.raft.ready import Ready
from raftq.raft.types import HardState, SnapshotMeta
from raftq.storage.durable_log import DurableLog

logger = logging.getLogger("raftq.node")


@attrs.define(eq=False)
class LogWriterStatistics:
    readies: int = 0
    entries: int = 0
    hard_states: int = 0
    snapshots_installed: int = 0
    snapshots_saved: int = 0
    fsync_seconds_total: float = 0.0


class LogWriter:
    def __init__(
        self, log: DurableLog, observe_seconds: Callable[[float], None] | None = None
    ) -> None:
        self.log = log
        self._observe_seconds = observe_seconds
        self.statistics = LogWriterStatistics()
        self._persisted_commit = log.hard_state.commit

    async def persist(self, ready: Ready) -> None:
        """Write what ``ready`` asks to persist; return once it is durable."""
        started = trio.current_time()
        if ready.snapshot is not None:
            writer = await self.log.begin_snapshot_install(ready.snapshot.meta)
            try:
                await writer.write(ready.snapshot.data)
            except BaseException:
                await writer.abort()
                raise
            await self.log.finish_snapshot_install(writer)
            self.statistics.snapshots_installed += 1
        if ready.entries:
            await self.log.append(ready.entries)
            self.statistics.entries += len(ready.entries)
        if ready.hard_state is not None and self._must_save(ready.hard_state):
            await self.log.save_hard_state(ready.hard_state)
            self.statistics.hard_states += 1
        self.statistics.readies += 1
        elapsed = trio.current_time() - started
        self.statistics.fsync_seconds_total += elapsed
        if self._observe_seconds is not None:
            self._observe_seconds(elapsed)

    def _must_save(self, state: HardState) -> bool:
        """Term and vote must be durable before anything that depends on them is sent. The
        commit index need not be (Raft recomputes it from the leader): saving it costs two
        fsyncs, so it is saved only along with a term or vote change, or every so often."""
        current = self.log.hard_state
        if (state.term, state.vote) != (current.term, current.vote):
            return True
        return state.commit - current.commit >= COMMIT_SAVE_EVERY_ENTRIES

    async def save_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        await self.log.save_snapshot(meta, data)
        self.statistics.snapshots_saved += 1
        logger.info("snapshot saved index=%d term=%d bytes=%d", meta.index, meta.term, len(data))


COMMIT_SAVE_EVERY_ENTRIES = 1_000
"""Saving the commit index lazily costs nothing in safety; on restart a node re-learns it from
the leader and re-applies at most this many entries from its log that it had applied."""
