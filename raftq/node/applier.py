"""The applier: applies committed entries to the job state machine, in log order, and answers
the proposals waiting on them; takes a snapshot every ``snapshot_entries`` applied entries or
``snapshot_bytes`` bytes of them, whichever comes first."""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs
import trio

from raftq import codec
from raftq.errors import DecodeError, StorageError
from raftq.jobs.commands import Command
from raftq.jobs.machine import JobStateMachine, Observer
from raftq.node.log_writer import LogWriter
from raftq.node.waiters import ProposalWaiters
from raftq.raft.log import IncomingSnapshot
from raftq.raft.types import Entry, EntryKind, Membership, SnapshotMeta

logger = logging.getLogger("raftq.node")


@attrs.frozen(kw_only=True)
class ApplyBatch:
    """What one Ready hands the applier: a snapshot to restore, then entries to apply."""

    snapshot: IncomingSnapshot | None
    entries: tuple[Entry, ...]


@attrs.define(eq=False)
class ApplierStatistics:
    applied_entries: int = 0
    applied_index: int = 0
    snapshots_restored: int = 0


class Applier:
    def __init__(
        self,
        machine: JobStateMachine,
        *,
        applied_index: int,
        membership: Membership,
        waiters: ProposalWaiters,
        log_writer: LogWriter,
        snapshot_entries: int,
        snapshot_bytes: int = 0,
        batches: trio.MemoryReceiveChannel[ApplyBatch],
        observer: Observer | None = None,
        observe_snapshot_seconds: Callable[[float], None] | None = None,
    ) -> None:
        self._observer = observer
        self._observe_snapshot_seconds = observe_snapshot_seconds
        machine.observer = observer
        self.machine = machine
        self.applied_index = applied_index
        self.applied_term = 0
        self.membership = membership
        self._waiters = waiters
        self._log_writer = log_writer
        self._snapshot_entries = snapshot_entries
        self._snapshot_bytes = snapshot_bytes
        self._bytes_since_snapshot = 0
        self._snapshot_index = applied_index
        self._batches = batches
        self._applied_changed = trio.Event()
        self.statistics = ApplierStatistics(applied_index=applied_index)
        self.entry_observer: Callable[[Entry], None] | None = None
        """Told of every entry as it is applied (the simulator's checkers); not part of the
        state, like ``machine.observer``."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for batch in self._batches:
            if batch.snapshot is not None:
                self._restore(batch.snapshot)
            for entry in batch.entries:
                self._apply(entry)
            self.statistics.applied_index = self.applied_index
            self._applied_changed.set()
            self._applied_changed = trio.Event()
            await self._maybe_snapshot()

    def _restore(self, snapshot: IncomingSnapshot) -> None:
        self.machine = JobStateMachine.restore(snapshot.data)
        self.machine.observer = self._observer
        self.applied_index = snapshot.meta.index
        self.applied_term = snapshot.meta.term
        self.membership = snapshot.meta.membership
        self._snapshot_index = snapshot.meta.index
        self._bytes_since_snapshot = 0
        self._waiters.skipped_to(snapshot.meta.index)
        self.statistics.snapshots_restored += 1
        logger.info("state restored from a leader's snapshot index=%d", snapshot.meta.index)

    def _apply(self, entry: Entry) -> None:
        assert entry.index == self.applied_index + 1, (entry.index, self.applied_index)
        if entry.kind is EntryKind.COMMAND:
            try:
                command: Command = codec.decode(entry.data, Command)
            except DecodeError as error:
                # Every node rejects the same bytes the same way: skip, deterministically.
                logger.error("undecodable command skipped index=%d error=%r", entry.index, error)
            else:
                result = self.machine.apply(entry.index, command, entry.term)
                self._waiters.applied(entry.index, entry.term, result)
        elif entry.kind is EntryKind.MEMBERSHIP:
            self.membership = codec.decode(entry.data, Membership)
            self._waiters.applied(entry.index, entry.term, self.membership)
        self.applied_index = entry.index
        self.applied_term = entry.term
        self._bytes_since_snapshot += len(entry.data)
        self.statistics.applied_entries += 1
        if self.entry_observer is not None:
            self.entry_observer(entry)

    async def wait_applied(self, index: int) -> None:
        """Return once entries up to ``index`` are applied."""
        while self.applied_index < index:
            await self._applied_changed.wait()

    async def _maybe_snapshot(self) -> None:
        entries_due = self._snapshot_entries and (
            self.applied_index - self._snapshot_index >= self._snapshot_entries
        )
        bytes_due = self._snapshot_bytes and self._bytes_since_snapshot >= self._snapshot_bytes
        if not (entries_due or bytes_due):
            return
        meta = SnapshotMeta(
            index=self.applied_index, term=self.applied_term, membership=self.membership
        )
        started = trio.current_time()
        data = self.machine.snapshot()
        try:
            await self._log_writer.save_snapshot(meta, data)
        except (StorageError, OSError) as error:
            # Nothing depends on this snapshot (the log still holds every entry): try again
            # after another interval rather than on every batch of a disk that is full.
            self._snapshot_index = meta.index
            logger.error(
                "snapshot failed, retrying later index=%d error=%r", meta.index, str(error)
            )
            return
        self._snapshot_index = meta.index
        self._bytes_since_snapshot = 0
        elapsed = trio.current_time() - started
        if self._observe_snapshot_seconds is not None:
            self._observe_snapshot_seconds(elapsed)
        logger.info("snapshot taken index=%d seconds=%.3f", meta.index, elapsed)
