"""Schedules on the client side: a schedule from the API's arguments (checked before it is
sent: a bad cron expression, time zone or interval is a ``ConfigError`` naming it), and a
schedule as ``raftq schedule list --json`` shows it (CONTRACT.md)."""

from __future__ import annotations

from typing import Any, TypedDict

from raftq import limits, slots
from raftq.client.jobfile import (
    MAX_ATTEMPTS_MAX,
    PRIORITY_MAX,
    PRIORITY_MIN,
    TIMEOUT_MS_MAX,
    check_integer,
    decode_json,
    encode_json,
    seconds_to_ms,
)
from raftq.errors import ConfigError
from raftq.jobs.commands import CATCH_UP_MODES, ScheduleSpec
from raftq.jobs.schedules import ScheduleView


class ScheduleOptions(TypedDict, total=False):
    """How a schedule fires (``cron`` or ``every``, exactly one), and the options of the jobs
    it fires, with ``Client.enqueue``'s names, units and defaults."""

    cron: str | None
    """A cron expression, e.g. "0 3 * * *"."""
    every: float | None
    """A fixed interval, in seconds (slots at its multiples since the Unix epoch)."""
    tz: str | None
    """The cron expression's time zone (default UTC)."""
    catch_up: str
    """After a time without a leader: "latest" (default) fires the latest missed slot only,
    "all" every one."""
    queue: str
    priority: int
    max_attempts: int
    timeout: float
    """Seconds one attempt of a fired job may run (default 30)."""
    group: str | None
    """The concurrency and rate group of the fired jobs: limited to one, a slow job never
    overlaps the next slot's."""


SCHEDULE_OPTIONS: tuple[str, ...] = tuple(ScheduleOptions.__annotations__)


def schedule_spec(
    name: str, type: str, payload: object = None, options: ScheduleOptions | None = None
) -> ScheduleSpec:
    """The schedule these arguments describe; ``payload`` any JSON value, copied into each
    job fired. ``ConfigError`` naming what is wrong, ``TypeError`` for an unknown option."""
    options = options or {}
    unknown = [option for option in options if option not in SCHEDULE_OPTIONS]
    if unknown:
        known = ", ".join(SCHEDULE_OPTIONS)
        raise TypeError(f"{unknown[0]!r} is not an option of a schedule (options: {known})")
    cron, every, tz = options.get("cron"), options.get("every"), options.get("tz")
    catch_up = options.get("catch_up", "latest")
    if (cron is None) == (every is None):
        raise ConfigError("give a schedule either a cron expression or an interval (every)")
    if tz is not None and cron is None:
        raise ConfigError("a time zone applies to a cron expression only")
    if catch_up not in CATCH_UP_MODES:
        raise ConfigError(f"catch_up must be one of {', '.join(CATCH_UP_MODES)}, not {catch_up!r}")
    every_ms = 0
    if every is not None:
        every_ms = seconds_to_ms(
            "every",
            every,
            lowest_ms=limits.SCHEDULE_EVERY_MS_MIN,
            highest_ms=limits.SCHEDULE_EVERY_MS_MAX,
        )
    timeout_ms = seconds_to_ms(
        "timeout", options.get("timeout", 30.0), lowest_ms=1, highest_ms=TIMEOUT_MS_MAX
    )
    bounds = {"priority": (0, PRIORITY_MIN, PRIORITY_MAX), "max_attempts": (3, 1, MAX_ATTEMPTS_MAX)}
    numbers: dict[str, int] = {}
    for option, (default, lowest, highest) in bounds.items():
        try:
            numbers[option] = check_integer(options.get(option, default), lowest, highest)
        except ValueError as error:
            raise ConfigError(f"bad schedule {name!r}: {option}: {error}") from None
    try:
        payload_bytes = (
            b"" if payload is None else encode_json(payload, limits.SCHEDULE_PAYLOAD_BYTES_MAX)
        )
        spec = ScheduleSpec(
            name=name,
            type=type,
            payload=payload_bytes,
            queue=options.get("queue", "default"),
            cron=cron or "",
            tz=tz or "",
            every_ms=every_ms,
            catch_up=catch_up,
            priority=numbers["priority"],
            max_attempts=numbers["max_attempts"],
            timeout_ms=timeout_ms,
            group=options.get("group") or "",
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(f"bad schedule {name!r}: {error}") from None
    slots.check(spec)
    return spec


def schedule_json(view: ScheduleView) -> dict[str, Any]:
    """One schedule as ``schedule list --json`` prints it: ``cron`` and ``tz``, or
    ``every_s``; ``next_ms`` and ``last_fired_ms`` null for none."""
    shown: dict[str, Any] = {"name": view.name}
    if view.cron:
        shown["cron"] = view.cron
        shown["tz"] = view.tz or "UTC"
    else:
        every_s = view.every_ms / 1000
        shown["every_s"] = int(every_s) if every_s.is_integer() else every_s
        shown["tz"] = None
    shown.update(
        next_ms=view.next_ms or None,
        last_fired_ms=view.last_fired_ms or None,
        type=view.type,
        queue=view.queue,
        payload=decode_json(view.payload),
        catch_up=view.catch_up,
        changed_ms=view.since_ms,
        priority=view.priority,
        max_attempts=view.max_attempts,
        timeout_s=view.timeout_ms / 1000,
        group=view.group or None,
    )
    return shown
