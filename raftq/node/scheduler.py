"""The leader's scheduler: fires schedule slots as they come due (docs/schedules.md).

Only the leader runs it. It keeps each schedule's next slot computed (again only when the
schedule's revision or last fired slot changes), sleeps until the earliest one or until an
applied entry changes the table, and proposes a ``FireSchedule`` for each schedule with due
slots, stamped with the leader's clock by the Raft peer. The state machine decides
(``raftq.jobs.schedules``): a slot already fired is refused there, whatever this leader
believed. A new leader starts from each schedule's last fired slot as the log has it, so the
slots missed while there was no leader fire now: the latest once, or every one with
``catch_up`` "all". Every slot that falls while it leads fires, even one it could not propose
in time (a slow commit, a busy node): only a time without a leader is caught up on.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from raftq import limits, slots
from raftq.errors import ConfigError
from raftq.jobs.commands import (
    Done,
    EnqueueResult,
    FireSchedule,
    PutSchedule,
    Rejected,
    ScheduleSpec,
)
from raftq.jobs.schedules import ScheduleTable, ScheduleView
from raftq.node.applier import Applier
from raftq.node.clock import Clock
from raftq.node.raft_peer import RaftPeer
from raftq.raft.ready import Role
from raftq.transport.wire import SchedulesPage

logger = logging.getLogger("raftq.node")

WAKE_MS_MAX = 60_000
"""The longest the scheduler sleeps without looking at the wall clock again: it sleeps on the
event loop's monotonic clock, so a wall clock stepped forward delays a slot by this at most."""

COMMIT_WAIT_S = 10.0
"""How long it waits for its firings to be applied before it plans again (a majority that does
not answer in this long is gone; the next plan proposes again what is still due)."""


REPLAN_CODES = frozenset({"fired", "stale", "not_found"})
"""Refusals of a firing that a new plan resolves at once (it sees the entries applied since);
any other failure (a busy node, a lost proposal, a full cluster) waits ``SCHEDULE_RETRY_MS``."""


@attrs.define(eq=False)
class SchedulerStatistics:
    plans: int = 0
    firings_proposed: int = 0
    slots_fired: int = 0
    firings_refused: int = 0


class Scheduler:
    def __init__(
        self,
        raft: RaftPeer,
        applier: Applier,
        clock: Clock,
        declared: tuple[ScheduleSpec, ...] = (),
    ) -> None:
        self._raft = raft
        self._applier = applier
        self._clock = clock
        self._declared = declared
        """The config file's schedules, until this node has led once and put them in place."""
        self._next: dict[str, tuple[int, int, int | None]] = {}
        """Schedule name -> (revision, floor, its first slot after the floor), as computed."""
        self.statistics = SchedulerStatistics()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            if self._raft.role is Role.LEADER:
                await self._lead(self._raft.term)  # returns once no longer leader of that term
                continue
            await self._raft.role_changed()

    async def _lead(self, term: int) -> None:
        leading_since_ms = self._clock.now_ms()
        while self._declared and self._still_leading(term):
            if not await self._put_declared(term) and self._still_leading(term):
                await trio.sleep(limits.SCHEDULE_RETRY_MS / 1000)
        while self._still_leading(term):
            now_ms = self._clock.now_ms()
            firings, wake_ms = self._plan(now_ms, leading_since_ms)
            if firings:
                if not await self._fire(firings, term) and self._still_leading(term):
                    await trio.sleep(limits.SCHEDULE_RETRY_MS / 1000)
                continue
            wait_ms = WAKE_MS_MAX if wake_ms is None else min(wake_ms - now_ms, WAKE_MS_MAX)
            await self._wait(term, wait_ms)

    def _plan(self, now_ms: int, leading_since_ms: int) -> tuple[list[FireSchedule], int | None]:
        """The firings due at ``now_ms`` (``slots.due_slots``: slots missed before this node
        led at ``leading_since_ms`` fire as the schedule's catch-up says, its own all), and
        when the next slot after them falls."""
        self.statistics.plans += 1
        table = self._applier.jobs.schedules
        cached = self._next
        for name in [name for name in cached if name not in table.by_name]:
            del cached[name]
        firings: list[FireSchedule] = []
        wake_ms: int | None = None
        for name, record in table.by_name.items():
            floor_ms = record.floor_ms
            known = cached.get(name)
            if known is None or known[0] != record.revision or known[1] != floor_ms:
                next_slot_ms = self._next_slot(name, record.spec, floor_ms)
                known = cached[name] = (record.revision, floor_ms, next_slot_ms)
            next_ms = known[2]
            if next_ms is None:
                continue
            if next_ms <= now_ms:
                due = slots.due_slots(record.spec, floor_ms, now_ms, leading_since_ms)
                assert due, (name, floor_ms, next_ms, now_ms)
                firings.append(
                    FireSchedule(now_ms=0, name=name, revision=record.revision, slots=due)
                )
            elif wake_ms is None or next_ms < wake_ms:
                wake_ms = next_ms
        return firings, wake_ms

    @staticmethod
    def _next_slot(name: str, spec: ScheduleSpec, floor_ms: int) -> int | None:
        try:
            return slots.next_slot_ms(spec, floor_ms)
        except ConfigError as error:  # refused at the edge; only an old client gets here
            logger.error("schedule never fires name=%s problem=%s", name, error)
            return None

    @asynccontextmanager
    async def _while_leading(self, term: int) -> AsyncIterator[trio.CancelScope]:
        """A scope for waiting on proposals: it ends after ``COMMIT_WAIT_S``, or at once when
        this node no longer leads in ``term``, so that a scheduler never waits out an old
        reign's proposals while it leads a new one (whose start would then be taken late,
        and its first slots caught up on as if missed before it led)."""
        with trio.move_on_after(COMMIT_WAIT_S) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._cancel_when_deposed, term, scope)
                yield scope
                nursery.cancel_scope.cancel()

    async def _cancel_when_deposed(self, term: int, scope: trio.CancelScope) -> None:
        while self._still_leading(term):
            await self._raft.role_changed()
        scope.cancel()

    async def _put_declared(self, term: int) -> bool:
        """Add or replace each schedule of the config file that the cluster lacks or holds
        differently; whether all went through (then never again in this process: a change
        made with ``raftq schedule`` since stands until a node with the file restarts)."""
        table = self._applier.jobs.schedules
        changes = [
            PutSchedule(now_ms=0, schedule=spec)
            for spec in self._declared
            if (record := table.by_name.get(spec.name)) is None or record.spec != spec
        ]
        waiters = [self._raft.propose(change) for change in changes]
        put = False
        async with self._while_leading(term):
            for change, waiter in zip(changes, waiters, strict=True):
                await waiter.event.wait()
                if not isinstance(waiter.outcome, Done):
                    logger.info(
                        "declared schedule not put name=%s outcome=%r",
                        change.schedule.name,
                        waiter.outcome,
                    )
                    return False
                logger.info(
                    "declared schedule %s name=%s", waiter.outcome.state, change.schedule.name
                )
            self._declared = ()
            put = True
        return put

    async def _fire(self, firings: list[FireSchedule], term: int) -> bool:
        """Propose every firing, wait until they are applied (or this node no longer leads in
        ``term``); False if one failed in a way worth a pause before the next plan."""
        waiters = [self._raft.propose(firing) for firing in firings]
        self.statistics.firings_proposed += len(firings)
        every_fired = True
        async with self._while_leading(term) as waited:
            for firing, waiter in zip(firings, waiters, strict=True):
                await waiter.event.wait()
                outcome = waiter.outcome
                if isinstance(outcome, EnqueueResult):
                    fired = sum(not isinstance(job, Rejected) for job in outcome.jobs)
                    self.statistics.slots_fired += fired
                    every_fired = every_fired and fired == len(firing.slots)
                else:
                    self.statistics.firings_refused += 1
                    # Refused as planned on a view older than the log (a slot fired already,
                    # a schedule changed): the table applied by now says what is due.
                    replan = isinstance(outcome, Rejected) and outcome.code in REPLAN_CODES
                    every_fired = every_fired and replan
                    logger.info(
                        "schedule firing not applied name=%s outcome=%r", firing.name, outcome
                    )
        return every_fired and not waited.cancelled_caught

    async def _wait(self, term: int, wait_ms: int) -> None:
        """Until ``wait_ms`` has passed, the schedule table changed, or this node no longer
        leads in ``term`` (every new leader commits an entry, which wakes this)."""
        table = self._applier.jobs.schedules
        changes = table.changes
        with trio.move_on_after(max(wait_ms, 0) / 1000):
            while self._still_leading(term) and _same(table, changes, self._applier):
                await self._applier.wait_applied(self._applier.applied_index + 1)

    def _still_leading(self, term: int) -> bool:
        return self._raft.role is Role.LEADER and self._raft.term == term


def _same(table: ScheduleTable, changes: int, applier: Applier) -> bool:
    current = applier.jobs.schedules
    return current is table and current.changes == changes


def schedule_problem(spec: ScheduleSpec) -> str:
    """Why a schedule cannot be added (a bad cron expression or time zone), or ""."""
    try:
        slots.check(spec)
    except ConfigError as error:
        return str(error)
    return ""


def schedules_page(page: tuple[list[ScheduleView], str]) -> SchedulesPage:
    """A page of schedules for ``schedule list``, each with its next slot (0: none)."""
    views, after = page
    return SchedulesPage(
        schedules=tuple(attrs.evolve(view, next_ms=_next_of(view) or 0) for view in views),
        after=after,
    )


def _next_of(view: ScheduleView) -> int | None:
    spec = ScheduleSpec(
        name=view.name,
        type=view.type,
        payload=view.payload,
        queue=view.queue,
        cron=view.cron,
        tz=view.tz,
        every_ms=view.every_ms,
        catch_up=view.catch_up,
    )
    try:
        return slots.next_slot_ms(spec, max(view.since_ms, view.last_fired_ms))
    except ConfigError:
        return None
