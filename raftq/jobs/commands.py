"""The commands the job state machine applies, and the results it answers with.

Every command carries ``now_ms``, stamped by the leader when it proposes; the state machine
keeps ``now = max(previous, now_ms)``, so time never runs backwards even across a failover
to a leader whose clock is behind. Results are not replicated: they answer the client whose
command it was. A command that cannot be carried out returns ``Rejected``; ``apply`` never
raises for a command that decoded.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
from cattrs.gen import make_dict_unstructure_fn, override

from raftq import codec, limits
from raftq.jobs.backoff import RetryPolicy
from raftq.jobs.limits_table import limit_problem


def _text(limit: int) -> Any:
    return attrs.validators.and_(attrs.validators.instance_of(str), attrs.validators.max_len(limit))


def _name(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= limits.NAME_CHARS_MAX:
        raise ValueError(f"{attribute.name} must be 1 to {limits.NAME_CHARS_MAX} characters")


_non_negative = attrs.validators.ge(0)
_positive = attrs.validators.gt(0)
_job_id = _text(limits.JOB_ID_CHARS_MAX)


def _names(limit: int) -> Any:
    return attrs.validators.deep_iterable(
        member_validator=_name, iterable_validator=attrs.validators.max_len(limit)
    )


def _parent_id(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= limits.JOB_ID_CHARS_MAX:
        raise ValueError(f"{attribute.name}: a job id of 1 to {limits.JOB_ID_CHARS_MAX} characters")


TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
"""A W3C ``traceparent`` header value: version, trace id, parent span id, flags."""


def _traceparent(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or (value and not TRACEPARENT.fullmatch(value)):
        raise ValueError(f"{attribute.name} must be a W3C traceparent or empty")


def _parent_ids(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple) or len(value) > limits.PARENTS_MAX:
        raise ValueError(f"{attribute.name}: at most {limits.PARENTS_MAX} job ids")
    for each in value:
        _parent_id(instance, attribute, each)


def _job_ids(limit: int) -> Any:
    return attrs.validators.deep_iterable(
        member_validator=_job_id, iterable_validator=attrs.validators.max_len(limit)
    )


PRIORITY_LIMIT = 1_000_000
"""A job's priority is from minus this to this."""

MAX_ATTEMPTS_LIMIT = 1000

ON_PARENT_FAILURE = ("cancel", "run")


@codec.register_positional
@attrs.frozen(kw_only=True)
class JobSpec:
    """One job to enqueue, as the client described it."""

    id: str = attrs.field(validator=_text(limits.JOB_ID_CHARS_MAX))
    """Client-given id, or "" to derive one from the log index."""
    type: str = attrs.field(validator=_name)
    payload: bytes = attrs.field(validator=attrs.validators.max_len(limits.JOB_PAYLOAD_BYTES_MAX))
    queue: str = attrs.field(validator=_name)
    priority: int = attrs.field(
        validator=[attrs.validators.ge(-PRIORITY_LIMIT), attrs.validators.le(PRIORITY_LIMIT)]
    )
    delay_ms: int = attrs.field(validator=_non_negative)
    max_attempts: int = attrs.field(validator=[_positive, attrs.validators.le(MAX_ATTEMPTS_LIMIT)])
    timeout_ms: int = attrs.field(validator=_positive)
    key: str = attrs.field(validator=_text(limits.JOB_KEY_CHARS_MAX))
    """Idempotency key, or "" for none."""
    group: str = codec.added("", validator=_text(limits.NAME_CHARS_MAX))
    """Concurrency and rate group (``raftq limit set --group``), or "" for none."""
    depends_on: tuple[str, ...] = codec.added((), validator=_parent_ids)
    """Ids of jobs enqueued before this one (earlier in the same Enqueue counts) that must
    succeed before it runs; it waits until then (``raftq.jobs.dependencies``)."""
    on_parent_failure: str = codec.added(
        "cancel", validator=attrs.validators.in_(ON_PARENT_FAILURE)
    )
    """When a parent ends dead or cancelled: "cancel" this job too, or "run" it anyway once
    every parent has finished."""
    unique_while_active: str = codec.added("", validator=_text(limits.JOB_KEY_CHARS_MAX))
    """A key that refuses another job with it while this one is active (pending, waiting,
    running, or failed and awaiting its retry), and is free again once it finishes; "" for
    none. Unlike ``key``, whose window outlives the job (``DEDUPE_WINDOW_MS``)."""
    retry_policy: RetryPolicy | None = codec.added(  # noqa: RUF009 (an attrs field)
        None, validator=attrs.validators.optional(attrs.validators.instance_of(RetryPolicy))
    )
    """The job's own backoff, or None for the default (``raftq.jobs.backoff``)."""
    traceparent: str = codec.added("", validator=_traceparent)
    """The W3C trace context of the span that enqueued it (``raftq.tracing``), "" for none:
    the worker's spans for the job join that trace."""


def _accept_job_spec(values: list[Any]) -> tuple[Any, ...] | None:
    """``JobSpec``'s fields as its validators (and the codec's strict types) would take them,
    or None to leave the value to them: the fast decode of every job of every ``Enqueue``
    (``codec.accept_valid``). A job with its own retry policy takes the usual way."""
    (
        job_id,
        job_type,
        payload,
        queue,
        priority,
        delay_ms,
        max_attempts,
        timeout_ms,
        key,
        group,
        depends_on,
        on_parent_failure,
        unique_while_active,
        retry_policy,
        traceparent,
    ) = values
    valid = (
        type(job_id) is str
        and len(job_id) <= limits.JOB_ID_CHARS_MAX
        and type(job_type) is str
        and 0 < len(job_type) <= limits.NAME_CHARS_MAX
        and type(payload) is bytes
        and len(payload) <= limits.JOB_PAYLOAD_BYTES_MAX
        and type(queue) is str
        and 0 < len(queue) <= limits.NAME_CHARS_MAX
        and type(priority) is int
        and -PRIORITY_LIMIT <= priority <= PRIORITY_LIMIT
        and type(delay_ms) is int
        and 0 <= delay_ms <= codec.INT_MAX
        and type(max_attempts) is int
        and 0 < max_attempts <= MAX_ATTEMPTS_LIMIT
        and type(timeout_ms) is int
        and 0 < timeout_ms <= codec.INT_MAX
        and type(key) is str
        and len(key) <= limits.JOB_KEY_CHARS_MAX
        and type(group) is str
        and len(group) <= limits.NAME_CHARS_MAX
        and type(depends_on) is list
        and type(on_parent_failure) is str
        and on_parent_failure in ON_PARENT_FAILURE
        and type(unique_while_active) is str
        and len(unique_while_active) <= limits.JOB_KEY_CHARS_MAX
        and retry_policy is None
        and type(traceparent) is str
        and (not traceparent or TRACEPARENT.fullmatch(traceparent) is not None)
    )
    if not valid:
        return None
    if depends_on and (
        len(depends_on) > limits.PARENTS_MAX
        or not all(
            type(parent) is str and 0 < len(parent) <= limits.JOB_ID_CHARS_MAX
            for parent in depends_on
        )
    ):
        return None
    values[10] = tuple(depends_on)  # the one field whose plain form is not its value
    return tuple(values)


codec.accept_valid(JobSpec, _accept_job_spec)


def enqueue_bytes(jobs: tuple[JobSpec, ...]) -> int:
    """What one Enqueue carries, near enough to its encoded size to bound it."""
    return sum(
        len(job.payload)
        + len(job.id)
        + len(job.key)
        + len(job.type)
        + len(job.queue)
        + len(job.group)
        + 32
        for job in jobs
    ) + sum(
        sum(map(len, job.depends_on)) + 8 * len(job.depends_on) + len(job.unique_while_active)
        for job in jobs
        if job.depends_on or job.unique_while_active
    )


def _enqueue_size(instance: object, attribute: attrs.Attribute[Any], jobs: Any) -> None:
    if enqueue_bytes(jobs) > limits.COMMAND_BYTES_MAX:
        raise ValueError(
            f"an enqueue of {enqueue_bytes(jobs)} bytes exceeds {limits.COMMAND_BYTES_MAX}: "
            "send the jobs in smaller batches"
        )


@codec.register
@attrs.frozen(kw_only=True)
class Enqueue:
    now_ms: int
    jobs: tuple[JobSpec, ...] = attrs.field(
        validator=[attrs.validators.max_len(limits.JOBS_PER_ENQUEUE_MAX), _enqueue_size]
    )


@codec.register
@attrs.frozen(kw_only=True)
class Claim:
    """Lease up to ``max_jobs`` jobs to ``claimer``. Empty ``types`` or ``queues`` mean any.

    ``hold_ms``: how long the claimer may keep a job before it starts it (prefetch). Each lease
    runs until ``now + hold_ms + timeout_ms``, so a job that waits its turn in the claimer's
    buffer still has its whole timeout once it starts; the claimer releases (``Release``) what
    it has not started by then."""

    now_ms: int
    claimer: str = attrs.field(validator=_name)
    types: tuple[str, ...] = attrs.field(default=(), validator=_names(limits.CLAIM_NAMES_MAX))
    queues: tuple[str, ...] = attrs.field(default=(), validator=_names(limits.CLAIM_NAMES_MAX))
    max_jobs: int = attrs.field(
        default=1, validator=[_positive, attrs.validators.le(limits.CLAIM_JOBS_MAX)]
    )
    hold_ms: int = attrs.field(
        default=0, validator=[_non_negative, attrs.validators.le(limits.CLAIM_HOLD_MS_MAX)]
    )


@codec.register
@attrs.frozen(kw_only=True)
class Complete:
    now_ms: int
    job_id: str = attrs.field(validator=_job_id)
    fence: int
    result: bytes = attrs.field(
        default=b"", validator=attrs.validators.max_len(limits.JOB_RESULT_BYTES_MAX)
    )


@codec.register
@attrs.frozen(kw_only=True)
class Fail:
    now_ms: int
    job_id: str = attrs.field(validator=_job_id)
    fence: int
    error: str = attrs.field(default="", validator=_text(limits.JOB_ERROR_CHARS_MAX))
    retryable: bool = True


def _report_size(instance: object, attribute: attrs.Attribute[Any], outcomes: Any) -> None:
    size = sum(
        len(each.job_id) + len(each.result) + len(each.error) + len(each.progress) + 16
        for each in outcomes
    )
    if size > limits.COMMAND_BYTES_MAX:
        raise ValueError(f"a report of {size} bytes exceeds {limits.COMMAND_BYTES_MAX}")


NOT_SNOOZED = -1
"""``Outcome.snooze_ms`` of an outcome that is not a snooze."""


@codec.register_positional
@attrs.frozen(kw_only=True)
class Outcome:
    """One job's end of an attempt, inside a ``Report``: like ``Complete`` when ``succeeded``
    (with ``result``), else like ``Fail`` (with ``error`` and ``retryable``)."""

    job_id: str = attrs.field(validator=_job_id)
    fence: int
    succeeded: bool
    result: bytes = attrs.field(
        default=b"", validator=attrs.validators.max_len(limits.JOB_RESULT_BYTES_MAX)
    )
    error: str = attrs.field(default="", validator=_text(limits.JOB_ERROR_CHARS_MAX))
    retryable: bool = True
    snooze_ms: int = codec.added(
        NOT_SNOOZED,
        validator=[attrs.validators.ge(NOT_SNOOZED), attrs.validators.le(limits.SNOOZE_MS_MAX)],
    )
    """0 or more: the handler snoozed (``raise raftq.Retry(delay_s=...)``): the job runs
    again this many ms from now and the attempt is given back (not ``succeeded``)."""
    progress: bytes = codec.added(
        b"", validator=attrs.validators.max_len(limits.JOB_PROGRESS_BYTES_MAX)
    )
    """The attempt's latest progress not sent yet (JSON; b"" for none): stored under the
    same fence just before the outcome is settled, so a job's last value is not lost."""


def _accept_outcome(values: list[Any]) -> tuple[Any, ...] | None:
    """``Outcome``'s fields as its validators would take them, or None (``_accept_job_spec``):
    the fast decode of every outcome of every ``Report``."""
    job_id, fence, succeeded, result, error, retryable, snooze_ms, progress = values
    valid = (
        type(job_id) is str
        and len(job_id) <= limits.JOB_ID_CHARS_MAX
        and type(fence) is int
        and codec.INT_MIN <= fence <= codec.INT_MAX
        and type(succeeded) is bool
        and type(result) is bytes
        and len(result) <= limits.JOB_RESULT_BYTES_MAX
        and type(error) is str
        and len(error) <= limits.JOB_ERROR_CHARS_MAX
        and type(retryable) is bool
        and type(snooze_ms) is int
        and NOT_SNOOZED <= snooze_ms <= limits.SNOOZE_MS_MAX
        and type(progress) is bytes
        and len(progress) <= limits.JOB_PROGRESS_BYTES_MAX
    )
    return tuple(values) if valid else None


codec.accept_valid(Outcome, _accept_outcome)


@codec.register
@attrs.frozen(kw_only=True)
class Report:
    """A worker's outcomes for many jobs in one entry: each is applied on its own, in order,
    exactly as the ``Complete`` or ``Fail`` it stands for (one refused does not stop the
    others). A worker batches what finished while its previous report was in flight."""

    now_ms: int
    outcomes: tuple[Outcome, ...] = attrs.field(
        validator=[attrs.validators.max_len(limits.REPORT_OUTCOMES_MAX), _report_size]
    )


@codec.register
@attrs.frozen(kw_only=True)
class Extend:
    """Renew leases: each (job_ids[i], fences[i]) still held runs until at least ``until_ms``."""

    now_ms: int
    job_ids: tuple[str, ...] = attrs.field(validator=_job_ids(limits.CLAIM_JOBS_MAX))
    fences: tuple[int, ...]
    until_ms: int

    def __attrs_post_init__(self) -> None:
        if len(self.job_ids) != len(self.fences):
            raise ValueError("job_ids and fences differ in length")


@codec.register
@attrs.frozen(kw_only=True)
class Release:
    """Give back leases whose jobs never started (a worker's prefetched jobs, on stop or when
    they waited past the claim's ``hold_ms``): each (job_ids[i], fences[i]) still held goes
    back to pending, in its old place, as if never claimed (no attempt counted). A stale fence
    changes nothing (``Rejected("lease_lost")``)."""

    now_ms: int
    job_ids: tuple[str, ...] = attrs.field(validator=_job_ids(limits.CLAIM_JOBS_MAX))
    fences: tuple[int, ...]

    def __attrs_post_init__(self) -> None:
        if len(self.job_ids) != len(self.fences):
            raise ValueError("job_ids and fences differ in length")


@codec.register
@attrs.frozen(kw_only=True)
class ExtendAll:
    """A new leader's first command: no lease expires within ``by_ms`` of now."""

    now_ms: int
    by_ms: int = attrs.field(validator=_non_negative)


@codec.register
@attrs.frozen(kw_only=True)
class ExpireLeases:
    now_ms: int


@codec.register
@attrs.frozen(kw_only=True)
class Cancel:
    now_ms: int
    job_id: str = attrs.field(validator=_job_id)


@codec.register
@attrs.frozen(kw_only=True)
class Retry:
    now_ms: int
    job_id: str = attrs.field(validator=_job_id)


@codec.register
@attrs.frozen(kw_only=True)
class RetryDead:
    """Retry dead jobs of ``queue`` and ``type`` ("" for any), at most ``max_jobs``, oldest
    death first, as ``Retry`` would each: one entry for an operator's "retry all"."""

    now_ms: int
    queue: str = attrs.field(default="", validator=_text(limits.NAME_CHARS_MAX))
    type: str = attrs.field(default="", validator=_text(limits.NAME_CHARS_MAX))
    max_jobs: int = attrs.field(
        default=limits.RETRY_DEAD_JOBS_MAX,
        validator=[_positive, attrs.validators.le(limits.RETRY_DEAD_JOBS_MAX)],
    )


@codec.register
@attrs.frozen(kw_only=True)
class PauseQueue:
    now_ms: int
    queue: str = attrs.field(validator=_name)


@codec.register
@attrs.frozen(kw_only=True)
class ResumeQueue:
    now_ms: int
    queue: str = attrs.field(validator=_name)


@codec.register
@attrs.frozen(kw_only=True)
class Purge:
    """Forget finished jobs (succeeded, dead, cancelled) that finished before ``before_ms``."""

    now_ms: int
    before_ms: int


@codec.register
@attrs.frozen(kw_only=True)
class SetLimit:
    """Set (or replace) the concurrency and rate limit of a queue or group
    (``raftq.jobs.limits_table``): at most ``concurrency`` of its jobs running (0: no such
    limit), at most ``rate`` handed out per ``window_ms`` (0: none). Lowering one never
    preempts a running job: new claims wait until fewer run."""

    now_ms: int
    scope: str
    name: str
    concurrency: int = 0
    rate: int = 0
    window_ms: int = 0

    def __attrs_post_init__(self) -> None:
        problem = limit_problem(self.scope, self.name, self.concurrency, self.rate, self.window_ms)
        if problem:
            raise ValueError(problem)


@codec.register
@attrs.frozen(kw_only=True)
class RemoveLimit:
    """Remove the limit of a queue or group: its waiting jobs may run at once."""

    now_ms: int
    scope: str = attrs.field(validator=attrs.validators.in_(("queue", "group")))
    name: str = attrs.field(validator=_name)


def _progress_values(instance: object, attribute: attrs.Attribute[Any], values: Any) -> None:
    for value in values:
        if not isinstance(value, bytes) or not 0 < len(value) <= limits.JOB_PROGRESS_BYTES_MAX:
            raise ValueError(f"a progress value must be 1 to {limits.JOB_PROGRESS_BYTES_MAX} bytes")


@codec.register
@attrs.frozen(kw_only=True)
class Progress:
    """Handlers' progress: each (job_ids[i], fences[i]) still held now shows ``values[i]``
    (JSON bytes), replacing its attempt's previous value. A stale fence changes nothing
    (``Rejected("lease_lost")``). A worker sends one for all its jobs at most every
    ``limits.PROGRESS_INTERVAL_MS``."""

    now_ms: int
    job_ids: tuple[str, ...] = attrs.field(validator=_job_ids(limits.PROGRESS_JOBS_MAX))
    fences: tuple[int, ...]
    values: tuple[bytes, ...] = attrs.field(validator=_progress_values)

    def __attrs_post_init__(self) -> None:
        if not len(self.job_ids) == len(self.fences) == len(self.values):
            raise ValueError("job_ids, fences and values differ in length")


CATCH_UP_MODES = ("latest", "all")
"""What a schedule's new leader fires of the slots missed while there was none: the latest one
only, or every one (oldest first, ``limits.SCHEDULE_SLOTS_PER_FIRING_MAX`` per entry)."""


def _every_ms(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value and not limits.SCHEDULE_EVERY_MS_MIN <= value <= limits.SCHEDULE_EVERY_MS_MAX:
        raise ValueError(
            f"every_ms must be {limits.SCHEDULE_EVERY_MS_MIN} to {limits.SCHEDULE_EVERY_MS_MAX}"
        )


@codec.register
@attrs.frozen(kw_only=True)
class ScheduleSpec:
    """A schedule as its user wrote it: a cron expression (in time zone ``tz``, "" for UTC)
    or a fixed interval ``every_ms`` (slots at the multiples of it since the Unix epoch),
    exactly one of the two; each slot fires a job of ``type`` with ``payload`` on ``queue``.
    Whether ``cron`` and ``tz`` parse is checked where they are read (``raftq.slots``): the
    state machine never reads a clock or a time zone database."""

    name: str = attrs.field(validator=_name)
    type: str = attrs.field(validator=_name)
    payload: bytes = attrs.field(
        default=b"", validator=attrs.validators.max_len(limits.SCHEDULE_PAYLOAD_BYTES_MAX)
    )
    queue: str = attrs.field(default="default", validator=_name)
    cron: str = attrs.field(default="", validator=_text(limits.SCHEDULE_CRON_CHARS_MAX))
    tz: str = attrs.field(default="", validator=_text(limits.NAME_CHARS_MAX))
    every_ms: int = attrs.field(default=0, validator=[_non_negative, _every_ms])
    catch_up: str = attrs.field(default="latest", validator=attrs.validators.in_(CATCH_UP_MODES))
    priority: int = attrs.field(
        default=0, validator=[attrs.validators.ge(-1_000_000), attrs.validators.le(1_000_000)]
    )
    max_attempts: int = attrs.field(default=3, validator=[_positive, attrs.validators.le(1000)])
    timeout_ms: int = attrs.field(default=30_000, validator=_positive)
    group: str = attrs.field(default="", validator=_text(limits.NAME_CHARS_MAX))
    """The fired jobs' own options, as a job file gives them (its defaults): a job that runs
    longer than 30 s needs its ``timeout_ms``, and a ``group`` limited to one keeps a slow job
    from overlapping the next slot's."""

    def __attrs_post_init__(self) -> None:
        if bool(self.cron) == bool(self.every_ms):
            raise ValueError("a schedule has either a cron expression or an interval, not both")
        if self.tz and not self.cron:
            raise ValueError("a time zone applies to a cron expression only")


@codec.register
@attrs.frozen(kw_only=True)
class PutSchedule:
    """Add a schedule, or replace the one of that name (its slots then restart after this
    entry's time; its last fired slot stays, so no slot fires twice). Answered ``Done`` with
    state added, updated or unchanged (the same definition: nothing changes)."""

    now_ms: int
    schedule: ScheduleSpec


@codec.register
@attrs.frozen(kw_only=True)
class RemoveSchedule:
    now_ms: int
    name: str = attrs.field(validator=_name)


def _slots(instance: object, attribute: attrs.Attribute[Any], slots: Any) -> None:
    if not 0 < len(slots) <= limits.SCHEDULE_SLOTS_PER_FIRING_MAX:
        raise ValueError(f"a firing has 1 to {limits.SCHEDULE_SLOTS_PER_FIRING_MAX} slots")
    if any(not isinstance(slot, int) or slot < 0 for slot in slots):
        raise ValueError("slots are Unix times in ms")


@codec.register
@attrs.frozen(kw_only=True)
class FireSchedule:
    """The leader's scheduler fires ``slots`` (ascending Unix times in ms, each due by its
    clock) of schedule ``name`` as it was at ``revision``: one job each, keyed
    ``schedule:NAME:SLOT_MS``. The state machine refuses a slot not after the schedule's last
    fired one (at most once, ever), after ``now_ms``, or of a revision since changed."""

    now_ms: int
    name: str = attrs.field(validator=_name)
    revision: int
    slots: tuple[int, ...] = attrs.field(validator=_slots)


Command = (
    Enqueue
    | Claim
    | Complete
    | Fail
    | Report
    | Extend
    | Release
    | ExtendAll
    | ExpireLeases
    | Cancel
    | Retry
    | RetryDead
    | PauseQueue
    | ResumeQueue
    | Purge
    | SetLimit
    | RemoveLimit
    | Progress
    | PutSchedule
    | RemoveSchedule
    | FireSchedule
)
codec.register_union(Command)


# --- results ------------------------------------------------------------------------------------


@codec.register
@attrs.frozen(kw_only=True)
class Rejected:
    """The command changed nothing. ``code``: not_found, lease_lost, finished, running,
    not_retryable, id_taken, too_many_names; for schedules: too_many_schedules, stale, fired,
    early, not_a_slot (``raftq.jobs.schedules``)."""

    code: str
    message: str


@codec.register
@attrs.frozen(kw_only=True)
class Enqueued:
    """``created`` is False when the idempotency key was seen within the dedupe window:
    ``job_id`` is then the original job's, and nothing was enqueued. (A reused job id without
    such a key is ``Rejected("id_taken")``.)"""

    job_id: str
    created: bool


@codec.register
@attrs.frozen(kw_only=True)
class EnqueueResult:
    jobs: tuple[Enqueued | Rejected, ...]


@codec.register
@attrs.frozen(kw_only=True)
class Lease:
    """A claimed job, as its worker needs it."""

    job_id: str
    type: str
    queue: str
    payload: bytes
    attempt: int
    fence: int
    expires_ms: int
    timeout_ms: int
    traceparent: str = ""
    """The job's trace context (``JobSpec.traceparent``), "" for none."""
    enqueued_ms: int = 0
    """When a traced job was enqueued (the leader's clock): where its wait span begins; 0 for
    a job without a trace context."""


# Every claim carries a lease per job: the tracing fields cost no byte on a job without a
# trace context (a claim of plain jobs is the bytes it was before tracing).
codec.converter.register_unstructure_hook(
    Lease,
    make_dict_unstructure_fn(
        Lease,
        codec.converter,
        traceparent=override(omit_if_default=True),
        enqueued_ms=override(omit_if_default=True),
    ),
)


@codec.register
@attrs.frozen(kw_only=True)
class ClaimResult:
    leases: tuple[Lease, ...]


@codec.register
@attrs.frozen(kw_only=True)
class Done:
    """A command on one job went through; ``state`` is the job's state after it."""

    job_id: str
    state: str


@codec.register
@attrs.frozen(kw_only=True)
class ExtendResult:
    outcomes: tuple[Done | Rejected, ...]


@codec.register
@attrs.frozen(kw_only=True)
class ReleaseResult:
    """Per released lease, in order: ``Done`` (the job's state after) or why not."""

    outcomes: tuple[Done | Rejected, ...]


@codec.register
@attrs.frozen(kw_only=True)
class ReportResult:
    """Per ``Report`` outcome, in order: ``Done`` or why it was refused."""

    outcomes: tuple[Done | Rejected, ...]


@codec.register
@attrs.frozen(kw_only=True)
class ProgressResult:
    """Per ``Progress`` value, in order: ``Done`` (stored) or why not."""

    outcomes: tuple[Done | Rejected, ...]


@codec.register
@attrs.frozen(kw_only=True)
class Count:
    """How many jobs a bulk command touched."""

    count: int


Result = (
    EnqueueResult
    | ClaimResult
    | Done
    | ExtendResult
    | ReleaseResult
    | ReportResult
    | Count
    | Rejected
    | ProgressResult
)
codec.register_union(Result)
