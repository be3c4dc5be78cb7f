"""Schedules on the client side: a schedule from the API's arguments (checked before it is
sent: a bad cron expression, time zone or interval is a ``ConfigError`` naming it), and a
schedule as ``raftq schedule list --json`` shows it (CONTRACT.md)."""

from __future__ import annotations

from typing import Any

from raftq import limits, slots
from raftq.client.jobfile import decode_json, encode_json, seconds_to_ms
from raftq.errors import ConfigError
from raftq.jobs.commands import CATCH_UP_MODES, ScheduleSpec
from raftq.jobs.schedules import ScheduleView


def schedule_spec(
    name: str,
    type: str,
    payload: object = None,
    *,
    cron: str | None = None,
    every: float | None = None,
    tz: str | None = None,
    queue: str = "default",
    catch_up: str = "latest",
) -> ScheduleSpec:
    """The schedule these arguments describe: ``cron`` (in ``tz``, UTC by default) or
    ``every`` seconds, exactly one; ``payload`` any JSON value, copied into each job fired."""
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
    try:
        payload_bytes = (
            b"" if payload is None else encode_json(payload, limits.SCHEDULE_PAYLOAD_BYTES_MAX)
        )
        spec = ScheduleSpec(
            name=name,
            type=type,
            payload=payload_bytes,
            queue=queue,
            cron=cron or "",
            tz=tz or "",
            every_ms=every_ms,
            catch_up=catch_up,
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
    )
    return shown
