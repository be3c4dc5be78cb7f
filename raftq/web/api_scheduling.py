"""The JSON API's schedules and limits (docs/web.md; docs/schedules.md, docs/limits.md): the
operations of ``raftq schedule add|list|remove`` and ``raftq limit set|list|remove``, through
the same client calls, with the same checks.

A schedule or a limit is the object its CLI's ``list --json`` prints, in both directions: a
``GET`` lists those objects, and a ``PUT`` takes one (less the fields the cluster computes,
such as ``next_ms`` or ``running``, which it refuses by name). Every body is checked whole
before anything is sent, so bad input is a 400 naming the field and changes nothing.
"""

from __future__ import annotations

from typing import Any, cast

import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from raftq import limits
from raftq.client.jobfile import (
    MAX_ATTEMPTS_MAX,
    PRIORITY_MAX,
    PRIORITY_MIN,
    FieldProblem,
    check_integer,
    check_text,
)
from raftq.client.schedules import ScheduleOptions, schedule_spec
from raftq.jobs.commands import CATCH_UP_MODES
from raftq.web import actions
from raftq.web.api import API_PREFIX, ApiError, answering, path_name, query, read_json
from raftq.web.context import web_context

SCHEDULE_FIELDS = (
    "name", "cron", "tz", "every_s", "type", "payload", "queue", "catch_up", "priority",
    "max_attempts", "timeout_s", "group",
)  # fmt: skip
"""What a PUT of a schedule may hold: the fields of ``schedule list --json`` a user sets."""
SCHEDULE_COMPUTED = ("next_ms", "last_fired_ms", "changed_ms")
"""Fields of ``schedule list --json`` the cluster keeps itself: refused in a PUT, by name."""
LIMIT_FIELDS = ("scope", "name", "concurrency", "rate", "window_s")
LIMIT_COMPUTED = ("running", "pending", "started_in_window")
LIMIT_SCOPES = ("queue", "group")


def _object(body: Any, what: str, known: tuple[str, ...], computed: tuple[str, ...]) -> None:
    """``body`` is a JSON object whose fields are all ``known``; ``ApiError`` saying which
    field is not, and why."""
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", f"the body must be a JSON object: the {what}")
    for field in body:
        if field in computed:
            raise ApiError(
                400, "bad_request", f"field {field!r}: the cluster computes it; leave it out"
            )
        if field not in known:
            raise ApiError(
                400, "bad_request", f"field {field!r}: unknown field (known: {', '.join(known)})"
            )


def _field(body: dict[str, Any], field: str, check: Any, *bounds: Any) -> Any:
    """``body[field]`` checked as the job file's fields are, or None when absent or null."""
    if body.get(field) is None:
        return None
    try:
        return check(body[field], *bounds)
    except ValueError as error:
        raise FieldProblem(field, str(error)) from None


def _same_name(body: dict[str, Any], field: str, value: str) -> None:
    if field in body and body[field] != value:
        raise ApiError(
            400,
            "bad_request",
            f"field {field!r}: {body[field]!r} differs from the path's {value!r} (leave it out)",
        )


# --- schedules ------------------------------------------------------------------------------------


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number of seconds")
    return value


def _catch_up(value: object) -> str:
    if value not in CATCH_UP_MODES:
        raise ValueError(f"must be one of {', '.join(CATCH_UP_MODES)}, not {value!r}")
    assert isinstance(value, str)
    return value


@attrs.frozen(kw_only=True)
class ScheduleRequest:
    """What a PUT of a schedule asks for: ``Client.add_schedule``'s arguments."""

    type: str
    payload: Any
    options: ScheduleOptions


def schedule_request(name: str, body: Any) -> ScheduleRequest:
    """The schedule a PUT's body describes, checked whole (``schedule_spec``: the cron
    expression, the zone, the interval, the payload, the fired jobs' options) before anything
    is sent; ``ApiError`` or ``ConfigError`` (400) naming the problem."""
    _object(body, "schedule", SCHEDULE_FIELDS, SCHEDULE_COMPUTED)
    _same_name(body, "name", name)
    if "type" not in body:
        raise ApiError(400, "bad_request", "field 'type': missing (the type of job it fires)")
    try:
        job_type = _field(body, "type", check_text, limits.NAME_CHARS_MAX)
        given = {
            "cron": _field(body, "cron", check_text, limits.SCHEDULE_CRON_CHARS_MAX),
            "every": _field(body, "every_s", _seconds),
            "tz": _field(body, "tz", check_text, limits.NAME_CHARS_MAX),
            "queue": _field(body, "queue", check_text, limits.NAME_CHARS_MAX),
            "catch_up": _field(body, "catch_up", _catch_up),
            "priority": _field(body, "priority", check_integer, PRIORITY_MIN, PRIORITY_MAX),
            "max_attempts": _field(body, "max_attempts", check_integer, 1, MAX_ATTEMPTS_MAX),
            "timeout": _field(body, "timeout_s", _seconds),
            "group": _field(body, "group", check_text, limits.NAME_CHARS_MAX),
        }
    except FieldProblem as problem:
        raise ApiError(400, "bad_request", f"field {problem.field!r}: {problem}") from None
    if (given["cron"] is None) == (given["every"] is None):
        raise ApiError(
            400, "bad_request", "give the schedule either 'cron' (with 'tz') or 'every_s'"
        )
    # Absent or null: the option's default, as the CLI leaves out a flag not given.
    options = cast(
        ScheduleOptions, {key: value for key, value in given.items() if value is not None}
    )
    payload = body.get("payload")
    schedule_spec(name, job_type, payload, options)  # ConfigError: what is wrong, in its words
    return ScheduleRequest(type=job_type, payload=payload, options=options)


@answering
async def list_schedules(request: Request) -> Response:
    """Every schedule by name, as ``raftq schedule list --json`` prints it."""
    query(request, ())
    async with web_context(request).client() as client:
        return JSONResponse({"schedules": await client.schedules()})


@answering
async def put_schedule(request: Request) -> Response:
    """Add the schedule of the path's name, or replace it; 201 when it is new."""
    name = path_name(request, "name")
    schedule = schedule_request(name, await read_json(request))
    state = await actions.put_schedule(
        request, name, schedule.type, schedule.payload, schedule.options
    )
    status = 201 if state == "added" else 200
    return JSONResponse({"name": name, "state": state}, status_code=status)


@answering
async def delete_schedule(request: Request) -> Response:
    name = path_name(request, "name")
    await actions.remove_schedule(request, name)
    return JSONResponse({"name": name, "state": "removed"})


# --- limits ---------------------------------------------------------------------------------------


def _scope(request: Request) -> tuple[str, str]:
    scope: str = request.path_params["scope"]
    if scope not in LIMIT_SCOPES:
        raise ApiError(400, "bad_request", f"a limit is on a queue or a group, not {scope!r}")
    return scope, path_name(request, "name")


def limit_arguments(scope: str, name: str, body: Any) -> dict[str, Any]:
    """The arguments of ``Client.set_limit`` that a PUT's body describes, checked whole; 0 or
    absent is "no such limit", as ``limit list --json`` shows it."""
    _object(body, "limit", LIMIT_FIELDS, LIMIT_COMPUTED)
    _same_name(body, "scope", scope)
    _same_name(body, "name", name)
    try:
        concurrency = _field(body, "concurrency", check_integer, 0, limits.LIMIT_CONCURRENCY_MAX)
        rate = _field(body, "rate", check_integer, 0, limits.LIMIT_RATE_COUNT_MAX)
        window_s = _field(body, "window_s", _seconds)
    except FieldProblem as problem:
        raise ApiError(400, "bad_request", f"field {problem.field!r}: {problem}") from None
    if not concurrency and not rate:
        raise ApiError(
            400,
            "bad_request",
            "a limit needs 'concurrency', or 'rate' and 'window_s', or both "
            "(to lift one: DELETE it)",
        )
    if rate and not window_s:
        raise ApiError(400, "bad_request", "field 'window_s': a rate needs its window in seconds")
    if window_s and not rate:
        raise ApiError(400, "bad_request", "field 'window_s': a window without a 'rate'")
    return {
        scope: name,
        "concurrency": concurrency or None,
        "rate": rate or None,
        "per": window_s if rate else None,
    }


@answering
async def list_limits(request: Request) -> Response:
    """Every limit, with what runs and waits under it now (``raftq limit list --json``)."""
    query(request, ())
    async with web_context(request).client() as client:
        return JSONResponse({"limits": await client.limits()})


@answering
async def put_limit(request: Request) -> Response:
    """Set or replace the limit of the path's queue or group."""
    scope, name = _scope(request)
    arguments = limit_arguments(scope, name, await read_json(request))
    await actions.set_limit(request, arguments)
    shown = {
        "scope": scope,
        "name": name,
        "concurrency": arguments["concurrency"] or 0,
        "rate": arguments["rate"] or 0,
        # As the list shows it: the window the cluster keeps, in whole ms, over 1000.
        "window_s": round((arguments["per"] or 0) * 1000) / 1000,
    }
    return JSONResponse(shown)


@answering
async def delete_limit(request: Request) -> Response:
    scope, name = _scope(request)
    await actions.remove_limit(request, scope, name)
    return JSONResponse({"scope": scope, "name": name, "state": "removed"})


def scheduling_api_routes() -> list[BaseRoute]:
    prefix = API_PREFIX
    # Names may hold '/' (sent as %2F, which the server decodes): ":path".
    return [
        Route(f"{prefix}/schedules", list_schedules, methods=["GET"]),
        Route(f"{prefix}/schedules/{{name:path}}", put_schedule, methods=["PUT"]),
        Route(f"{prefix}/schedules/{{name:path}}", delete_schedule, methods=["DELETE"]),
        Route(f"{prefix}/limits", list_limits, methods=["GET"]),
        Route(f"{prefix}/limits/{{scope}}/{{name:path}}", put_limit, methods=["PUT"]),
        Route(f"{prefix}/limits/{{scope}}/{{name:path}}", delete_limit, methods=["DELETE"]),
    ]
