"""What the web app's actions do, one path each for the JSON API (``api.py``) and the
dashboard's forms (``pages.py``): one client call, which goes through the replicated log,
then one log line saying who did it (``log_action``). The routes only read their input and
shape their answer: JSON for the API, a redirect back with a notice for a page."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from raftq.client.schedules import ScheduleOptions
from raftq.web.context import log_action, web_context


async def set_paused(request: Request, queue: str, *, paused: bool) -> None:
    """Pause ``queue`` (no more of its jobs are handed out) or resume it."""
    async with web_context(request).client() as client:
        if paused:
            await client.pause(queue)
        else:
            await client.resume(queue)
    log_action(request, "pause" if paused else "resume", queue=queue)


async def cancel(request: Request, job_id: str) -> str:
    """Cancel a job; its state after (a running job stays running until its worker reports)."""
    async with web_context(request).client() as client:
        state = await client.cancel(job_id)
    log_action(request, "cancel", job=job_id, state=state)
    return state


async def retry(request: Request, job_id: str) -> str:
    """Run a dead or failed job again; its state after."""
    async with web_context(request).client() as client:
        state = await client.retry(job_id)
    log_action(request, "retry", job=job_id, state=state)
    return state


async def retry_dead(request: Request, queue: str | None, job_type: str | None, limit: int) -> int:
    """Retry the dead jobs of a queue and type (None: any), at most ``limit``, in one command;
    how many were retried."""
    async with web_context(request).client() as client:
        retried = await client.retry_dead(queue, job_type, limit)
    log_action(request, "retry-dead", queue=queue or "*", type=job_type or "*", retried=retried)
    return retried


async def put_schedule(
    request: Request, name: str, type: str, payload: object, options: ScheduleOptions
) -> str:
    """Add schedule ``name`` or replace it (``Client.add_schedule``'s arguments); "added",
    "updated" or "unchanged"."""
    async with web_context(request).client() as client:
        state = await client.add_schedule(name, type, payload, **options)
    log_action(request, "schedule-put", schedule=name, state=state)
    return state


async def remove_schedule(request: Request, name: str) -> None:
    """Remove schedule ``name`` (``CommandRejected`` not_found if there is none)."""
    async with web_context(request).client() as client:
        await client.remove_schedule(name)
    log_action(request, "schedule-remove", schedule=name)


async def set_limit(request: Request, arguments: dict[str, Any]) -> None:
    """Set or replace a queue's or group's limit (``arguments``: those of
    ``Client.set_limit``)."""
    async with web_context(request).client() as client:
        await client.set_limit(**arguments)
    shown = {key: value for key, value in arguments.items() if value is not None}
    log_action(request, "limit-set", **shown)


async def remove_limit(request: Request, scope: str, name: str) -> None:
    """Lift the limit of a queue or group (``scope``); ``CommandRejected`` not_found if it
    has none."""
    async with web_context(request).client() as client:
        await client.remove_limit(**{scope: name})
    log_action(request, "limit-remove", **{scope: name})
