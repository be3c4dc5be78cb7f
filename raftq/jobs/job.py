"""One job's record inside the state machine, and its read-only view for queries.

Records are plain ``__slots__`` objects, not attrs values: a million pending jobs must fit in a
few hundred megabytes, so the fields every job needs live on ``Job`` and the ones only a job
that has run needs (lease, outcome, history) on a ``JobRun`` created at its first claim.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
from cattrs.gen import make_dict_unstructure_fn, override

from raftq import codec
from raftq.jobs.backoff import RetryPolicy


class JobState(enum.Enum):
    PENDING = "pending"
    """Waiting to run: due now (``ready``), or at ``run_at_ms``."""
    WAITING = "waiting"
    """Blocked on dependencies: some job of its ``depends_on`` has not finished yet
    (``raftq.jobs.dependencies``). Not to be confused with a pending job whose ``run_at_ms``
    is still to come."""
    RUNNING = "running"
    """Leased to a worker until ``run.lease_expires_ms``."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """The last attempt failed; it runs again at ``run_at_ms``."""
    DEAD = "dead"
    """Out of attempts (or failed as not retryable): in the dead-letter list."""
    CANCELLED = "cancelled"

    # Identity hashing in C: Enum's own __hash__ is Python code, and states key the counts
    # on every transition. Safe: nothing iterates states in hash order.
    __hash__ = object.__hash__


FINISHED = frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED})

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.PENDING, JobState.RUNNING, JobState.CANCELLED}),
    JobState.WAITING: frozenset({JobState.PENDING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {JobState.PENDING, JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD, JobState.CANCELLED}
    ),
    JobState.FAILED: frozenset({JobState.PENDING, JobState.CANCELLED}),
    JobState.DEAD: frozenset({JobState.PENDING}),
    JobState.SUCCEEDED: frozenset(),
    JobState.CANCELLED: frozenset(),
}
"""Every state a job may move to from each state; the state machine refuses any other move
(``JobStateMachine._set_state``). Pending to pending: a delayed job comes due. Running to
pending: a worker gives back a prefetched job it never started (``Release``). Running to
dead: its last attempt failed. Dead to pending: an operator's retry. Succeeded and cancelled
are final: nothing (not a late report, not a lease expiry) brings such a job back. Waiting
is only ever a job's first state (its parents unfinished at its enqueue); waiting to pending:
its last parent finished (succeeded, or ended otherwise and it runs anyway); waiting to
cancelled: a parent ended dead or cancelled, or an operator cancelled it. Nothing enters
waiting later: a parent retried after its child was released or cancelled does not recall
the child."""


class JobRun:
    """What a job accumulates once it has been claimed."""

    __slots__ = (
        "cancel_requested",
        "claimer",
        "error",
        "fence",
        "finished_ms",
        "history",
        "lease_expires_ms",
        "progress",
        "result",
        "snoozes",
    )

    def __init__(self) -> None:
        self.fence = 0
        self.lease_expires_ms = 0
        self.claimer = ""
        self.result = b""
        self.error = ""
        self.finished_ms = 0
        self.cancel_requested = False
        self.history: list[tuple[int, str, int, str, int, int, int, str]] = []
        """(at_ms, event, attempt, node, fence, log index, term, error), oldest first,
        bounded: the log entry (index and term) whose command caused each event, and the end
        of the error of the attempt it ended ("" for none)."""
        self.progress = b""
        """The running attempt's latest progress (JSON bytes; "" for none): a claim clears it,
        so it always belongs to the attempt ``fence`` names (the last one, once finished)."""
        self.snoozes = 0
        """Snoozes since the job was enqueued or last retried by an operator
        (``limits.JOB_SNOOZES_MAX``)."""


class JobExtra:
    """The fields of a job that most jobs leave at their defaults, on ``Job.extra`` (None for a
    plain job: one slot for all of them, so a million plain jobs pay eight bytes each; a
    million jobs must fit in ~500 MB, issue #16)."""

    __slots__ = (
        "depends_on",
        "group",
        "parents_left",
        "retry_policy",
        "run_if_parent_fails",
        "traceparent",
        "unique_key",
    )

    def __init__(self) -> None:
        self.group: str | None = None
        """The job's concurrency and rate group (``raftq.jobs.limits_table``), None: none."""
        self.retry_policy: RetryPolicy | None = None
        """The job's own backoff (``raftq.jobs.backoff``); None: the default."""
        self.depends_on: tuple[str, ...] = ()
        """The ids of the jobs this one waits for (``raftq.jobs.dependencies``)."""
        self.run_if_parent_fails = False
        """Run once every parent has finished, however; else (the default) be cancelled when
        one ends dead or cancelled."""
        self.parents_left = 0
        """While waiting: how many parents have yet to finish in a way that lets it run.
        Derived from the parents' states (rebuilt on restore), never written to snapshots."""
        self.unique_key = ""
        """A key no other job may hold while this one is active (pending, waiting, running or
        failed and awaiting its retry); "" for none."""
        self.traceparent = ""
        """The W3C trace context it was enqueued under (``raftq.tracing``); "" for none."""


def extra_of(job: Job) -> JobExtra:
    """``job.extra``, made if the job has none yet."""
    extra = job.extra
    if extra is None:
        extra = job.extra = JobExtra()
    return extra


class Job:
    __slots__ = (
        "attempts",
        "enqueued_ms",
        "extra",
        "id",
        "max_attempts",
        "payload",
        "priority",
        "queue",
        "ready",
        "run",
        "run_at_ms",
        "seq",
        "state",
        "timeout_ms",
        "type",
    )

    def __init__(
        self,
        *,
        id: str,
        type: str,
        queue: str,
        priority: int,
        payload: bytes,
        max_attempts: int,
        timeout_ms: int,
        run_at_ms: int,
        enqueued_ms: int,
        seq: int,
    ) -> None:
        self.id = id
        self.type = type
        self.queue = queue
        self.priority = priority
        self.payload = payload
        self.max_attempts = max_attempts
        self.timeout_ms = timeout_ms
        self.run_at_ms = run_at_ms
        self.enqueued_ms = enqueued_ms
        self.seq = seq
        """Enqueue order across the whole cluster: the last tie-breaker when claiming."""
        self.state = JobState.PENDING
        self.attempts = 0
        self.ready = False
        """In a ready queue (claimable now), as opposed to waiting for ``run_at_ms``."""
        self.run: JobRun | None = None
        self.extra: JobExtra | None = None
        """What few jobs set (a group, dependencies, a retry policy, ...): one slot for all
        of them, None for a plain job, so that a million plain jobs pay one pointer each."""


def retry_policy_of(job: Job) -> RetryPolicy | None:
    return job.extra.retry_policy if job.extra is not None else None


@codec.register
@attrs.frozen(kw_only=True)
class HistoryEvent:
    at_ms: int
    event: str
    attempt: int
    node: str
    fence: int
    index: int = 0
    """The log index of the entry that caused the event (0: not recorded, in snapshots
    written before version 3)."""
    term: int = 0
    """That entry's term."""
    error: str = ""
    """The error of the attempt this event ended (its last ``JOB_HISTORY_ERROR_CHARS_MAX``
    characters), "" for an event that ended none or a success."""


@codec.register
@attrs.frozen(kw_only=True)
class JobView:
    """A job as queries return it (CONTRACT.md, ``raftq job ID --json``)."""

    id: str
    type: str
    queue: str
    state: str
    priority: int
    attempts: int
    max_attempts: int
    payload: bytes
    result: bytes
    error: str
    enqueued_ms: int
    run_at_ms: int
    timeout_ms: int
    fence: int
    lease_expires_ms: int
    finished_ms: int
    history: tuple[HistoryEvent, ...]
    group: str = ""
    """The job's concurrency and rate group, "" for none."""
    depends_on: tuple[str, ...] = ()
    """The jobs it waits for (or waited for), in the order given."""
    on_parent_failure: str = "cancel"
    """"cancel" or "run": what it does when a parent ends dead or cancelled."""
    parents_left: int = 0
    """While waiting: parents still to finish."""
    unique_while_active: str = ""
    """The key it holds while active, "" for none."""
    progress: bytes = b""
    """The latest progress its last attempt reported (JSON bytes), b"" for none."""
    retry_policy: RetryPolicy | None = None
    snoozes: int = 0


# A view of a job that uses none of them carries no key for #17's fields: the same bytes as
# before they existed (replies stay as small; the simulator's seeds replay byte for byte).
codec.converter.register_unstructure_hook(
    JobView,
    make_dict_unstructure_fn(
        JobView,
        codec.converter,
        group=override(omit_if_default=True),
        depends_on=override(omit_if_default=True),
        on_parent_failure=override(omit_if_default=True),
        parents_left=override(omit_if_default=True),
        unique_while_active=override(omit_if_default=True),
        progress=override(omit_if_default=True),
        retry_policy=override(omit_if_default=True),
        snoozes=override(omit_if_default=True),
    ),
)


def view_of(job: Job) -> JobView:
    run = job.run
    history = [HistoryEvent(at_ms=job.enqueued_ms, event="enqueued", attempt=0, node="", fence=0)]
    if run is not None:
        history += [
            HistoryEvent(
                at_ms=at,
                event=event,
                attempt=attempt,
                node=node,
                fence=fence,
                index=index,
                term=term,
                error=error,
            )
            for at, event, attempt, node, fence, index, term, error in run.history
        ]
    return JobView(
        id=job.id,
        type=job.type,
        queue=job.queue,
        state=job.state.value,
        priority=job.priority,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        payload=job.payload,
        result=run.result if run else b"",
        error=run.error if run else "",
        enqueued_ms=job.enqueued_ms,
        run_at_ms=job.run_at_ms,
        timeout_ms=job.timeout_ms,
        fence=run.fence if run else 0,
        lease_expires_ms=run.lease_expires_ms if run else 0,
        finished_ms=run.finished_ms if run else 0,
        history=tuple(history),
        group=_group(job),
        **_extra_view(job.extra),
        progress=run.progress if run else b"",
        retry_policy=retry_policy_of(job),
        snoozes=run.snoozes if run else 0,
    )


def _group(job: Job) -> str:
    extra = job.extra
    return "" if extra is None or extra.group is None else extra.group


def _extra_view(extra: JobExtra | None) -> dict[str, Any]:
    if extra is None:
        return {}
    return {
        "depends_on": extra.depends_on,
        "on_parent_failure": "run" if extra.run_if_parent_fails else "cancel",
        "parents_left": extra.parents_left,
        "unique_while_active": extra.unique_key,
    }
