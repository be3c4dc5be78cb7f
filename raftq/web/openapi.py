"""The OpenAPI 3.1 document of the JSON API, served at ``/api/v1/openapi.json``.

Written by hand next to the routes (``api.py``), and checked against them by a test in both
directions: every route is described, every description is a route."""

from __future__ import annotations

from typing import Any

from raftq import limits
from raftq.client.jobfile import (
    DELAY_MS_MAX,
    MAX_ATTEMPTS_MAX,
    PRIORITY_MAX,
    PRIORITY_MIN,
    TIMEOUT_MS_MAX,
)
from raftq.jobs.commands import CATCH_UP_MODES
from raftq.jobs.job import JobState

JSON = "application/json"
NAME = {"type": "string", "minLength": 1, "maxLength": limits.NAME_CHARS_MAX}

ERROR_DESCRIPTIONS = {
    "400": "Bad input: the message names the parameter, or the index and field of the job",
    "401": "The cluster has a secret: send Authorization: Bearer TOKEN (code: unauthorized, "
    "token_expired, token_without_expiry)",
    "403": "Refused: read-only mode, or an action (POST, PUT, DELETE) from another site",
    "404": "No such job (schedule, limit)",
    "409": "The job's state forbids it (code: finished, not_retryable, id_taken, ...)",
    "413": "The body is larger than the API reads",
    "415": "The body is not application/json",
    "503": "No quorum, or the cluster is busy: retry later (the same request is safe)",
}

JOB_STATES = [state.value for state in JobState]
SCHEDULE_LISTED = [
    "name", "tz", "next_ms", "last_fired_ms", "type", "queue", "payload", "catch_up",
    "changed_ms", "priority", "max_attempts", "timeout_s", "group",
]  # fmt: skip
"""The fields every schedule of ``raftq schedule list --json`` has (and cron or every_s)."""
JOB_FIELDS = [
    "id",
    "type",
    "queue",
    "state",
    "priority",
    "attempts",
    "max_attempts",
    "payload",
    "result",
    "error",
    "enqueued_ms",
    "history",
]


def _errors(*statuses: str) -> dict[str, Any]:
    return {
        status: {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status in statuses
    }


def _ok(status: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {status: {"description": description, "content": {JSON: {"schema": schema}}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _path_parameter(name: str, description: str) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1}
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"required": True, "description": description, "content": {JSON: {"schema": schema}}}


def _action(
    summary: str, operation_id: str, responses: dict[str, Any], **more: Any
) -> dict[str, Any]:
    return {
        "summary": summary,
        "operationId": operation_id,
        "responses": {**responses, **_errors("400", "401", "403", "503")},
        **more,
    }


def _schemas() -> dict[str, Any]:
    name = {"type": "string", "minLength": 1, "maxLength": limits.NAME_CHARS_MAX}
    integer = {"type": "integer"}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                }
            },
        },
        "JobSpec": {
            "type": "object",
            "description": "A job in the job-file format (CONTRACT.md); only payload is required",
            "required": ["payload"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "maxLength": limits.JOB_ID_CHARS_MAX},
                "type": {**name, "default": "noop"},
                "payload": {"description": "any JSON value"},
                "queue": {**name, "default": "default"},
                "priority": {
                    "type": "integer",
                    "minimum": PRIORITY_MIN,
                    "maximum": PRIORITY_MAX,
                    "default": 0,
                },
                "delay_ms": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": DELAY_MS_MAX,
                    "default": 0,
                },
                "max_attempts": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_ATTEMPTS_MAX,
                    "default": 3,
                },
                "timeout_ms": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": TIMEOUT_MS_MAX,
                    "default": 30_000,
                },
                "key": {"type": "string", "maxLength": limits.JOB_KEY_CHARS_MAX},
                "group": {
                    **name,
                    "description": "the concurrency and rate group (raftq limit set --group)",
                },
                "depends_on": {
                    "type": "array",
                    "items": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": limits.JOB_ID_CHARS_MAX,
                    },
                    "maxItems": limits.PARENTS_MAX,
                    "uniqueItems": True,
                    "description": "ids of jobs that must succeed first; it waits until then",
                },
                "on_parent_failure": {
                    "type": "string",
                    "enum": ["cancel", "run"],
                    "default": "cancel",
                    "description": "when a parent ends dead or cancelled: cancel it, or run it",
                },
                "unique_while_active": {
                    "type": "string",
                    "maxLength": limits.JOB_KEY_CHARS_MAX,
                    "description": "a key no other active job may hold; a duplicate is not "
                    "enqueued and the holder's id is returned",
                },
                "backoff_ms": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": limits.RETRY_POLICY_MS_MAX,
                    "description": "its own retry backoff's base (default 1000)",
                },
                "backoff_max_ms": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": limits.RETRY_POLICY_MS_MAX,
                    "description": "its own retry backoff's cap, at least the base "
                    "(default 3600000)",
                },
                "jitter_percent": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 100,
                    "description": "up to this much is added to each retry's wait (default 25)",
                },
            },
        },
        "HistoryEntry": {
            "type": "object",
            "required": ["at_ms", "event", "attempt", "node", "fence"],
            "properties": {
                "at_ms": integer,
                "event": {"type": "string"},
                "attempt": integer,
                "node": {"type": "string"},
                "fence": {"type": "integer", "description": "log index of the claim"},
                "index": {
                    "type": "integer",
                    "description": "log index of the entry that caused the event (0: unknown)",
                },
                "term": {"type": "integer", "description": "that entry's term"},
                "error": {
                    "type": "string",
                    "maxLength": limits.JOB_HISTORY_ERROR_CHARS_MAX,
                    "description": "the error of the attempt this event ended (its last "
                    f"{limits.JOB_HISTORY_ERROR_CHARS_MAX} characters); empty if none",
                },
            },
        },
        "StoryEvent": {
            "type": "object",
            "required": [
                "index",
                "term",
                "at_ms",
                "event",
                "attempt",
                "fence",
                "worker",
                "leader",
                "detail",
                "source",
            ],
            "properties": {
                "index": {
                    "type": "integer",
                    "description": "the log index of the entry; 0 for an event a snapshot "
                    "kept without one",
                },
                "term": integer,
                "at_ms": integer,
                "event": {
                    "type": "string",
                    "description": "what the entry did to the job (enqueued, claimed, "
                    "lease expired, succeeded, ...), or refused: <command> for a report, "
                    "renewal, release or progress under a stale fence",
                },
                "attempt": integer,
                "fence": integer,
                "worker": {"type": "string"},
                "leader": {
                    "type": "string",
                    "description": "the node that led the entry's term and appended it; "
                    "empty for terms older than the newest snapshot",
                },
                "detail": {"type": "string", "description": "an attempt's error, or why refused"},
                "source": {
                    "type": "string",
                    "enum": ["log", "snapshot"],
                    "description": "log: replayed from an entry; snapshot: one of the events "
                    "the newest snapshot kept",
                },
            },
        },
        "JobStory": {
            "type": "object",
            "description": "The raftq job ID --history --json object",
            "required": ["job_id", "events", "complete_from", "through", "dropped"],
            "properties": {
                "job_id": {"type": "string"},
                "events": {"type": "array", "items": _ref("StoryEvent")},
                "complete_from": {
                    "type": "integer",
                    "description": "every entry from this index on was read (the newest "
                    "snapshot's index + 1)",
                },
                "through": {"type": "integer", "description": "the last index read"},
                "dropped": {
                    "type": "integer",
                    "description": f"oldest events left out past {limits.JOB_STORY_EVENTS_MAX}",
                },
            },
        },
        "Job": {
            "type": "object",
            "description": "The raftq job ID --json object",
            "required": JOB_FIELDS,
            "properties": {
                "id": {"type": "string"},
                "type": {"type": "string"},
                "queue": {"type": "string"},
                "state": {"type": "string", "enum": JOB_STATES},
                "priority": integer,
                "attempts": integer,
                "max_attempts": integer,
                "payload": {},
                "result": {},
                "error": {"type": ["string", "null"]},
                "enqueued_ms": integer,
                "history": {"type": "array", "items": _ref("HistoryEntry")},
                "group": {
                    "type": ["string", "null"],
                    "description": "its concurrency and rate group; null for none",
                },
                "depends_on": {"type": "array", "items": {"type": "string"}},
                "on_parent_failure": {"type": "string", "enum": ["cancel", "run"]},
                "parents_left": {
                    "type": "integer",
                    "description": "while waiting: parents still to finish",
                },
                "unique_while_active": {"type": "string"},
                "progress": {
                    "description": "the latest progress its last attempt reported (a JSON "
                    f"value of at most {limits.JOB_PROGRESS_BYTES_MAX} bytes); null if none"
                },
                "snoozes": {
                    "type": "integer",
                    "description": "times its handler snoozed (raftq.Retry) since it was "
                    "enqueued or retried",
                },
                "retry_policy": {
                    "type": ["object", "null"],
                    "description": "its own retry backoff; null: the default",
                    "properties": {
                        "backoff_ms": integer,
                        "backoff_max_ms": integer,
                        "jitter_percent": integer,
                    },
                },
            },
        },
        **_scheduling_schemas(),
        "JobPage": {
            "type": "object",
            "required": ["jobs", "next_cursor"],
            "properties": {
                "jobs": {"type": "array", "items": _ref("Job")},
                "next_cursor": {
                    "type": ["string", "null"],
                    "description": "pass as cursor for the next page; null on the last",
                },
            },
        },
        "JobState": {
            "type": "object",
            "required": ["id", "state"],
            "properties": {"id": {"type": "string"}, "state": {"type": "string"}},
        },
        "QueueState": {
            "type": "object",
            "required": ["queue", "paused"],
            "properties": {"queue": {"type": "string"}, "paused": {"type": "boolean"}},
        },
        "Status": {
            "type": "object",
            "description": "The raftq status --json object (CONTRACT.md)",
            "required": ["cluster", "jobs", "queues"],
            "properties": {
                "cluster": {
                    "type": "object",
                    "required": ["leader", "term", "commit_index", "nodes"],
                    "properties": {
                        "leader": {"type": ["string", "null"]},
                        "term": integer,
                        "commit_index": integer,
                        "nodes": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "jobs": {"type": "object", "additionalProperties": integer},
                "queues": {"type": "object", "additionalProperties": {"type": "object"}},
            },
        },
    }


def _scheduling_schemas() -> dict[str, Any]:
    """A schedule and a limit as their CLI's ``list --json`` prints them, and the part of
    each that a PUT sets."""
    name = {"type": "string", "minLength": 1, "maxLength": limits.NAME_CHARS_MAX}
    nullable_ms = {"type": ["integer", "null"], "description": "Unix ms; null for none"}
    every_s = {
        "type": "number",
        "minimum": limits.SCHEDULE_EVERY_MS_MIN / 1000,
        "maximum": limits.SCHEDULE_EVERY_MS_MAX / 1000,
        "description": "a fixed interval: slots at its multiples since the Unix epoch",
    }
    schedule_set = {
        "type": {**name, "description": "the type of the job each slot fires"},
        "cron": {
            "type": "string",
            "maxLength": limits.SCHEDULE_CRON_CHARS_MAX,
            "description": "a cron expression (or every_s, not both)",
        },
        "tz": {
            "type": ["string", "null"],
            "maxLength": limits.NAME_CHARS_MAX,
            "description": "the cron expression's IANA time zone; UTC if absent",
        },
        "every_s": every_s,
        "payload": {"description": "any JSON value, copied into each job fired"},
        "queue": {**name, "default": "default"},
        "catch_up": {
            "type": "string",
            "enum": list(CATCH_UP_MODES),
            "default": "latest",
            "description": "after an outage: fire the latest missed slot, or every one",
        },
        "priority": {
            "type": "integer",
            "minimum": PRIORITY_MIN,
            "maximum": PRIORITY_MAX,
            "default": 0,
            "description": "the fired jobs' priority",
        },
        "max_attempts": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_ATTEMPTS_MAX,
            "default": 3,
            "description": "the fired jobs' attempts",
        },
        "timeout_s": {
            "type": "number",
            "minimum": 0.001,
            "maximum": TIMEOUT_MS_MAX / 1000,
            "default": 30,
            "description": "seconds one attempt of a fired job may run",
        },
        "group": {
            "type": ["string", "null"],
            "maxLength": limits.NAME_CHARS_MAX,
            "description": "the fired jobs' concurrency and rate group; null for none",
        },
    }
    limit_set = {
        "concurrency": {
            "type": "integer",
            "minimum": 0,
            "maximum": limits.LIMIT_CONCURRENCY_MAX,
            "description": "at most this many of its jobs running at once (0: no such limit)",
        },
        "rate": {
            "type": "integer",
            "minimum": 0,
            "maximum": limits.LIMIT_RATE_COUNT_MAX,
            "description": "at most this many started per window_s (0: no such limit)",
        },
        "window_s": {
            "type": "number",
            "minimum": 0,
            "maximum": limits.LIMIT_RATE_WINDOW_MS_MAX / 1000,
            "description": "the rate's sliding window in seconds",
        },
    }
    count = {"type": "integer", "minimum": 0}
    return {
        "ScheduleSpec": {
            "type": "object",
            "description": "What a PUT sets: cron (and tz) or every_s, and type; name, if "
            "given, must be the path's",
            "required": ["type"],
            "additionalProperties": False,
            "properties": {"name": name, **schedule_set},
        },
        "Schedule": {
            "type": "object",
            "description": "A schedule as raftq schedule list --json prints it",
            "required": SCHEDULE_LISTED,
            "properties": {
                "name": name,
                **schedule_set,
                "next_ms": {**nullable_ms, "description": "its next slot (Unix ms)"},
                "last_fired_ms": {
                    **nullable_ms,
                    "description": "the last slot it fired (Unix ms); null before the first",
                },
                "changed_ms": {
                    "type": "integer",
                    "description": "when it was added or last changed: its slots start after",
                },
            },
        },
        "ScheduleState": {
            "type": "object",
            "required": ["name", "state"],
            "properties": {
                "name": {"type": "string"},
                "state": {"type": "string", "enum": ["added", "updated", "unchanged", "removed"]},
            },
        },
        "LimitSpec": {
            "type": "object",
            "description": "What a PUT sets: concurrency, or rate and window_s, or both; "
            "scope and name, if given, must be the path's",
            "additionalProperties": False,
            "properties": {"scope": {"enum": ["queue", "group"]}, "name": name, **limit_set},
        },
        "Limit": {
            "type": "object",
            "description": "A limit as raftq limit list --json prints it",
            "required": ["scope", "name", "concurrency", "rate", "window_s"],
            "properties": {
                "scope": {"type": "string", "enum": ["queue", "group"]},
                "name": {"type": "string"},
                **limit_set,
                "running": {**count, "description": "its jobs running now"},
                "pending": {**count, "description": "its jobs waiting to run"},
                "started_in_window": {**count, "description": "started in the rate's window"},
            },
        },
        "LimitState": {
            "type": "object",
            "required": ["scope", "name"],
            "properties": {
                "scope": {"type": "string", "enum": ["queue", "group"]},
                "name": {"type": "string"},
                "state": {"type": "string", "enum": ["removed"]},
            },
        },
    }


def _scheduling_paths() -> dict[str, Any]:
    schedule_name = _path_parameter("name", "the schedule's name, percent-encoded ('/' as %2F)")
    scope = {
        "name": "scope",
        "in": "path",
        "required": True,
        "description": "queue or group",
        "schema": {"type": "string", "enum": ["queue", "group"]},
    }
    limit_name = _path_parameter("name", "the queue's or group's name, percent-encoded")

    def listing(summary: str, operation_id: str, key: str, item: str) -> dict[str, Any]:
        body = {
            "type": "object",
            "required": [key],
            "properties": {key: {"type": "array", "items": _ref(item)}},
        }
        return {
            "summary": summary,
            "operationId": operation_id,
            "responses": {**_ok("200", "Every one, by name", body), **_errors("400", "401", "503")},
        }

    return {
        "/api/v1/schedules": {
            "get": listing(
                "Every schedule, with its next and last slot",
                "listSchedules",
                "schedules",
                "Schedule",
            ),
        },
        "/api/v1/schedules/{name}": {
            "put": _action(
                "Add a schedule, or replace the one of that name (its slots restart after)",
                "putSchedule",
                {
                    **_ok("200", "Replaced: updated, or unchanged", _ref("ScheduleState")),
                    **_ok("201", "Added", _ref("ScheduleState")),
                    **_errors("413", "415"),
                },
                parameters=[schedule_name],
                requestBody=_json_body(_ref("ScheduleSpec"), "the schedule"),
            ),
            "delete": _action(
                "Remove a schedule (the jobs it fired stay)",
                "deleteSchedule",
                {**_ok("200", "Removed", _ref("ScheduleState")), **_errors("404")},
                parameters=[schedule_name],
            ),
        },
        "/api/v1/limits": {
            "get": listing(
                "Every limit, with what runs and waits under it", "listLimits", "limits", "Limit"
            ),
        },
        "/api/v1/limits/{scope}/{name}": {
            "put": _action(
                "Set or replace the limit of a queue or a group",
                "putLimit",
                {**_ok("200", "Set", _ref("Limit")), **_errors("413", "415")},
                parameters=[scope, limit_name],
                requestBody=_json_body(_ref("LimitSpec"), "the limit"),
            ),
            "delete": _action(
                "Lift the limit of a queue or a group",
                "deleteLimit",
                {**_ok("200", "Removed", _ref("LimitState")), **_errors("404")},
                parameters=[scope, limit_name],
            ),
        },
    }


def openapi_document(version: str, server_url: str = "/") -> dict[str, Any]:
    """The document; ``server_url``: where the app is mounted, so that clients generated from
    it reach ``{server_url}/api/v1/...``."""
    job_id = _path_parameter("job_id", "the job's id, percent-encoded ('/' as %2F)")
    queue_name = _path_parameter("name", "the queue's name, percent-encoded ('/' as %2F)")
    page_parameters = [
        _query("state", "only jobs in this state", {"type": "string", "enum": JOB_STATES}),
        _query("queue", "only jobs of this queue", NAME),
        _query("type", "only jobs of this type", NAME),
        _query(
            "limit",
            "jobs per page (a page may hold fewer and still have a next_cursor)",
            {"type": "integer", "minimum": 1, "maximum": limits.JOBS_PAGE_MAX, "default": 100},
        ),
        _query("cursor", "the previous page's next_cursor", {"type": "string"}),
        _query(
            "order",
            "enqueue order, oldest or newest first",
            {"type": "string", "enum": ["oldest", "newest"], "default": "oldest"},
        ),
    ]
    many = {
        "type": "array",
        "items": _ref("JobSpec"),
        "minItems": 1,
        "maxItems": limits.JOBS_PER_ENQUEUE_MAX,
    }
    one_or_many = {"oneOf": [_ref("JobSpec"), many]}
    retry_dead_body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "queue": {"type": "string", "minLength": 1, "maxLength": limits.NAME_CHARS_MAX},
            "type": {"type": "string", "minLength": 1, "maxLength": limits.NAME_CHARS_MAX},
            "limit": {"type": "integer", "minimum": 1, "maximum": limits.RETRY_DEAD_JOBS_MAX},
        },
    }
    paths: dict[str, Any] = {
        "/api/v1/jobs": {
            "post": _action(
                "Enqueue one job or a list of jobs, as one command (all or nothing on bad input)",
                "enqueueJobs",
                {
                    **_ok(
                        "201",
                        "Enqueued (or deduped by key): the ids, in order",
                        {
                            "type": "object",
                            "required": ["ids"],
                            "properties": {"ids": {"type": "array", "items": {"type": "string"}}},
                        },
                    ),
                    **_errors("409", "413", "415"),
                },
                requestBody=_json_body(one_or_many, "a job-file object, or a list of them"),
            ),
            "get": {
                "summary": "A page of jobs, filtered, by cursor",
                "operationId": "listJobs",
                "parameters": page_parameters,
                "responses": {
                    **_ok("200", "One page", _ref("JobPage")),
                    **_errors("400", "401", "503"),
                },
            },
        },
        "/api/v1/jobs/retry-dead": {
            "post": _action(
                "Retry the dead jobs of a queue and type (any if not given), up to limit",
                "retryDeadJobs",
                {
                    **_ok(
                        "200",
                        "How many were retried; fewer than limit: none is left",
                        {
                            "type": "object",
                            "required": ["retried"],
                            "properties": {"retried": {"type": "integer"}},
                        },
                    ),
                    **_errors("413", "415"),
                },
                requestBody=_json_body(retry_dead_body, "filters and a bound; {} for all"),
            )
        },
        "/api/v1/jobs/{job_id}": {
            "get": {
                "summary": "One job with its full history",
                "operationId": "getJob",
                "parameters": [job_id],
                "responses": {**_ok("200", "The job", _ref("Job")), **_errors("401", "404", "503")},
            }
        },
        "/api/v1/jobs/{job_id}/history": {
            "get": {
                "summary": "The job's whole story from the log: every entry that touched it",
                "operationId": "getJobHistory",
                "parameters": [job_id],
                "responses": {
                    **_ok("200", "Its story", _ref("JobStory")),
                    **_errors("401", "404", "503"),
                },
            }
        },
        "/api/v1/jobs/{job_id}/cancel": {
            "post": _action(
                "Cancel a job (a running one is cancelled when its worker next reports)",
                "cancelJob",
                {**_ok("200", "Its state after", _ref("JobState")), **_errors("404", "409")},
                parameters=[job_id],
            )
        },
        "/api/v1/jobs/{job_id}/retry": {
            "post": _action(
                "Run a dead or failed job again now",
                "retryJob",
                {**_ok("200", "Its state after", _ref("JobState")), **_errors("404", "409")},
                parameters=[job_id],
            )
        },
        "/api/v1/queues/{name}/pause": {
            "post": _action(
                "Stop handing out the queue's jobs (running ones finish)",
                "pauseQueue",
                _ok("200", "Paused", _ref("QueueState")),
                parameters=[queue_name],
            )
        },
        "/api/v1/queues/{name}/resume": {
            "post": _action(
                "Hand out the queue's jobs again",
                "resumeQueue",
                _ok("200", "Resumed", _ref("QueueState")),
                parameters=[queue_name],
            )
        },
        **_scheduling_paths(),
        "/api/v1/status": {
            "get": {
                "summary": "The cluster: nodes, leader, job and queue counts",
                "operationId": "getStatus",
                "responses": {**_ok("200", "The status", _ref("Status")), **_errors("401", "503")},
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "getOpenApi",
                "security": [],
                "responses": _ok("200", "OpenAPI 3.1", {"type": "object"}),
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "raftq HTTP JSON API",
            "version": version,
            "description": "A thin layer over the raftq client: every change goes through the "
            "cluster's replicated log. Actions are POSTs, PUTs and DELETEs; see docs/web.md "
            "and docs/security.md.",
        },
        "servers": [{"url": server_url}],
        "security": [{"token": []}, {}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "USER.EXPIRES.MAC, from raftq web --print-token USER "
                    "[--ttl 30d] (clusters with a secret); refused once EXPIRES (Unix seconds) "
                    "has passed",
                }
            },
        },
    }
