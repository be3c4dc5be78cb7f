"""When a schedule's slots fall: cron expressions through croniter, in a time zone through
zoneinfo, and fixed intervals by arithmetic.

Used by the leader's scheduler (which slots are due), by a node answering ``schedule list``
(the next slot) and by the client and the node's config (a bad expression or zone is refused
before it is proposed). Never by the state machine: it reads no time zone database, and the
slots it is given it checks only for order (``raftq.jobs.schedules``).

An interval's slots are the multiples of it since the Unix epoch (``--every 60`` fires on
each minute, on every node's idea of it alike). A cron slot is an instant whose local time in
the schedule's zone matches the expression, computed on tz-aware datetimes, so daylight saving
time works as croniter defines it: a local time that does not exist (02:30 on the night
clocks go forward) fires at the first instant after the gap (03:00 local); a local time that
occurs twice (the night clocks go back) fires at both instants, an hour apart. A schedule that
must run once a day whatever the zone does is best written in UTC.
"""

from __future__ import annotations

import datetime
import zoneinfo

from croniter import CroniterError, croniter

from raftq import limits
from raftq.errors import ConfigError
from raftq.jobs.commands import ScheduleSpec


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The time zone ``name`` ("" is UTC); ``ConfigError`` if there is none of that name."""
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise ConfigError(
            f"unknown time zone {name!r}: give an IANA name such as Europe/Berlin, or UTC"
        ) from error


def check(spec: ScheduleSpec) -> None:
    """``ConfigError`` (one line, naming the problem) unless the schedule's expression and
    zone are usable: it parses and has a next slot."""
    if spec.every_ms:
        return
    tz = zone(spec.tz)
    try:
        croniter(spec.cron, datetime.datetime(2000, 1, 1, tzinfo=tz)).get_next(float)
    except CroniterError as error:
        raise ConfigError(f"bad cron expression {spec.cron!r}: {error}") from error


def next_slot_ms(spec: ScheduleSpec, after_ms: int) -> int | None:
    """The schedule's first slot strictly after ``after_ms``; None if it has none."""
    every_ms = spec.every_ms
    if every_ms:
        return (after_ms // every_ms + 1) * every_ms
    try:
        return _ms(_cron(spec, after_ms).get_next(float))
    except CroniterError:
        return None


def due_slots(
    spec: ScheduleSpec, floor_ms: int, now_ms: int, leading_since_ms: int = 0
) -> tuple[int, ...]:
    """The slots to fire at ``now_ms`` of a schedule that fired nothing after ``floor_ms``, by
    a leader that leads since ``leading_since_ms``: every due slot of its own reign (its own
    slowness, a slow commit, never skips one), and of those missed before it (while there was
    no leader) the latest only, or every one with ``catch_up`` "all"; oldest first, at most
    ``limits.SCHEDULE_SLOTS_PER_FIRING_MAX`` (the rest are due again once these fired)."""
    first = next_slot_ms(spec, floor_ms)
    if first is None or first > now_ms:
        return ()
    if spec.catch_up == "latest" and first < leading_since_ms:
        first = _latest_slot_ms(spec, min(now_ms, leading_since_ms - 1))
        assert first > floor_ms, (first, floor_ms)
    slots = [first]
    while len(slots) < limits.SCHEDULE_SLOTS_PER_FIRING_MAX:
        following = next_slot_ms(spec, slots[-1])
        if following is None or following > now_ms:
            break
        slots.append(following)
    return tuple(slots)


def _latest_slot_ms(spec: ScheduleSpec, now_ms: int) -> int:
    """The schedule's last slot at or before ``now_ms`` (one is known to exist)."""
    every_ms = spec.every_ms
    if every_ms:
        return now_ms // every_ms * every_ms
    return _ms(_cron(spec, now_ms + 1).get_prev(float))


def _cron(spec: ScheduleSpec, at_ms: int) -> croniter:
    start = datetime.datetime.fromtimestamp(at_ms / 1000, zone(spec.tz))
    return croniter(spec.cron, start)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
