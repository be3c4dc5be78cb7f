"""The options of one job enqueued from Python, declared once.

``Client.enqueue``, ``SyncClient.enqueue`` and a handler's ``.options()`` all take these
keyword arguments (``**options: Unpack[EnqueueOptions]``), so a new job option is added here
and in ``job_spec`` only, and a type checker sees the same names and types at every door.
Times are in seconds here (the job file's fields are in milliseconds); ``job_spec`` checks
every value with the job file's rules (``raftq.client.jobfile``) and raises ``ConfigError``
naming the option. A name that is not an option raises ``TypeError``, as a misspelt keyword
argument of a plain function would: with ``**options``, Python itself no longer does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

from raftq import limits
from raftq.client.jobfile import (
    DELAY_MS_MAX,
    TIMEOUT_MS_MAX,
    FieldProblem,
    make_spec,
    seconds_to_ms,
)
from raftq.errors import ConfigError
from raftq.jobs.commands import JobSpec


class EnqueueOptions(TypedDict, total=False):
    """Every option of one job; each may be left out (its default is given here)."""

    queue: str
    """Default "default"."""
    priority: int
    """Higher runs first within its queue; default 0."""
    delay: float
    """Seconds before it may run; default 0."""
    max_attempts: int
    """Default 3."""
    timeout: float
    """Seconds one attempt may run before its lease expires; default 30."""
    key: str | None
    """The idempotency key: a second enqueue with it inside the window returns the first
    job's id. Default: ``id`` if given, else a fresh random key (so retries dedupe)."""
    id: str | None
    """The job's id; default: one the cluster assigns."""
    group: str | None
    """The concurrency and rate group it counts in (``set_limit``)."""
    depends_on: Sequence[str]
    """Ids of jobs it waits for: it runs once they have succeeded."""
    on_parent_failure: str
    """"cancel" (default): cancelled when a parent ends dead or cancelled; "run": runs once
    every parent has ended, however."""
    unique_while_active: str | None
    """A key: while another job with it is pending, waiting or running, nothing is enqueued
    and that job's id is returned."""
    backoff: float | None
    """Seconds: the first retry's backoff (the job's own retry policy)."""
    backoff_max: float | None
    """Seconds: the longest backoff."""
    jitter_percent: int | None
    """0 to 100: how much of each backoff is random."""


OPTION_NAMES: tuple[str, ...] = tuple(EnqueueOptions.__annotations__)


def job_spec(type: str, payload: object, options: EnqueueOptions) -> JobSpec:
    """The job ``Client.enqueue(type, payload, **options)`` sends, every value checked."""
    unknown = [name for name in options if name not in OPTION_NAMES]
    if unknown:
        raise TypeError(
            f"{unknown[0]!r} is not an option of a job (options: {', '.join(OPTION_NAMES)})"
        )
    job_id = options.get("id")
    key = options.get("key")
    try:
        return make_spec(
            type=type,
            payload=payload,
            queue=options.get("queue", "default"),
            priority=options.get("priority", 0),
            delay_ms=seconds_to_ms(
                "delay", options.get("delay", 0.0), lowest_ms=0, highest_ms=DELAY_MS_MAX
            ),
            max_attempts=options.get("max_attempts", 3),
            timeout_ms=seconds_to_ms(
                "timeout", options.get("timeout", 30.0), lowest_ms=1, highest_ms=TIMEOUT_MS_MAX
            ),
            key=key if key is not None else (job_id or ""),
            id=job_id or "",
            group=options.get("group") or "",
            depends_on=options.get("depends_on", ()),
            on_parent_failure=options.get("on_parent_failure", "cancel"),
            unique_while_active=options.get("unique_while_active") or "",
            backoff_ms=_policy_ms("backoff", options.get("backoff")),
            backoff_max_ms=_policy_ms("backoff_max", options.get("backoff_max")),
            jitter_percent=options.get("jitter_percent"),
        )
    except FieldProblem as problem:  # a duration's own error names its option already
        raise ConfigError(f"{problem.field}: {problem}") from None


def job_object(type: str, payload: object, options: EnqueueOptions) -> dict[str, Any]:
    """The same job as a job-file object (``enqueue_many``), checked as ``job_spec`` checks
    it; fields at their defaults are left out, ``payload`` is kept as given."""
    spec = job_spec(type, payload, options)
    job: dict[str, Any] = {
        "type": spec.type,
        "payload": payload,
        "queue": spec.queue,
        "priority": spec.priority,
        "delay_ms": spec.delay_ms,
        "max_attempts": spec.max_attempts,
        "timeout_ms": spec.timeout_ms,
    }
    optional = {
        "id": spec.id,
        "key": spec.key if spec.key != spec.id else "",  # a job file's key defaults to its id
        "group": spec.group,
        "depends_on": list(spec.depends_on),
        "unique_while_active": spec.unique_while_active,
    }
    job.update((name, value) for name, value in optional.items() if value)
    if spec.on_parent_failure != "cancel":
        job["on_parent_failure"] = spec.on_parent_failure
    policy = spec.retry_policy
    if policy is not None:
        job["backoff_ms"] = policy.base_ms
        job["backoff_max_ms"] = policy.max_ms
        job["jitter_percent"] = policy.jitter_percent
    return job


def _policy_ms(name: str, seconds: float | None) -> int | None:
    if seconds is None:
        return None
    return seconds_to_ms(name, seconds, lowest_ms=0, highest_ms=limits.RETRY_POLICY_MS_MAX)


__all__ = ["OPTION_NAMES", "EnqueueOptions", "job_object", "job_spec"]
