"""Schedules as replicated state, and the rule that fires each slot at most once, ever.

The leader's scheduler (``raftq.node.scheduler``) works out which slots are due by its clock
and proposes a ``FireSchedule``; this module decides, in log order on every node, whether
they fire. Each schedule keeps the last slot it fired: a slot not after it is refused, so a
slot fires at most once through any failover, snapshot or replay (a new leader that proposes a
slot the old one already fired is refused here, not trusted to know). The idempotency key
``schedule:NAME:SLOT_MS`` each fired job takes is for people and tools to find it by; the
last-fired slot is the guard, and it never expires as a key does.

Which instants are slots of a cron expression is the leader's computation (croniter and the
time zone database are files and clocks this pure module does not read); the machine checks
what it can without them: order, that a slot is due by the command's time, that an interval's
slot is a multiple of its interval, and that the schedule is the one the slot was computed
for (``revision``: a firing computed before an edit or a removal is refused).
"""

from __future__ import annotations

import bisect
import itertools
from typing import TYPE_CHECKING, Any

import attrs

from raftq import codec, limits
from raftq.errors import DecodeError
from raftq.jobs.commands import (
    Done,
    Enqueued,
    EnqueueResult,
    FireSchedule,
    JobSpec,
    PutSchedule,
    Rejected,
    RemoveSchedule,
    ScheduleSpec,
)

if TYPE_CHECKING:
    from raftq.jobs.machine import JobStateMachine

SECTION = "schedules"
"""The snapshot section that holds the table."""


def slot_key(name: str, slot_ms: int) -> str:
    """The idempotency key of the job that slot ``slot_ms`` of schedule ``name`` fires."""
    return f"schedule:{name}:{slot_ms}"


class Schedule:
    """One schedule's replicated record."""

    __slots__ = ("last_fired_ms", "revision", "since_ms", "spec")

    def __init__(
        self, spec: ScheduleSpec, *, revision: int, since_ms: int, last_fired_ms: int = 0
    ) -> None:
        self.spec = spec
        self.revision = revision
        """The log index of the entry that added or last changed it."""
        self.since_ms = since_ms
        """That entry's time: its slots start after it."""
        self.last_fired_ms = last_fired_ms
        """The last slot fired (0: none yet)."""

    @property
    def floor_ms(self) -> int:
        """Every slot fired from now on is after this."""
        return max(self.since_ms, self.last_fired_ms)


@codec.register
@attrs.frozen(kw_only=True)
class ScheduleView:
    """A schedule as ``raftq schedule list`` shows it; ``next_ms`` is filled in by a node
    (where the cron library and time zones are), 0 here."""

    name: str
    type: str
    payload: bytes
    queue: str
    cron: str
    tz: str
    every_ms: int
    catch_up: str
    revision: int
    since_ms: int
    last_fired_ms: int
    next_ms: int = 0
    priority: int = 0
    max_attempts: int = 3
    timeout_ms: int = 30_000
    group: str = ""


class ScheduleTable:
    """Schedule name -> its record. ``changes`` counts the entries that changed the table (not
    replicated: a leader's scheduler compares it to know when to look again)."""

    def __init__(self) -> None:
        self.by_name: dict[str, Schedule] = {}
        self.changes = 0

    def page(self, after: str, bytes_max: int) -> tuple[list[ScheduleView], str]:
        """The schedules named after ``after`` ("" from the first), by name, until their
        payloads pass ``bytes_max`` (at least one); and the name the next page starts after,
        "" if none is left."""
        names = sorted(self.by_name)
        start = bisect.bisect_right(names, after) if after else 0
        views: list[ScheduleView] = []
        size = 0
        for name in names[start:]:
            if views and size >= bytes_max:
                return views, views[-1].name
            record = self.by_name[name]
            views.append(_view(record))
            size += len(record.spec.payload) + 64
        return views, ""

    def rows(self) -> list[list[Any]]:
        """The snapshot section: one row per schedule, by name (the same table gives the same
        bytes whatever order it was built in)."""
        rows: list[list[Any]] = []
        for name in sorted(self.by_name):
            record = self.by_name[name]
            spec = record.spec
            rows.append(
                [
                    spec.name,
                    spec.type,
                    spec.payload,
                    spec.queue,
                    spec.cron,
                    spec.tz,
                    spec.every_ms,
                    spec.catch_up,
                    record.revision,
                    record.since_ms,
                    record.last_fired_ms,
                    spec.priority,
                    spec.max_attempts,
                    spec.timeout_ms,
                    spec.group,
                ]
            )
        return rows

    @classmethod
    def from_rows(cls, rows: Any) -> ScheduleTable:
        """The table ``rows()`` wrote; ``DecodeError`` for rows that are not one."""
        table = cls()
        if not isinstance(rows, list):
            raise DecodeError(f"section {SECTION} is {type(rows).__name__}, not a list")
        for row in rows:
            if not isinstance(row, list) or len(row) not in (11, 15):
                raise DecodeError(f"section {SECTION}: a row is not 15 fields: {row!r:.80}")
            name, job_type, payload, queue, cron, tz, every_ms, catch_up = row[:8]
            revision, since_ms, last_fired_ms = row[8:11]
            # 11 fields: written before schedules gave their jobs' options (the defaults).
            priority, max_attempts, timeout_ms, group = row[11:] or (0, 3, 30_000, "")
            if not all(isinstance(value, int) for value in (revision, since_ms, last_fired_ms)):
                raise DecodeError(f"section {SECTION}: schedule {name!r:.80} has a bad time")
            try:
                spec = ScheduleSpec(
                    name=name,
                    type=job_type,
                    payload=payload,
                    queue=queue,
                    cron=cron,
                    tz=tz,
                    every_ms=every_ms,
                    catch_up=catch_up,
                    priority=priority,
                    max_attempts=max_attempts,
                    timeout_ms=timeout_ms,
                    group=group,
                )
            except (TypeError, ValueError) as error:
                raise DecodeError(f"section {SECTION}: a bad schedule: {error}") from error
            if name in table.by_name:
                raise DecodeError(f"section {SECTION}: schedule {name!r} repeated")
            table.by_name[name] = Schedule(
                spec, revision=revision, since_ms=since_ms, last_fired_ms=last_fired_ms
            )
        return table


def _view(record: Schedule) -> ScheduleView:
    spec = record.spec
    return ScheduleView(
        name=spec.name,
        type=spec.type,
        payload=spec.payload,
        queue=spec.queue,
        cron=spec.cron,
        tz=spec.tz,
        every_ms=spec.every_ms,
        catch_up=spec.catch_up,
        revision=record.revision,
        since_ms=record.since_ms,
        last_fired_ms=record.last_fired_ms,
        priority=spec.priority,
        max_attempts=spec.max_attempts,
        timeout_ms=spec.timeout_ms,
        group=spec.group,
    )


# --- the commands, applied by ``JobStateMachine`` -------------------------------------------------


def put(machine: JobStateMachine, index: int, command: PutSchedule) -> Done | Rejected:
    table = machine.schedules
    spec = command.schedule
    record = table.by_name.get(spec.name)
    if record is not None and record.spec == spec:
        return Done(job_id="", state="unchanged")
    if record is None and len(table.by_name) >= limits.SCHEDULES_MAX:
        return Rejected(
            code="too_many_schedules",
            message=f"the cluster holds its maximum of {limits.SCHEDULES_MAX} schedules",
        )
    last_fired_ms = 0 if record is None else record.last_fired_ms
    table.by_name[spec.name] = Schedule(
        spec, revision=index, since_ms=machine.now_ms, last_fired_ms=last_fired_ms
    )
    table.changes += 1
    return Done(job_id="", state="added" if record is None else "updated")


def remove(machine: JobStateMachine, index: int, command: RemoveSchedule) -> Done | Rejected:
    table = machine.schedules
    if table.by_name.pop(command.name, None) is None:
        return Rejected(code="not_found", message=f"no schedule {command.name}")
    table.changes += 1
    return Done(job_id="", state="removed")


def fire(machine: JobStateMachine, index: int, command: FireSchedule) -> EnqueueResult | Rejected:
    """Enqueue one job per slot, oldest first, each only if after the last fired slot; stop
    at the first the cluster has no room for (it stays unfired: the leader tries again)."""
    table = machine.schedules
    record = table.by_name.get(command.name)
    if record is None:
        return Rejected(code="not_found", message=f"no schedule {command.name}")
    if record.revision != command.revision:
        return Rejected(
            code="stale",
            message=f"schedule {command.name} changed at index {record.revision}, after "
            f"slots were computed at revision {command.revision}",
        )
    refused = _refused_slots(machine, record, command.slots)
    if refused is not None:
        return refused
    spec = record.spec
    outcomes: list[Enqueued | Rejected] = []
    for position, slot_ms in enumerate(command.slots):
        job = JobSpec(
            id="",
            type=spec.type,
            payload=spec.payload,
            queue=spec.queue,
            priority=spec.priority,
            delay_ms=0,
            max_attempts=spec.max_attempts,
            timeout_ms=spec.timeout_ms,
            key="",  # taken below: the last fired slot decides, not the key table
            group=spec.group,
        )
        outcome = machine._enqueue_one(index, position, job, {})
        outcomes.append(outcome)
        if isinstance(outcome, Rejected):
            break
        assert slot_ms > record.last_fired_ms, (slot_ms, record.last_fired_ms)
        record.last_fired_ms = slot_ms
        machine.take_key(slot_key(spec.name, slot_ms), outcome.job_id)
    table.changes += 1
    return EnqueueResult(jobs=tuple(outcomes))


def _refused_slots(
    machine: JobStateMachine, record: Schedule, slots: tuple[int, ...]
) -> Rejected | None:
    name = record.spec.name
    if any(later <= earlier for earlier, later in itertools.pairwise(slots)):
        return Rejected(code="not_a_slot", message=f"slots of {name} not in ascending order")
    if slots[0] <= record.floor_ms:
        return Rejected(
            code="fired",
            message=f"slot {slots[0]} of {name} is not after its last fired slot "
            f"{record.last_fired_ms} or its last change at {record.since_ms}",
        )
    if slots[-1] > machine.now_ms:
        return Rejected(code="early", message=f"slot {slots[-1]} of {name} is not due yet")
    every_ms = record.spec.every_ms
    if every_ms and any(slot % every_ms for slot in slots):
        return Rejected(code="not_a_slot", message=f"a slot of {name} is not a multiple of it")
    return None
