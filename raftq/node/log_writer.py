"""The log writer: makes a Ready durable (snapshot, entries, hard state) in the order the
Ready contract asks, through the ``DurableLog``, and saves the applier's snapshots.

It is not an actor: it is the Raft peer's persistence helper, made and called by the peer
alone (``RaftPeer.log_writer``), so the durable log has one writer. Every write asserts it
runs in the peer's task or a child task of it (``owner``); the applier asks the peer to save
a snapshot rather than calling ``save_snapshot`` itself.

A full disk or a failed fsync does not stop the node: ``persist`` does not return until the
Ready is durable, so the Raft peer sends none of its acknowledgements and applies nothing past
what is on disk. Meanwhile it says why (``storage_problem``: logs, metrics, ``status``), and
every ``STORAGE_RETRY_MS`` it recovers the log (cutting off what the failed sync may have lost,
``WriteAheadLog.recover``) and writes the Ready again. When space returns, the node resumes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs
import trio

from raftq.errors import StorageError
from raftq.raft.ready import Ready
from raftq.raft.types import Entry, HardState, SnapshotMeta
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
    storage_errors: int = 0
    """Failed attempts to persist a Ready (a full disk, a failed fsync)."""


class LogWriter:
    def __init__(
        self, log: DurableLog, observe_seconds: Callable[[float], None] | None = None
    ) -> None:
        self.log = log
        self._observe_seconds = observe_seconds
        self.statistics = LogWriterStatistics()
        self._persisted_commit = log.hard_state.commit
        self.storage_problem: str | None = None
        """Why writes are not being acknowledged (the last storage error), or None."""
        self.owner: trio.lowlevel.Task | None = None
        """The Raft peer's task, set when it starts: the only one (with its children) that
        may write."""

    def _check_owner(self) -> None:
        task = trio.lowlevel.current_task()
        parent = task.parent_nursery.parent_task if task.parent_nursery is not None else None
        assert self.owner is not None, "the Raft peer has not started"
        assert self.owner in (task, parent), (
            f"only the Raft peer writes the durable log, not task {task.name}"
        )

    async def persist(self, ready: Ready) -> None:
        """Write what ``ready`` asks to persist; return once it is durable, however long the
        disk takes to accept it again (module docstring)."""
        self._check_owner()
        started = trio.current_time()
        while True:
            try:
                await self._persist_once(ready)
                break
            except (StorageError, OSError) as error:
                await self._stall(str(error))
        if self.storage_problem is not None:
            logger.warning("storage writable again; acknowledging writes")
            self.storage_problem = None
        self.statistics.readies += 1
        elapsed = trio.current_time() - started
        self.statistics.fsync_seconds_total += elapsed
        if self._observe_seconds is not None:
            self._observe_seconds(elapsed)

    async def _stall(self, problem: str) -> None:
        """Report ``problem``, then wait until the log is writable again."""
        self.statistics.storage_errors += 1
        if self.storage_problem is None:
            logger.error(
                "storage failed; not acknowledging writes until it recovers error=%r", problem
            )
        self.storage_problem = problem
        while True:
            await trio.sleep(STORAGE_RETRY_MS / 1000)
            try:
                await self.log.recover()
                return
            except StorageError as error:
                self.storage_problem = str(error)
                logger.info("storage still failing error=%r", str(error))

    async def _persist_once(self, ready: Ready) -> None:
        """One attempt; safe to repeat after a failure (what is already durable is skipped)."""
        if ready.snapshot is not None and ready.snapshot.meta.index > self.log.snapshot_meta.index:
            writer = await self.log.begin_snapshot_install(ready.snapshot.meta)
            try:
                await writer.write(ready.snapshot.data)
            except BaseException:
                await writer.abort()
                raise
            await self.log.finish_snapshot_install(writer)
            self.statistics.snapshots_installed += 1
        if ready.entries and not self._holds(ready.entries[-1]):
            await self.log.append(ready.entries)
            self.statistics.entries += len(ready.entries)
        if ready.hard_state is not None and (
            ready.commit_durable or self._must_save(ready.hard_state)
        ):
            await self.log.save_hard_state(ready.hard_state)
            self.statistics.hard_states += 1

    def _holds(self, last: Entry) -> bool:
        """Whether the log already holds ``last`` (written by an attempt that failed later):
        by the log matching property it then holds every entry before it too."""
        log = self.log
        return log.first_index() <= last.index <= log.last_index() and (
            log.term(last.index) == last.term
        )

    def _must_save(self, state: HardState) -> bool:
        """Term and vote must be durable before anything that depends on them is sent. The
        commit index need not be (Raft recomputes it from the leader): saving it costs two
        fsyncs, so it is saved only along with a term or vote change, or every so often."""
        current = self.log.hard_state
        if (state.term, state.vote) != (current.term, current.vote):
            return True
        return state.commit - current.commit >= COMMIT_SAVE_EVERY_ENTRIES

    async def save_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Keep the applier's snapshot and compact the log behind it (``DurableLog``)."""
        self._check_owner()
        await self.log.save_snapshot(meta, data)
        self.statistics.snapshots_saved += 1
        logger.info("snapshot saved index=%d term=%d bytes=%d", meta.index, meta.term, len(data))


STORAGE_RETRY_MS = 1_000
"""How often a node whose disk failed tries again: often enough to resume within a second of
space returning, rarely enough that a broken disk costs nothing and the log stays quiet."""

COMMIT_SAVE_EVERY_ENTRIES = 1_000
"""Saving the commit index lazily costs nothing in safety; on restart a node re-learns it from
the leader and re-applies at most this many entries from its log that it had applied."""
