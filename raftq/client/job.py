"""``raftq.Job``: a job as the client sees it, payload and result decoded from JSON."""

from __future__ import annotations

import time
from typing import Any

import attrs

from raftq.client.jobfile import decode_json
from raftq.jobs.job import JobView

FINISHED_STATES = frozenset({"succeeded", "dead", "cancelled"})


def utc_text(ms: int) -> str:
    """A job's time in milliseconds as people read it, in UTC to the millisecond
    ("2026-12-07 19:04:12.910"); "" for 0 (not yet)."""
    if not ms:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"


@attrs.frozen(kw_only=True)
class HistoryEntry:
    at_ms: int
    event: str
    attempt: int
    node: str
    fence: int
    index: int = 0
    """The log index of the entry that caused the event (0: unknown)."""
    term: int = 0
    error: str = ""
    """The error of the attempt the event ended (its end), "" if it ended none."""


@attrs.frozen(kw_only=True)
class Job:
    """A job as the cluster holds it (CONTRACT.md ``raftq job ID --json``), with its payload
    and result decoded from JSON."""

    id: str
    type: str
    queue: str
    state: str
    priority: int
    attempts: int
    max_attempts: int
    payload: Any
    result: Any
    error: str
    enqueued_ms: int
    run_at_ms: int
    timeout_ms: int
    finished_ms: int
    history: tuple[HistoryEntry, ...]
    group: str | None = None
    """The concurrency and rate group it counts in (``raftq limit``), None for none."""
    depends_on: tuple[str, ...] = ()
    """The jobs it waits for (waited for): it runs once they have succeeded."""
    on_parent_failure: str = "cancel"
    """"cancel" (the default) or "run": what it does when a parent ends dead or cancelled."""
    parents_left: int = 0
    """While ``waiting``: how many parents are still to finish."""
    unique_while_active: str = ""
    """The key it holds while active ("" for none)."""
    progress: Any = None
    """The latest progress its last attempt reported (``job.progress``), None if none."""
    snoozes: int = 0
    """Times its handler snoozed (``raise raftq.Retry``) since it was enqueued or retried."""
    retry_policy: dict[str, int] | None = None
    """Its own backoff, in job-file fields (``backoff_ms``, ``backoff_max_ms``,
    ``jitter_percent``); None: the default."""

    @property
    def finished(self) -> bool:
        """Succeeded, dead or cancelled: nothing will happen to it unless retried."""
        return self.state in FINISHED_STATES

    @classmethod
    def from_view(cls, view: JobView) -> Job:
        return cls(
            id=view.id,
            type=view.type,
            queue=view.queue,
            state=view.state,
            priority=view.priority,
            attempts=view.attempts,
            max_attempts=view.max_attempts,
            payload=decode_json(view.payload),
            result=decode_json(view.result),
            error=view.error,
            enqueued_ms=view.enqueued_ms,
            run_at_ms=view.run_at_ms,
            timeout_ms=view.timeout_ms,
            finished_ms=view.finished_ms,
            history=tuple(
                HistoryEntry(
                    at_ms=e.at_ms,
                    event=e.event,
                    attempt=e.attempt,
                    node=e.node,
                    fence=e.fence,
                    index=e.index,
                    term=e.term,
                    error=e.error,
                )
                for e in view.history
            ),
            group=view.group or None,
            depends_on=view.depends_on,
            on_parent_failure=view.on_parent_failure,
            parents_left=view.parents_left,
            unique_while_active=view.unique_while_active,
            progress=decode_json(view.progress),
            snoozes=view.snoozes,
            retry_policy=None
            if view.retry_policy is None
            else {
                "backoff_ms": view.retry_policy.base_ms,
                "backoff_max_ms": view.retry_policy.max_ms,
                "jitter_percent": view.retry_policy.jitter_percent,
            },
        )

    def to_json(self) -> dict[str, Any]:
        """The ``raftq job ID --json`` object."""
        return attrs.asdict(self, recurse=True, value_serializer=_tuples_as_lists)


def _tuples_as_lists(instance: Any, attribute: Any, value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
