"""The Raft peer: the one task that owns the ``RaftCore``, and its clock.

Each round it takes every input waiting in its inbox (peer messages, proposals, read requests;
up to ``RAFT_INPUTS_PER_ROUND_MAX``), first ticks the core for every tick that fell due (the
peer waits for its inbox only until the next tick), steps the inputs into the core, then
carries out the Ready in the order of the contract:

    early messages -> persist (one WAL write + fdatasync) -> messages -> applier -> advance

While one round's fsync runs, the next round's inputs pile up in the inbox: that is the batch
the next fsync covers. Many client requests -> one proposal batch -> one fsync -> one
AppendEntries per peer -> one apply batch.

The Raft peer is the only writer of the durable log. Its ``LogWriter`` is not an actor but the
peer's persistence helper, called from the peer's task; the applier asks the peer to save a
snapshot (``save_snapshot``), which the peer writes in a child task of its own so that ticks
and heartbeats go on meanwhile, and never while it installs a leader's snapshot (the two used
to race: the simulator found it). Others read what the peer publishes: ``role``, ``leader``,
``term``, ``membership``, ``status()`` (a frozen copy), ``storage_problem``, and wait for a
change of role or leader with ``role_changed()``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import attrs
import trio

from raftq import codec, limits
from raftq.errors import (
    Busy,
    LogCompacted,
    MembershipChangeError,
    NotLeader,
    RaftqError,
    StorageError,
)
from raftq.ids import NodeId
from raftq.jobs.commands import Command
from raftq.node.applier import ApplyBatch
from raftq.node.clock import Clock
from raftq.node.log_writer import LogWriter, LogWriterStatistics
from raftq.node.waiters import NotLeaderHere, ProposalWaiters, Waiter
from raftq.raft.core import RaftCore, Status
from raftq.raft.messages import Message
from raftq.raft.ready import Role, SoftState
from raftq.raft.types import Entry, Membership, SnapshotMeta
from raftq.storage.durable_log import DurableLog
from raftq.transport.wire import Failure


@attrs.frozen(kw_only=True)
class ProposeRequest:
    command: Command
    waiter: Waiter


@attrs.frozen(kw_only=True)
class ReadRequest:
    """Resolved with the read index (an int), or a ``Failure``."""

    waiter: Waiter


@attrs.frozen(kw_only=True)
class TransferRequest:
    target: NodeId


MembershipChange = Callable[[Membership], Membership | None]
"""The next membership from the current one, or None if there is nothing to change; raises
``MembershipChangeError`` if the change makes no sense."""


@attrs.frozen(kw_only=True)
class MembershipRequest:
    """Resolved with the ``Membership`` once applied, or a ``Failure`` / ``NotLeaderHere``."""

    change: MembershipChange
    waiter: Waiter


@attrs.frozen(kw_only=True)
class SnapshotRequest:
    """The applier's snapshot at an applied index; resolved with that index once saved, or a
    ``Failure`` (a disk error, or a newer snapshot already there)."""

    meta: SnapshotMeta
    data: bytes = attrs.field(repr=False)
    waiter: Waiter


Input = (
    Message | ProposeRequest | ReadRequest | TransferRequest | MembershipRequest | SnapshotRequest
)

logger = logging.getLogger("raftq.node")

CATCH_UP_TICKS_MAX = 3
"""Ticks counted at once after the peer could not run for longer (a long fsync, a paused
process): a stall is not taken for more silence from the leader than a few ticks, so it
does not start an election by itself, and a leader does not send a burst of heartbeats. A
leader is told of such a stall (``RaftCore.stalled``): its check-quorum rounds stood still
meanwhile, so they no longer say which voters answer."""


RECENT_WINDOW_S = 10.0
"""Stalls and heartbeat gaps are reported as the longest of the last 10-20 s: long enough for
a scrape every few seconds to see every peak, short enough to tell now from start-up."""


@attrs.define(eq=False)
class RecentMax:
    """The largest value of the last ``window_s`` to ``2 * window_s`` seconds: a reader that
    polls more often than every ``window_s`` misses no peak, and an old peak ages out."""

    window_s: float = RECENT_WINDOW_S
    _start: float = 0.0
    _current: float = 0.0
    _previous: float = 0.0

    def add(self, value: float, now: float) -> None:
        self._roll(now)
        self._current = max(self._current, value)

    def value(self, now: float) -> float:
        self._roll(now)
        return max(self._current, self._previous)

    def _roll(self, now: float) -> None:
        elapsed = now - self._start
        if elapsed >= self.window_s:
            self._previous = self._current if elapsed < 2 * self.window_s else 0.0
            self._current = 0.0
            self._start = now


@attrs.define(eq=False)
class RaftPeerStatistics:
    rounds: int = 0
    ticks: int = 0
    inputs: int = 0
    proposals: int = 0
    dropped_inputs: int = 0
    leader_changes: int = 0
    tick_late: RecentMax = attrs.field(factory=lambda: RecentMax())
    """How long after it was due a tick came: how long the event loop kept this peer from
    ticking and heartbeating (a stall)."""
    leader_silence: RecentMax = attrs.field(factory=lambda: RecentMax())
    """On a follower, the time between two messages from the same leader in one term: the
    heartbeat gap a leader's stall causes (an election starts past the election timeout)."""


class RaftPeer:
    def __init__(
        self,
        core: RaftCore,
        log: DurableLog,
        clock: Clock,
        *,
        tick_ms: int,
        send: Callable[[Message], None],
        apply: trio.MemorySendChannel[ApplyBatch],
        waiters: ProposalWaiters,
        on_membership: Callable[[Membership], None] = lambda membership: None,
        observe_persist_seconds: Callable[[float], None] | None = None,
    ) -> None:
        assert core.log.storage is log, "the core must read the log this peer writes"
        self.core = core
        """For the simulator's checkers and tests; others read the published views."""
        self.log_writer = LogWriter(log, observe_persist_seconds)
        """Written from this peer's tasks only (``LogWriter.owner``); read for statistics."""
        self._clock = clock
        self._tick_s = tick_ms / 1000
        self._send = send
        self._apply = apply
        self._waiters = waiters
        self._on_membership = on_membership
        self._membership = core.membership
        self._soft_state_seen = trio.Event()
        self._inbox_send, self._inbox = trio.open_memory_channel[Input](limits.RAFT_INBOX_MAX)
        self._reads: dict[bytes, Waiter] = {}
        self._own_removal: tuple[int, Waiter] | None = None
        self._read_sequence = 0
        # Read contexts start with a number drawn once per process (from the core's injected
        # random), so a late answer to a read of this node's previous run never matches one
        # of this run (the sequence starts from 1 again after a restart).
        self._read_incarnation = core.rng.getrandbits(64).to_bytes(8, "big")
        self._nursery: trio.Nursery | None = None
        self._snapshot_saved: trio.Event | None = None
        """Set once the snapshot being saved (if any) is on disk or failed."""
        self._heard_from: tuple[int, NodeId, float] | None = None
        """Term, leader and time of the last message from a leader (``leader_silence_max_s``)."""
        self.statistics = RaftPeerStatistics()

    # --- published views, for the client service, the steward and metrics -----------------------

    @property
    def node_id(self) -> NodeId:
        return self.core.id

    @property
    def role(self) -> Role:
        return self.core.role

    def clock_ms(self) -> int:
        """The clock this peer stamps commands with (a claim's hint asks it: rate windows)."""
        return self._clock.now_ms()

    @property
    def leader(self) -> NodeId | None:
        return self.core.leader

    @property
    def term(self) -> int:
        return self.core.term

    @property
    def membership(self) -> Membership:
        return self.core.membership

    def status(self) -> Status:
        """A frozen copy of the core's state (commit index, peers' progress, ...)."""
        return self.core.status()

    @property
    def storage_problem(self) -> str | None:
        """Why writes are not being acknowledged (the last storage error), or None."""
        return self.log_writer.storage_problem

    @property
    def log_statistics(self) -> LogWriterStatistics:
        return self.log_writer.statistics

    @property
    def wal_bytes_written(self) -> int:
        return self.log_writer.log.wal_statistics().bytes_written

    async def log_after_snapshot(self, through: int) -> tuple[bytes | None, int, list[Entry]]:
        """Read only: the newest snapshot's data (None without one), its index, and the
        durable log's entries after it up to ``through`` (what a job's provenance replays).
        A snapshot saved meanwhile compacts the entries read from under it: then read again
        from the newer one (a few tries; ``LogCompacted`` past them)."""
        log = self.log_writer.log
        for attempt in range(limits.STORY_READ_ATTEMPTS):
            meta = log.snapshot_meta
            high = min(through, log.last_index()) + 1
            try:
                entries = log.entries(meta.index + 1, max(high, meta.index + 1))
                data = await log.snapshot_data() if meta.index else None
            except (LogCompacted, FileNotFoundError, StorageError):
                if attempt + 1 == limits.STORY_READ_ATTEMPTS:
                    raise
                continue
            if log.snapshot_meta == meta:
                return data, meta.index, entries
        raise LogCompacted("snapshots kept being replaced while the log was read")

    # --- inputs, from other tasks ---------------------------------------------------------------

    def deliver(self, message: Message) -> None:
        """A peer's message; dropped if the inbox is full (Raft survives lost messages)."""
        self._offer(message)

    def _offer(self, item: Input) -> bool:
        try:
            self._inbox_send.send_nowait(item)
        except trio.WouldBlock:
            self.statistics.dropped_inputs += 1
            return False
        return True

    def propose(self, command: Command) -> Waiter:
        """Queue a command; the waiter resolves with its result once applied (or a failure)."""
        waiter = Waiter()
        if not self._offer(ProposeRequest(command=command, waiter=waiter)):
            waiter.resolve(Failure(code="busy", message="the node is overloaded; retry"))
        return waiter

    def change_membership(self, change: MembershipChange) -> Waiter:
        """Propose ``change`` of the membership as it is when the Raft actor gets to it; the
        waiter resolves with the new ``Membership`` once applied (at once if unchanged)."""
        waiter = Waiter()
        if not self._offer(MembershipRequest(change=change, waiter=waiter)):
            waiter.resolve(Failure(code="busy", message="the node is overloaded; retry"))
        return waiter

    def transfer_leadership(self, target: NodeId) -> None:
        """Hand leadership to ``target`` (ignored unless this node leads)."""
        self._offer(TransferRequest(target=target))

    def save_snapshot(self, meta: SnapshotMeta, data: bytes) -> Waiter:
        """Save the applier's snapshot ``data`` of the state at ``meta.index`` and compact the
        log behind it; the waiter resolves with the index once saved, or a failure. The
        applier sends one at a time."""
        waiter = Waiter()
        if not self._offer(SnapshotRequest(meta=meta, data=data, waiter=waiter)):
            waiter.resolve(Failure(code="busy", message="the node is overloaded; retry"))
        return waiter

    def read_index(self) -> Waiter:
        """A linearizable read point: resolves with a log index to wait for, or a failure."""
        waiter = Waiter()
        if not self._offer(ReadRequest(waiter=waiter)):
            waiter.resolve(Failure(code="busy", message="the node is overloaded; retry"))
        return waiter

    # --- the loop -------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:  # snapshot saves, one at a time
            self._nursery = nursery
            self.log_writer.owner = trio.lowlevel.current_task()
            task_status.started()
            await self._loop()

    async def _loop(self) -> None:
        await self._handle_ready()  # a restarted node may have committed entries to apply
        next_tick = trio.current_time() + self._tick_s
        while True:
            batch: list[Input] = []
            try:
                batch.append(self._inbox.receive_nowait())  # busy: no wait, no timer
            except trio.WouldBlock:
                with trio.move_on_at(next_tick):
                    batch.append(await self._inbox.receive())
            while batch and len(batch) < limits.RAFT_INPUTS_PER_ROUND_MAX:
                try:
                    batch.append(self._inbox.receive_nowait())
                except trio.WouldBlock:
                    break
            next_tick = self._tick_due(next_tick)
            self._step_all(batch)
            await self._handle_ready()

    def _tick_due(self, next_tick: float) -> float:
        """Tick the core once per tick that fell due (the time since waited before the inputs
        of this round arrived, so it counts first), at most ``CATCH_UP_TICKS_MAX`` times;
        return when the next tick is due."""
        now = trio.current_time()
        if now < next_tick:
            return next_tick
        late_s = now - next_tick
        self.statistics.tick_late.add(late_s, now)
        due = int(late_s // self._tick_s) + 1
        ticks = min(due, CATCH_UP_TICKS_MAX)
        for _ in range(ticks):
            self.core.tick()
        if due > ticks:
            self.core.stalled()  # after the ticks it counts: the stale answers come next
        self.statistics.ticks += ticks
        return next_tick + due * self._tick_s

    def _step_all(self, batch: list[Input]) -> None:
        proposals: list[ProposeRequest] = []
        for item in batch:
            if isinstance(item, ProposeRequest):
                proposals.append(item)
            elif isinstance(item, ReadRequest):
                self._start_read(item.waiter)
            elif isinstance(item, TransferRequest):
                with contextlib.suppress(RaftqError):
                    self.core.transfer_leadership(item.target)
            elif isinstance(item, MembershipRequest):
                self._propose_membership(item)
            elif isinstance(item, SnapshotRequest):
                self._start_snapshot_save(item)
            else:
                if item.sender == self.core.leader:
                    self._heard_from_leader(item)
                self.core.step(item)
        if proposals:
            self._propose_all(proposals)
        self.statistics.rounds += 1
        self.statistics.inputs += len(batch)

    def _propose_all(self, proposals: list[ProposeRequest]) -> None:
        """One proposal batch for the whole round, every command stamped with the leader's
        wall time (the state machine never reads a clock)."""
        now_ms = self._clock.now_ms()
        stamped = [attrs.evolve(request.command, now_ms=now_ms) for request in proposals]
        encoded = [codec.encode(command, Command) for command in stamped]
        try:
            placed = self.core.propose(encoded)
        except NotLeader as error:
            redirect = NotLeaderHere(leader_id=error.leader_id or "")
            for request in proposals:
                request.waiter.resolve(redirect)
            return
        except Busy as error:
            for request in proposals:
                request.waiter.resolve(Failure(code="busy", message=str(error)))
            return
        for offset, (request, command, data) in enumerate(
            zip(proposals, stamped, encoded, strict=True)
        ):
            self._waiters.add(
                placed.first_index + offset, placed.term, request.waiter, command, data
            )
        self.statistics.proposals += len(proposals)

    def _propose_membership(self, request: MembershipRequest) -> None:
        core = self.core
        if core.role is not Role.LEADER:
            request.waiter.resolve(NotLeaderHere(leader_id=core.leader or ""))
            return
        try:
            proposed = request.change(core.membership)
            if proposed is None:
                request.waiter.resolve(core.membership)
                return
            placed = core.propose_membership(proposed)
        except MembershipChangeError as error:
            code = "not_ready" if error.retryable else "rejected"
            request.waiter.resolve(Failure(code=code, message=str(error)))
        except Busy as error:
            request.waiter.resolve(Failure(code="busy", message=str(error)))
        else:
            if core.id in proposed.voters:
                self._waiters.add(placed.last_index, placed.term, request.waiter)
            else:
                # Our own removal is acknowledged only once we handed leadership over (the
                # remaining voters applied it and can elect without us), not when applied:
                # the operator then stops this node (``_resolve_own_removal``).
                self._own_removal = (placed.last_index, request.waiter)
            logger.info("membership change proposed index=%d to=%s", placed.last_index, proposed)

    def _heard_from_leader(self, message: Message) -> None:
        now = trio.current_time()
        heard = self._heard_from
        if heard is not None and heard[:2] == (message.term, message.sender):
            self.statistics.leader_silence.add(now - heard[2], now)
        self._heard_from = (message.term, message.sender, now)

    def _start_snapshot_save(self, request: SnapshotRequest) -> None:
        if self._snapshot_saved is not None and not self._snapshot_saved.is_set():
            request.waiter.resolve(Failure(code="busy", message="a snapshot is being saved"))
            return
        assert self._nursery is not None
        self._snapshot_saved = trio.Event()
        self._nursery.start_soon(self._save_snapshot, request, self._snapshot_saved)

    async def _save_snapshot(self, request: SnapshotRequest, saved: trio.Event) -> None:
        """Write the snapshot file and compact behind it, while this peer's rounds go on (the
        WAL lets appends run beside a compaction); ``_handle_ready`` waits for ``saved``
        before it installs a leader's snapshot."""
        try:
            await self.log_writer.save_snapshot(request.meta, request.data)
        except (StorageError, OSError) as error:
            request.waiter.resolve(Failure(code="storage_error", message=str(error)))
        else:
            request.waiter.resolve(request.meta.index)
        finally:
            saved.set()

    def _start_read(self, waiter: Waiter) -> None:
        self._read_sequence += 1
        context = self._read_incarnation + self._read_sequence.to_bytes(8, "big")
        try:
            self.core.read_index(context)
        except NotLeader as error:
            waiter.resolve(NotLeaderHere(leader_id=error.leader_id or ""))
            return
        except Busy as error:
            waiter.resolve(Failure(code="busy", message=str(error)))
            return
        self._reads[context] = waiter

    async def _handle_ready(self) -> None:
        core = self.core
        while core.has_ready():
            ready = core.ready()
            for message in ready.early_messages:
                self._send(message)
            if ready.snapshot is not None and self._snapshot_saved is not None:
                await self._snapshot_saved.wait()  # one snapshot write at a time
            await self.log_writer.persist(ready)
            for message in ready.messages:
                self._send(message)
            if ready.snapshot is not None or ready.committed_entries:
                batch = ApplyBatch(snapshot=ready.snapshot, entries=ready.committed_entries)
                try:
                    self._apply.send_nowait(batch)  # the common case: no task switch here
                except trio.WouldBlock:
                    await self._apply.send(batch)  # the applier is behind: backpressure
            for read in ready.read_states:
                waiter = self._reads.pop(read.context, None)
                if waiter is not None:
                    waiter.resolve(read.index)
            if ready.soft_state is not None:
                self._soft_state_changed(ready.soft_state)
            core.advance(ready)
            if self._own_removal is not None and core.role is not Role.LEADER:
                self._resolve_own_removal()
            if core.membership is not self._membership:  # applied just now
                self._membership = core.membership
                logger.info("membership applied %s", core.membership)
                self._on_membership(core.membership)

    def _resolve_own_removal(self) -> None:
        assert self._own_removal is not None
        index, waiter = self._own_removal
        self._own_removal = None
        if self.core.handed_over_index == index:
            logger.info("removed; leadership handed over index=%d", index)
            waiter.resolve(self.core.membership)
        else:
            waiter.resolve(
                Failure(
                    code="dropped",
                    message="leadership was lost before the removal was handed over; retry",
                )
            )

    async def role_changed(self) -> None:
        """Return at the next change of role or leader."""
        await self._soft_state_seen.wait()

    def _soft_state_changed(self, soft: SoftState) -> None:
        self._soft_state_seen.set()
        self._soft_state_seen = trio.Event()
        self.statistics.leader_changes += 1
        logger.info("raft role=%s leader=%s term=%d", soft.role.value, soft.leader, self.core.term)
        if soft.role is not Role.LEADER:
            # Reads in flight on a lost leadership will never be confirmed.
            for waiter in self._reads.values():
                waiter.resolve(NotLeaderHere(leader_id=soft.leader or ""))
            self._reads.clear()
