"""The HTTP JSON API under ``/api/v1`` (CONTRACT.md "HTTP"), a thin layer over the client.

Each route checks its input, makes one client call, and answers JSON. Errors are
``{"error": {"code", "message"}}``: 400 bad input (naming the index and field), 401 no
credentials, 403 refused action, 404 no such job (schedule, limit), 409 the job's state
forbids it, 413 too large, 415 not JSON, 503 no quorum or busy. Bad input never becomes a
500. The schedules' and limits' routes are in ``api_scheduling.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from raftq import codec, limits
from raftq.client.client import CommandRejected
from raftq.client.cursor import decode_cursor, encode_cursor
from raftq.client.jobfile import (
    JOB_FILE_WRAPPING_DEPTH,
    FieldProblem,
    check_integer,
    check_text,
    parse_json,
    specs_from_objects,
)
from raftq.errors import Busy, ConfigError, JobNotFound, NoQuorum, RaftqError
from raftq.jobs.job import JobState
from raftq.web import actions
from raftq.web.auth import route_path
from raftq.web.context import log_action, web_context
from raftq.web.openapi import openapi_document

API_PREFIX = "/api/v1"

logger = logging.getLogger("raftq.web")


class ApiError(Exception):
    """An answer other than success: the status, a code for programs, a message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


Handler = Callable[[Request], Awaitable[Response]]


def answering(handler: Handler) -> Handler:
    """Turn the cluster's and the input's errors into JSON errors with the right status."""

    async def answer(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as error:
            return error_response(error.status, error.code, error.message)
        except ConfigError as error:
            return error_response(400, "bad_request", str(error))
        except JobNotFound as error:
            return error_response(404, "not_found", str(error))
        except CommandRejected as error:
            # not_found: a schedule or limit to remove that is not there, as a job is 404.
            status = 404 if error.code == "not_found" else 409
            return error_response(status, error.code, str(error))
        except Busy as error:
            return error_response(503, "busy", str(error))
        except NoQuorum as error:
            return error_response(503, "no_quorum", str(error))
        except RaftqError as error:
            return error_response(503, "unavailable", str(error))

    answer.__name__ = handler.__name__
    answer.__doc__ = handler.__doc__
    return answer


# --- input ----------------------------------------------------------------------------------------


async def read_json(request: Request) -> Any:
    """The request's JSON body, bounded in bytes and nesting; ``ApiError`` if it is not."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limits.WEB_BODY_BYTES_MAX:
            raise ApiError(413, "too_large", f"the body is over {limits.WEB_BODY_BYTES_MAX} bytes")
    try:
        # A list of jobs wraps each payload in two levels, as a job file does.
        return parse_json(bytes(body), limits.NESTING_DEPTH_MAX + JOB_FILE_WRAPPING_DEPTH)
    except ConfigError as error:
        raise ApiError(400, "bad_request", f"the body: {error}") from None


def query(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, each at most once and each one this route knows."""
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise ApiError(
                400,
                "bad_request",
                f"query parameter {name!r} is unknown (known: {', '.join(allowed)})",
            )
        if name in values:
            raise ApiError(400, "bad_request", f"query parameter {name!r} is given twice")
        values[name] = value
    return values


def _integer(name: str, text: str, lowest: int, highest: int) -> int:
    if not text.isdigit() or not lowest <= int(text) <= highest:
        raise ApiError(
            400, "bad_request", f"query parameter {name!r}: an integer from {lowest} to {highest}"
        )
    return int(text)


def _state(text: str) -> str:
    states = [state.value for state in JobState]
    if text not in states:
        raise ApiError(
            400, "bad_request", f"query parameter 'state': {text!r} is none of {', '.join(states)}"
        )
    return text


def _job_id(request: Request) -> str:
    job_id: str = request.path_params["job_id"]
    if len(job_id) > limits.JOB_ID_CHARS_MAX:
        raise ApiError(
            400,
            "bad_request",
            f"job id: {len(job_id)} characters; at most {limits.JOB_ID_CHARS_MAX}",
        )
    return job_id


def path_name(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    if not 0 < len(value) <= limits.NAME_CHARS_MAX:
        raise ApiError(400, "bad_request", f"{name}: 1 to {limits.NAME_CHARS_MAX} characters")
    return value


# --- routes ---------------------------------------------------------------------------------------


@answering
async def enqueue_jobs(request: Request) -> Response:
    """Enqueue one job-file object, or a list of them, as one command."""
    document = await read_json(request)
    items = document if isinstance(document, list) else [document]
    if not items:
        raise ApiError(400, "bad_request", "the list holds no job")
    if len(items) > limits.JOBS_PER_ENQUEUE_MAX:
        raise ApiError(
            400,
            "bad_request",
            f"{len(items)} jobs; at most {limits.JOBS_PER_ENQUEUE_MAX} per request",
        )
    specs = specs_from_objects(items)
    async with web_context(request).client() as client:
        ids = await client.enqueue_specs(specs)
    log_action(request, "enqueue", jobs=len(ids), first=ids[0])
    return JSONResponse({"ids": ids}, status_code=201)


@answering
async def get_job(request: Request) -> Response:
    """One job with its full history (the ``raftq job ID --json`` object)."""
    job_id = _job_id(request)
    async with web_context(request).client() as client:
        job = await client.get(job_id)
    return JSONResponse(job.to_json())


@answering
async def get_job_history(request: Request) -> Response:
    """The job's whole story from the log (the ``raftq job ID --history --json`` object)."""
    job_id = _job_id(request)
    async with web_context(request).client() as client:
        story = await client.history(job_id)
    return JSONResponse(codec.unstructure(story))


@answering
async def list_jobs(request: Request) -> Response:
    """A page of jobs, filtered, oldest (or newest) first, and the cursor of the next page."""
    parameters = query(request, ("state", "queue", "type", "limit", "cursor", "order"))
    order = parameters.get("order", "oldest")
    if order not in ("oldest", "newest"):
        raise ApiError(400, "bad_request", "query parameter 'order': oldest or newest")
    cursor = _cursor(parameters["cursor"], order) if "cursor" in parameters else None
    async with web_context(request).client() as client:
        page = await client.page(
            _state(parameters["state"]) if "state" in parameters else None,
            _name_parameter(parameters, "queue"),
            _name_parameter(parameters, "type"),
            cursor=cursor,
            limit=_integer("limit", parameters.get("limit", "100"), 1, limits.JOBS_PAGE_MAX),
            newest_first=order == "newest",
        )
    next_cursor = None if page.cursor is None else encode_cursor(page.cursor, order)
    return JSONResponse({"jobs": [job.to_json() for job in page.jobs], "next_cursor": next_cursor})


def _cursor(text: str, order: str) -> int:
    try:
        return decode_cursor(text, order)
    except ConfigError as error:
        raise ApiError(400, "bad_cursor", f"query parameter 'cursor': {error}") from None


def _name_parameter(parameters: dict[str, str], name: str) -> str | None:
    value = parameters.get(name)
    if value is not None and not 0 < len(value) <= limits.NAME_CHARS_MAX:
        raise ApiError(
            400, "bad_request", f"query parameter {name!r}: 1 to {limits.NAME_CHARS_MAX} characters"
        )
    return value


RETRY_DEAD_FIELDS = ("queue", "type", "limit")


def _optional(body: dict[str, Any], field: str, check: Any, *bounds: int) -> Any:
    """``body[field]`` checked as the job file's fields are, or None when absent."""
    if field not in body:
        return None
    try:
        return check(body[field], *bounds)
    except ValueError as error:
        raise FieldProblem(field, str(error)) from None


@answering
async def retry_dead_jobs(request: Request) -> Response:
    """Retry every dead job of a queue and type (any, if not given), up to ``limit``."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object (it may be {})")
    for field in body:
        if field not in RETRY_DEAD_FIELDS:
            raise ApiError(
                400,
                "bad_request",
                f"field {field!r}: unknown field (known: {', '.join(RETRY_DEAD_FIELDS)})",
            )
    try:
        queue = _optional(body, "queue", check_text, limits.NAME_CHARS_MAX)
        job_type = _optional(body, "type", check_text, limits.NAME_CHARS_MAX)
        limit = _optional(body, "limit", check_integer, 1, limits.RETRY_DEAD_JOBS_MAX)
    except FieldProblem as problem:
        raise ApiError(400, "bad_request", f"field {problem.field!r}: {problem}") from None
    retried = await actions.retry_dead(
        request, queue, job_type, limit or limits.RETRY_DEAD_JOBS_MAX
    )
    return JSONResponse({"retried": retried})


@answering
async def cancel_job(request: Request) -> Response:
    job_id = _job_id(request)
    return JSONResponse({"id": job_id, "state": await actions.cancel(request, job_id)})


@answering
async def retry_job(request: Request) -> Response:
    job_id = _job_id(request)
    return JSONResponse({"id": job_id, "state": await actions.retry(request, job_id)})


def _queue_action(*, paused: bool) -> Callable[[Request], Awaitable[Response]]:
    """``POST /queues/{name}/pause`` or ``.../resume``."""

    @answering
    async def post(request: Request) -> Response:
        queue = path_name(request, "name")
        await actions.set_paused(request, queue, paused=paused)
        return JSONResponse({"queue": queue, "paused": paused})

    return post


@answering
async def cluster_status(request: Request) -> Response:
    """The ``raftq status --json`` object."""
    async with web_context(request).client() as client:
        return JSONResponse(await client.status())


async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 document of this API."""
    root = request.scope.get("root_path", "").rstrip("/")  # mounted under a prefix: its URL
    return JSONResponse(openapi_document(version("raftq"), server_url=root or "/"))


async def http_error(request: Request, error: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) as JSON errors under /api/."""
    assert isinstance(error, HTTPException)
    if not route_path(request.scope).startswith("/api/"):
        return PlainTextResponse(error.detail, status_code=error.status_code)
    code = {404: "no_route", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    return error_response(
        error.status_code, code, f"{request.method} {request.url.path}: {error.detail}"
    )


def api_routes() -> list[BaseRoute]:
    prefix = API_PREFIX
    return [
        Route(f"{prefix}/openapi.json", openapi, methods=["GET"]),
        Route(f"{prefix}/jobs", enqueue_jobs, methods=["POST"]),
        Route(f"{prefix}/jobs", list_jobs, methods=["GET"]),
        Route(f"{prefix}/jobs/retry-dead", retry_dead_jobs, methods=["POST"]),
        # Ids and names may hold '/' (sent as %2F, which the server decodes): ":path".
        Route(f"{prefix}/jobs/{{job_id:path}}/cancel", cancel_job, methods=["POST"]),
        Route(f"{prefix}/jobs/{{job_id:path}}/retry", retry_job, methods=["POST"]),
        Route(f"{prefix}/jobs/{{job_id:path}}/history", get_job_history, methods=["GET"]),
        Route(f"{prefix}/jobs/{{job_id:path}}", get_job, methods=["GET"]),
        Route(f"{prefix}/queues/{{name:path}}/pause", _queue_action(paused=True), methods=["POST"]),
        Route(
            f"{prefix}/queues/{{name:path}}/resume", _queue_action(paused=False), methods=["POST"]
        ),
        Route(f"{prefix}/status", cluster_status, methods=["GET"]),
    ]
