"""The dashboard: server-rendered pages over the client library (docs/web.md, "Dashboard").

Each page is a plain view of what the cluster says now (Sidekiq Web and Oban Web style): the
overview, queues, jobs by state, one job with its history, and the dead jobs. Templates are
Jinja2 with autoescape on, so nothing a job carries (ids, payloads, errors) can inject markup.

Live updates: ``static/dashboard.js`` re-fetches the page every few seconds with the header
``X-Raftq-Live: 1`` while the tab is visible, and the page answers with only its live region,
which the script swaps in. Without JavaScript every page still works, reloaded by hand.

Actions are ``<form method="post">`` to the POST routes here; ``Guard`` (``raftq.web.auth``)
refuses them cross-site, without credentials, or in read-only mode before they run, and the
pages show no action buttons in read-only mode. Each action is one client call (through the
replicated log), is logged with who made it, and answers with a redirect back (303).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from raftq import limits
from raftq.client.client import Client, CommandRejected
from raftq.client.job import Job, utc_text
from raftq.errors import ConfigError, JobNotFound, RaftqError
from raftq.jobs.job import JobState
from raftq.jobs.provenance import SNAPSHOT
from raftq.web import actions
from raftq.web.context import current_user, web_context

logger = logging.getLogger("raftq.web")

LIVE_HEADER = "x-raftq-live"
"""Set by dashboard.js on its refreshes: answer with the page's live region only."""

REFRESH_MS = 2_000
"""How often a visible page refreshes itself: fresh enough to watch jobs move, and one small
request per open tab every two seconds costs the cluster nothing noticeable."""

STATES = tuple(state.value for state in JobState)
CANCELLABLE = frozenset({"pending", "running", "failed", "waiting"})
RETRYABLE = frozenset({"dead", "failed"})

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("raftq.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _duration(ms: int) -> str:
    seconds = max(0, ms) / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _relative(at_ms: int | None, now_ms: int) -> str:
    """``at_ms`` from ``now_ms``, as people say it: "in 4.0 s", "3.2 min ago"; "" for none."""
    if not at_ms:
        return ""
    if at_ms >= now_ms:
        return f"in {_duration(at_ms - now_ms)}"
    return f"{_duration(now_ms - at_ms)} ago"


def slot_due(at_ms: int | None, now_ms: int) -> str:
    """When a slot is due: "in 4.0 s" ahead; "due now" up to a second late (the scheduler is
    firing it); "overdue by 2.5 min" beyond (no leader, or one that cannot commit)."""
    if not at_ms:
        return ""
    if at_ms > now_ms:
        return f"in {_duration(at_ms - now_ms)}"
    if now_ms - at_ms <= 1000:
        return "due now"
    return f"overdue by {_duration(now_ms - at_ms)}"


def _segment(value: str) -> str:
    """One path segment: everything quoted, "/" included (Jinja's urlencode keeps "/")."""
    return quote(value, safe="")


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


_templates.filters.update(
    time=utc_text,
    duration=_duration,
    relative=_relative,
    due=slot_due,
    pretty_json=_pretty_json,
    segment=_segment,
)


def root_of(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _here(request: Request) -> str:
    """This page's path and query, without the last action's message: where a form on it
    comes back to."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("notice", "problem")]
    return request.url.path + (f"?{urlencode(kept)}" if kept else "")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def render(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """The page ``name``, or only its live region when dashboard.js asks for it."""
    context = web_context(request)
    values.update(
        root=root_of(request),
        read_only=context.read_only,
        auth_required=context.auth_required,
        user=current_user(request),
        refresh_ms=values.pop("refresh_ms", REFRESH_MS),
        notice=request.query_params.get("notice", "")[: limits.WEB_NOTICE_CHARS_MAX],
        problem=request.query_params.get("problem", "")[: limits.WEB_NOTICE_CHARS_MAX],
        path=request.url.path,
        here=_here(request),
        now_ms=_now_ms(),
    )
    template = _templates.get_template(name)
    if request.headers.get(LIVE_HEADER) == "1":
        body = "".join(template.blocks["live"](template.new_context(values)))
    else:
        body = template.render(values)
    return HTMLResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})


PageHandler = Callable[[Request], Awaitable[Response]]


def unavailable_as_page(handler: PageHandler) -> PageHandler:
    """The cluster's refusals as a page that says so (and keeps refreshing), never a 500."""

    async def page(request: Request) -> Response:
        try:
            return await handler(request)
        except JobNotFound as error:
            return render(request, "problem.html", 404, title="Not found", message=str(error))
        except ConfigError as error:
            return render(request, "problem.html", 400, title="Bad request", message=str(error))
        except RaftqError as error:
            return render(
                request, "problem.html", 503, title="Cluster unavailable", message=str(error)
            )

    return page


# --- pages ----------------------------------------------------------------------------------------


@unavailable_as_page
async def overview(request: Request) -> Response:
    async with web_context(request).client() as client:
        status = await client.status()
    cluster = status["cluster"]
    for node in cluster["nodes"]:
        reachable = node["role"] != "unreachable"
        node["lag"] = max(0, cluster["commit_index"] - node["applied_index"]) if reachable else None
    return render(
        request,
        "overview.html",
        title="Overview",
        cluster=cluster,
        jobs=status["jobs"],
        totals=status.get("totals", {"enqueued": 0, "finished": 0}),
        queue_count=len(status["queues"]),
    )


@unavailable_as_page
async def queues(request: Request) -> Response:
    now_ms = _now_ms()
    async with web_context(request).client() as client:
        status = await client.status()
        rows = []
        for name, queue in sorted(status["queues"].items()):
            oldest = (await client.page("pending", name, limit=1)).jobs
            waiting_since = max(oldest[0].enqueued_ms, oldest[0].run_at_ms) if oldest else 0
            rows.append(
                {
                    "name": name,
                    **queue,
                    "oldest_wait_ms": max(0, now_ms - waiting_since) if waiting_since else None,
                }
            )
    return render(request, "queues.html", title="Queues", queues=rows)


def _filters(request: Request) -> dict[str, str]:
    """The jobs list's filters from the query string; bad ones are a clear 400 page."""
    parameters = request.query_params
    filters = {name: parameters.get(name, "").strip() for name in ("state", "queue", "type")}
    if filters["state"] and filters["state"] not in STATES:
        raise ConfigError(f"state {filters['state']!r} is none of {', '.join(STATES)}")
    for name in ("queue", "type"):
        if len(filters[name]) > limits.NAME_CHARS_MAX:
            raise ConfigError(f"{name}: at most {limits.NAME_CHARS_MAX} characters")
    after = parameters.get("after", "")
    if after and not (after.isdigit() and len(after) <= 18):
        raise ConfigError("after: the cursor of a page, a number this page made")
    filters["after"] = after
    return filters


async def _page_of_jobs(
    request: Request, filters: dict[str, str]
) -> tuple[list[Job], dict[str, str]]:
    """One page, newest first (the jobs people look for are usually the latest), and the
    links to the first and the next page ("" where there is none)."""
    async with web_context(request).client() as client:
        page = await client.page(
            filters["state"] or None,
            filters["queue"] or None,
            filters["type"] or None,
            cursor=int(filters["after"]) if filters["after"] else None,
            limit=limits.WEB_PAGE_JOBS,
            newest_first=True,
        )
    kept = {name: value for name, value in filters.items() if value and name != "after"}
    here = request.url.path
    pages = {
        "first": f"{here}?{urlencode(kept)}".rstrip("?") if filters["after"] else "",
        "next": ""
        if page.cursor is None
        else f"{here}?{urlencode({**kept, 'after': page.cursor})}",
    }
    return page.jobs, pages


@unavailable_as_page
async def jobs(request: Request) -> Response:
    filters = _filters(request)
    found, pages = await _page_of_jobs(request, filters)
    title = f"{filters['state'].capitalize()} jobs" if filters["state"] else "Jobs"
    return render(
        request,
        "jobs.html",
        title=title,
        jobs=found,
        pages=pages,
        filters=filters,
        states=STATES,
        cancellable=CANCELLABLE,
        retryable=RETRYABLE,
    )


@unavailable_as_page
async def dead(request: Request) -> Response:
    filters = {**_filters(request), "state": "dead"}
    found, pages = await _page_of_jobs(request, filters)
    return render(request, "dead.html", title="Dead jobs", jobs=found, pages=pages, filters=filters)


@unavailable_as_page
async def job_page(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    async with web_context(request).client() as client:
        job: Job = await client.get(job_id)
        parents = await _parent_states(client, job.depends_on[: limits.WEB_PARENTS_SHOWN])
    return render(
        request,
        "job.html",
        title=f"Job {job.id}",
        job=job,
        parents=parents,
        parents_more=max(0, len(job.depends_on) - len(parents)),
        progress_fraction=progress_fraction(job.progress),
        cancellable=job.state in CANCELLABLE,
        retryable=job.state in RETRYABLE,
        history_error_chars=f"{limits.JOB_HISTORY_ERROR_CHARS_MAX:,}",
        history_max=limits.JOB_HISTORY_MAX,
    )


@unavailable_as_page
async def story_page(request: Request) -> Response:
    """A job's whole story from the log (``raftq job ID --history``)."""
    job_id = request.path_params["job_id"]
    async with web_context(request).client() as client:
        story = await client.history(job_id)
    kept = sum(1 for event in story.events if event.source == SNAPSHOT)
    return render(request, "story.html", title=f"Job {job_id}: its story", story=story, kept=kept)


def progress_fraction(progress: Any) -> float | None:
    """How far a progress value of the form ``{"done": N, "total": M}`` says a job got (0 to
    1), for a bar under it; None for any other value, which is shown as JSON only."""
    if not isinstance(progress, dict):
        return None
    done, total = progress.get("done"), progress.get("total")
    numbers = all(isinstance(n, int | float) and not isinstance(n, bool) for n in (done, total))
    if not numbers or not total or total <= 0:
        return None
    return float(min(1.0, max(0.0, done / total)))


async def _parent_states(client: Client, parent_ids: Sequence[str]) -> list[tuple[str, str]]:
    """(id, state) of each parent, in order; "purged" for one the cluster no longer holds (a
    finished job past its retention)."""
    parents = []
    for parent_id in parent_ids:  # bounded: WEB_PARENTS_SHOWN
        try:
            parents.append((parent_id, (await client.get(parent_id)).state))
        except JobNotFound:
            parents.append((parent_id, "purged"))
    return parents


# --- actions --------------------------------------------------------------------------------------


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body, bounded in size: each field's first value."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limits.WEB_BODY_BYTES_MAX:
            raise ConfigError("the form is too large")
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def _back(request: Request, form: dict[str, str], fallback: str, **message: str) -> Response:
    """303 to the page the form came from (only a path on this site), with a notice."""
    root = root_of(request)
    target = form.get("next", "")
    if not target.startswith(root + "/") or target.startswith("//") or "\\" in target:
        target = root + fallback
    target = target.split("#", 1)[0]
    separator = "&" if "?" in target else "?"
    return RedirectResponse(target + separator + urlencode(message), status_code=303)


Action = Callable[[Request, dict[str, str]], Awaitable[str]]


def page_action(fallback: str) -> Callable[[Action], PageHandler]:
    """Run an action, then go back with a notice (or a problem: the cluster refused it)."""

    def wrap(action: Action) -> PageHandler:
        async def post(request: Request) -> Response:
            try:
                form = await _form(request)
            except ConfigError as error:
                return render(request, "problem.html", 400, title="Bad form", message=str(error))
            try:
                done = await action(request, form)
            except (CommandRejected, JobNotFound, ConfigError) as error:
                return _back(request, form, fallback, problem=str(error))
            except RaftqError as error:
                return _back(request, form, fallback, problem=f"not done: {error}")
            return _back(request, form, fallback, notice=done)

        return post

    return wrap


@page_action("/jobs")
async def cancel_job(request: Request, form: dict[str, str]) -> str:
    job_id = request.path_params["job_id"]
    return f"job {job_id}: {await actions.cancel(request, job_id)}"


@page_action("/dead")
async def retry_job(request: Request, form: dict[str, str]) -> str:
    job_id = request.path_params["job_id"]
    return f"job {job_id} retried: {await actions.retry(request, job_id)}"


def _queue_action(*, paused: bool) -> PageHandler:
    """The queues page's Pause or Resume button."""

    @page_action("/queues")
    async def post(request: Request, form: dict[str, str]) -> str:
        queue = request.path_params["name"]
        await actions.set_paused(request, queue, paused=paused)
        return f"queue {queue} {'paused' if paused else 'resumed'}"

    return post


@unavailable_as_page
async def confirm_retry_dead(request: Request) -> Response:
    """What "Retry every dead job" will do, to confirm: how many dead jobs of the filter it
    retries (those the button then retries, at most). It changes nothing, and does not
    refresh itself: the number stays the one confirmed."""
    filters = {**_filters(request), "state": "dead"}
    count = await _count_dead(request, filters)
    kept = {name: filters[name] for name in ("queue", "type") if filters[name]}
    return render(
        request,
        "retry_dead.html",
        title="Retry dead jobs",
        filters=filters,
        count=min(count, limits.RETRY_DEAD_JOBS_MAX),
        more=count > limits.RETRY_DEAD_JOBS_MAX,
        back=f"{root_of(request)}/dead" + (f"?{urlencode(kept)}" if kept else ""),
        refresh_ms=0,
    )


async def _count_dead(request: Request, filters: dict[str, str]) -> int:
    """The dead jobs of the filter, counted up to one more than a retry takes: page by page
    through the listing index (each page examines at most ``LIST_SCAN_JOBS_MAX`` jobs, so
    this is a few requests for a cluster near ``JOBS_MAX``), never a scan in one request."""
    wanted = limits.RETRY_DEAD_JOBS_MAX + 1
    counted, cursor = 0, None
    pages_max = limits.JOBS_MAX // limits.LIST_SCAN_JOBS_MAX + 2  # every job examined once
    async with web_context(request).client() as client:
        for _ in range(pages_max):
            page = await client.page(
                "dead",
                filters["queue"] or None,
                filters["type"] or None,
                cursor=cursor,
                limit=min(limits.JOBS_PAGE_MAX, wanted - counted),
            )
            counted += len(page.jobs)
            cursor = page.cursor
            if cursor is None or counted >= wanted:
                break
    return counted


@page_action("/dead")
async def retry_dead_jobs(request: Request, form: dict[str, str]) -> str:
    """The dead jobs of a queue and type (empty: any), at most ``limit`` (the number the
    confirmation counted; the bound of one command if absent)."""
    queue, job_type = form.get("queue", "").strip(), form.get("type", "").strip()
    counted = form.get("limit", "").strip()
    limit = int(counted) if re.fullmatch(r"[0-9]{1,9}", counted) else limits.RETRY_DEAD_JOBS_MAX
    if counted and not (str(limit) == counted and 1 <= limit <= limits.RETRY_DEAD_JOBS_MAX):
        raise ConfigError(f"limit: a number from 1 to {limits.RETRY_DEAD_JOBS_MAX}")
    retried = await actions.retry_dead(request, queue or None, job_type or None, limit)
    done = f"{retried} dead job{'' if retried == 1 else 's'} retried"
    if counted and retried < limit:
        return f"{done} (of the {limit} counted: the others left the dead list meanwhile)"
    if retried == limits.RETRY_DEAD_JOBS_MAX:
        return f"{done} (the most one action retries; repeat it for more)"
    return done


def page_routes() -> list[BaseRoute]:
    """The dashboard's routes, mounted at the web app's root."""
    return [
        Route("/", overview, methods=["GET"]),
        Route("/queues", queues, methods=["GET"]),
        Route("/jobs", jobs, methods=["GET"]),
        Route("/dead", dead, methods=["GET"]),
        # Job ids may hold "/" (and anything else): links quote them whole, and the path
        # converter takes the rest of the path, less the action's last segment.
        Route("/jobs/{job_id:path}/cancel", cancel_job, methods=["POST"]),
        Route("/jobs/{job_id:path}/retry", retry_job, methods=["POST"]),
        Route("/jobs/{job_id:path}/story", story_page, methods=["GET"]),
        Route("/jobs/{job_id:path}", job_page, methods=["GET"]),
        Route("/dead/retry", confirm_retry_dead, methods=["GET"]),
        Route("/dead/retry", retry_dead_jobs, methods=["POST"]),
        Route("/queues/{name}/pause", _queue_action(paused=True), methods=["POST"]),
        Route("/queues/{name}/resume", _queue_action(paused=False), methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("raftq.web", "static")]), name="static"),
    ]
