"""The dashboard's Schedules and Limits pages (docs/web.md, "Dashboard"), each a plain view of
what ``raftq schedule list`` and ``raftq limit list`` print, with one action: remove.

A removal asks first, as "Retry every dead job" does: the row's button is a GET of a page that
says what removing it does and changes nothing; that page's button is the POST, which makes one
client call (through the replicated log) and goes back to the list with a notice.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from raftq import limits
from raftq.errors import ConfigError, JobNotFound
from raftq.web import actions
from raftq.web.api_scheduling import LIMIT_SCOPES
from raftq.web.context import web_context
from raftq.web.pages import page_action, render, root_of, unavailable_as_page


def _when(schedule: dict[str, Any]) -> str:
    """A schedule's slots in a few words: ``cron 0 3 * * * Europe/Berlin``, ``every 30 s``."""
    if "cron" in schedule:
        return f"cron {schedule['cron']} ({schedule['tz']})"
    return f"every {schedule['every_s']:g} s"


def _jobs_link(request: Request, schedule: dict[str, Any]) -> str:
    """The jobs list of the schedule's queue and type: where the jobs it fired are (each keyed
    ``schedule:NAME:SLOT_MS``; the list cannot filter by key, so others of that queue and type
    show there too)."""
    queue, job_type = quote(schedule["queue"], safe=""), quote(schedule["type"], safe="")
    return f"{root_of(request)}/jobs?queue={queue}&type={job_type}"


@unavailable_as_page
async def schedules(request: Request) -> Response:
    async with web_context(request).client() as client:
        found = await client.schedules()
    rows = [
        {**shown, "when": _when(shown), "jobs": _jobs_link(request, shown)}
        for shown in found[: limits.WEB_LIST_ROWS_MAX]
    ]
    return render(request, "schedules.html", title="Schedules", schedules=rows, held=len(found))


async def _schedule(request: Request, name: str) -> dict[str, Any]:
    async with web_context(request).client() as client:
        found = await client.schedules()
    for shown in found:
        if shown["name"] == name:
            return {**shown, "when": _when(shown), "jobs": _jobs_link(request, shown)}
    raise JobNotFound(f"no schedule {name}")


@unavailable_as_page
async def confirm_remove_schedule(request: Request) -> Response:
    """What removing the schedule does, to confirm; changes nothing, does not refresh."""
    schedule = await _schedule(request, request.path_params["name"])
    return render(
        request,
        "remove_schedule.html",
        title="Remove a schedule",
        schedule=schedule,
        back=f"{root_of(request)}/schedules",
        refresh_ms=0,
    )


@page_action("/schedules")
async def remove_schedule(request: Request, form: dict[str, str]) -> str:
    name = request.path_params["name"]
    await actions.remove_schedule(request, name)
    return f"schedule {name} removed"


@unavailable_as_page
async def limits_page(request: Request) -> Response:
    async with web_context(request).client() as client:
        found = await client.limits()
    shown = found[: limits.WEB_LIST_ROWS_MAX]
    return render(request, "limits.html", title="Limits", limits=shown, held=len(found))


async def _limit(request: Request) -> dict[str, Any]:
    scope, name = request.path_params["scope"], request.path_params["name"]
    if scope not in LIMIT_SCOPES:
        raise ConfigError(f"a limit is on a queue or a group, not on a {scope!r}")
    async with web_context(request).client() as client:
        found = await client.limits()
    for shown in found:
        if (shown["scope"], shown["name"]) == (scope, name):
            return shown
    raise JobNotFound(f"no limit on {scope} {name}")


@unavailable_as_page
async def confirm_remove_limit(request: Request) -> Response:
    """What lifting the limit does, to confirm; changes nothing, does not refresh."""
    return render(
        request,
        "remove_limit.html",
        title="Lift a limit",
        limit=await _limit(request),
        back=f"{root_of(request)}/limits",
        refresh_ms=0,
    )


@page_action("/limits")
async def remove_limit(request: Request, form: dict[str, str]) -> str:
    scope, name = request.path_params["scope"], request.path_params["name"]
    if scope not in LIMIT_SCOPES:
        raise ConfigError(f"a limit is on a queue or a group, not on a {scope!r}")
    await actions.remove_limit(request, scope, name)
    return f"{scope} {name}: limit removed"


def scheduling_page_routes() -> list[BaseRoute]:
    """The Schedules and Limits pages, mounted at the web app's root next to the others.
    Names may hold "/": links quote them whole, and the path converter takes the rest."""
    return [
        Route("/schedules", schedules, methods=["GET"]),
        Route("/schedules/{name:path}/remove", confirm_remove_schedule, methods=["GET"]),
        Route("/schedules/{name:path}/remove", remove_schedule, methods=["POST"]),
        Route("/limits", limits_page, methods=["GET"]),
        Route("/limits/{scope}/{name:path}/remove", confirm_remove_limit, methods=["GET"]),
        Route("/limits/{scope}/{name:path}/remove", remove_limit, methods=["POST"]),
    ]
