"""The applier: applies committed entries to the job state machine, in log order, and answers
the proposals waiting on them; takes a snapshot every ``snapshot_entries`` applied entries or
``snapshot_bytes`` bytes of them, whichever comes first.

The applier alone owns (mutates) the job state machine; others read it through ``jobs``, a
read-only view. Encoding a snapshot and restoring a leader's are seconds of CPU at a million
jobs: they run through ``offload`` (a worker thread in production), while the applier waits
and so nothing mutates the machine, and the event loop goes on ticking and heartbeating. The
encoded snapshot goes to the Raft peer (``save_snapshot``), the log's only writer; the applier
goes on applying while it is written, and takes the next one only after it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, cast

import attrs
import trio

from raftq import codec
from raftq.errors import DecodeError
from raftq.jobs.commands import Command
from raftq.jobs.job import JobView
from raftq.jobs.machine import JobStateMachine, Observer
from raftq.jobs.schedules import ScheduleTable, ScheduleView
from raftq.node.waiters import ProposalStatistics, ProposalWaiters, Waiter
from raftq.raft.log import IncomingSnapshot
from raftq.raft.types import Entry, EntryKind, Membership, SnapshotMeta

logger = logging.getLogger("raftq.node")

T = TypeVar("T")

Offload = Callable[[Callable[[], T]], Awaitable[T]]
"""Runs CPU-heavy pure work (a snapshot's encode or restore) off the event loop and returns
its result: a worker thread in production (``run_in_thread``); the simulator runs it on the
loop (``run_inline``), where a thread would make a seed's run depend on the host's timing."""


OFFLOAD_SWITCH_INTERVAL_S = 0.001
"""The GIL hand-over interval while a worker thread encodes or restores: the thread and the
event loop share the GIL, and each time the loop wakes (a tick, a heartbeat, a socket) it
waits up to this long for it. Python's default, 5 ms, made a loop that slept 2 ms come back
12 ms late on average, 24 ms at worst, beside a thread encoding 200,000 jobs; 1 ms, 4 ms and
13-16 ms (the encode itself was no slower)."""

_threads_running = 0
_switch_interval_s = sys.getswitchinterval()


async def run_in_thread(work: Callable[[], T]) -> T:
    """The production ``Offload``: ``work`` in a worker thread, with the GIL handed over more
    often meanwhile (``OFFLOAD_SWITCH_INTERVAL_S``), then as it was."""
    global _threads_running, _switch_interval_s
    if _threads_running == 0:
        _switch_interval_s = sys.getswitchinterval()
        sys.setswitchinterval(OFFLOAD_SWITCH_INTERVAL_S)
    _threads_running += 1
    try:
        return await trio.to_thread.run_sync(work)
    finally:
        _threads_running -= 1
        if _threads_running == 0:
            sys.setswitchinterval(_switch_interval_s)


async def run_inline(work: Callable[[], T]) -> T:
    """An ``Offload`` that runs ``work`` on the event loop, between two checkpoints (so the
    other tasks interleave as they would with a thread)."""
    await trio.lowlevel.checkpoint()
    result = work()
    await trio.lowlevel.checkpoint()
    return result


class JobsView(Protocol):
    """What others may read of the job state machine (the applier alone changes it)."""

    @property
    def next_seq(self) -> int: ...

    def get(self, job_id: str) -> JobView | None: ...

    def state_counts(self) -> dict[str, int]: ...

    def queue_counts(self) -> dict[str, dict[str, int]]: ...

    def is_paused(self, queue: str) -> bool: ...

    def has_claimable(
        self, queues: tuple[str, ...], types: tuple[str, ...], now_ms: int = 0
    ) -> bool: ...

    def has_rate_limits(self) -> bool: ...

    def limit_rows(self) -> list[dict[str, Any]]: ...

    def has_room(self, jobs: int, payload_bytes: int) -> bool: ...

    def list_jobs(
        self, *, state: str | None = None, queue: str | None = None, limit: int = 100
    ) -> list[JobView]: ...

    def page_jobs(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        job_type: str | None = None,
        cursor: int = 0,
        limit: int = 100,
        newest_first: bool = False,
    ) -> tuple[list[JobView], int]: ...

    @property
    def schedules(self) -> ScheduleTable: ...

    def schedule_page(self, after: str = "") -> tuple[list[ScheduleView], str]: ...


SaveSnapshot = Callable[[SnapshotMeta, bytes], Waiter]
"""``RaftPeer.save_snapshot``: the waiter resolves with the index once saved, or a failure."""


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
        save_snapshot: SaveSnapshot,
        snapshot_entries: int,
        snapshot_bytes: int = 0,
        batches: trio.MemoryReceiveChannel[ApplyBatch],
        offload: Offload[object] = run_in_thread,
        observer: Observer | None = None,
        observe_snapshot_seconds: Callable[[float], None] | None = None,
    ) -> None:
        self._observer = observer
        self._observe_snapshot_seconds = observe_snapshot_seconds
        machine.observer = observer
        self.machine = machine
        """For tests and the simulator's checkers; others read ``jobs``."""
        self.applied_index = applied_index
        self.applied_term = 0
        self.membership = membership
        self._waiters = waiters
        self._save_snapshot = save_snapshot
        self._offload = offload
        self._saving = False
        """A snapshot is with the Raft peer, being saved."""
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

    @property
    def proposals(self) -> ProposalStatistics:
        """How this node's own proposals were applied: as their objects or from their bytes."""
        return self._waiters.statistics

    @property
    def jobs(self) -> JobsView:
        """The job state machine, to read (status, metrics, client reads)."""
        return self.machine

    async def offload(self, work: Callable[[], T]) -> T:
        """Run pure CPU-heavy ``work`` the way snapshots are encoded: off the event loop in a
        node, inline in the simulator (a job's provenance replay)."""
        done = await self._offload(work)
        return cast(T, done)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:  # waits for the snapshot being saved
            task_status.started()
            async for batch in self._batches:
                if batch.snapshot is not None:
                    await self._restore(batch.snapshot)
                for entry in batch.entries:
                    self._apply(entry)
                self.statistics.applied_index = self.applied_index
                self._applied_changed.set()
                self._applied_changed = trio.Event()
                await self._maybe_snapshot(nursery)

    async def _restore(self, snapshot: IncomingSnapshot) -> None:
        data = snapshot.data
        restored = await self._offload(lambda: JobStateMachine.restore(data))
        assert isinstance(restored, JobStateMachine)
        self.machine = restored
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
            # What this leader proposed in this term it need not decode (ProposalWaiters).
            command = self._waiters.proposed_command(entry.index, entry.term, entry.data)
            try:
                if command is None:
                    command = codec.decode(entry.data, Command)
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

    async def _maybe_snapshot(self, nursery: trio.Nursery) -> None:
        entries_due = self._snapshot_entries and (
            self.applied_index - self._snapshot_index >= self._snapshot_entries
        )
        bytes_due = self._snapshot_bytes and self._bytes_since_snapshot >= self._snapshot_bytes
        if self._saving or not (entries_due or bytes_due):
            return
        meta = SnapshotMeta(
            index=self.applied_index, term=self.applied_term, membership=self.membership
        )
        started = trio.current_time()
        data = await self._offload(self.machine.snapshot)  # nothing applies meanwhile
        assert isinstance(data, bytes)
        assert self.applied_index == meta.index, "the machine changed while it was encoded"
        # The next interval counts from here whether or not this one is saved: nothing depends
        # on a snapshot (the log still holds every entry), and a full disk is not tried again
        # on every batch.
        self._snapshot_index = meta.index
        self._bytes_since_snapshot = 0
        self._saving = True
        nursery.start_soon(self._wait_saved, meta, self._save_snapshot(meta, data), started)

    async def _wait_saved(self, meta: SnapshotMeta, saved: Waiter, started: float) -> None:
        try:
            await saved.event.wait()
        finally:
            self._saving = False
        if saved.outcome != meta.index:
            logger.error(
                "snapshot not saved, retrying later index=%d outcome=%r", meta.index, saved.outcome
            )
            return
        elapsed = trio.current_time() - started
        if self._observe_snapshot_seconds is not None:
            self._observe_snapshot_seconds(elapsed)
        logger.info("snapshot taken index=%d seconds=%.3f", meta.index, elapsed)
