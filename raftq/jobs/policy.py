"""Per-job retry policy, snoozes and progress: the state machine's part (docs/jobs.md "Retry
policy, snooze and fail", "Progress").

Pure: functions the machine (``raftq.jobs.machine``) calls from small hooks, on its own state,
so that every node decides the same from the same log.

- A job may carry a ``RetryPolicy`` (``JobSpec.retry_policy``), kept in ``Job.extra``: its
  failed attempts wait that policy's delay (``raftq.jobs.backoff.policy_delay_ms``).
- A snooze (a report's outcome with ``snooze_ms`` >= 0, from ``raise raftq.Retry``) puts the
  job back to pending ``snooze_ms`` from now and gives its attempt back: ``attempts`` is as
  before the claim, so a snooze never brings a job closer to ``max_attempts``. Snoozes are
  counted per job; the one past ``limits.JOB_SNOOZES_MAX`` ends it dead (``SNOOZED_TOO_OFTEN``).
- Progress (``Progress``) replaces the running attempt's latest value, under its fence; a claim
  clears it, so a job shows the progress of the attempt its fence names.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from raftq import limits
from raftq.errors import DecodeError
from raftq.jobs.backoff import RetryPolicy
from raftq.jobs.commands import Done, JobSpec, Outcome, Progress, ProgressResult, Rejected
from raftq.jobs.job import Job, JobExtra, JobRun, JobState

if TYPE_CHECKING:
    from raftq.jobs.machine import JobStateMachine

SNOOZED_TOO_OFTEN = (
    f"snoozed {limits.JOB_SNOOZES_MAX} times (raftq.Retry), the most a job may: it is dead; "
    "retry it to give it as many snoozes again"
)
"""The error of a job whose snooze went past ``limits.JOB_SNOOZES_MAX``."""

_extra = operator.attrgetter("extra")
_run = operator.attrgetter("run")

SECTIONS = ("jobs.retry_policy", "jobs.progress", "jobs.snoozes")
"""The snapshot sections this module writes and reads back, in this order."""


def attach(job: Job, spec: JobSpec) -> None:
    """At enqueue: the spec's retry policy onto the new job (nothing for a plain job)."""
    if spec.retry_policy is not None:
        job.extra = JobExtra()
        job.extra.retry_policy = spec.retry_policy


def new_attempt(machine: JobStateMachine, run: JobRun) -> None:
    """At a claim: the previous attempt's progress goes."""
    if run.progress:
        machine.held_bytes -= len(run.progress)
        run.progress = b""


def snoozed(machine: JobStateMachine, job_id: str, fence: int, delay_ms: int) -> Done | Rejected:
    """The held attempt snoozed: pending again in ``delay_ms``, its attempt given back."""
    assert delay_ms >= 0, delay_ms
    job = machine._held(job_id, fence)
    if isinstance(job, Rejected):
        return job
    run = job.run
    assert run is not None
    assert job.attempts > 0, (job.id, job.attempts)
    if run.cancel_requested:
        machine._finish(job, JobState.CANCELLED, "cancelled")
    elif run.snoozes >= limits.JOB_SNOOZES_MAX:
        machine._keep_output(job, run.result, SNOOZED_TOO_OFTEN)
        machine._finish(job, JobState.DEAD, "snoozed too often", run.error)
    else:
        run.snoozes += 1
        machine._record(job, "snoozed", run.claimer)  # names the attempt given back
        job.attempts -= 1
        machine._set_state(job, JobState.PENDING)
        machine._schedule(job, machine.now_ms + delay_ms)
    return Done(job_id=job.id, state=job.state.value)


def operator_retried(job: Job) -> None:
    """An operator's retry of a dead job: a full set of snoozes again, as of attempts."""
    if job.run is not None:
        job.run.snoozes = 0


def progressed(machine: JobStateMachine, command: Progress) -> ProgressResult:
    values = zip(command.job_ids, command.fences, command.values, strict=True)
    return ProgressResult(outcomes=tuple(_progress(machine, *value) for value in values))


def last_progress(machine: JobStateMachine, outcome: Outcome) -> None:
    """An outcome's last progress value, stored under its fence before the outcome is
    settled (refused, or past the held bytes: the outcome stands, without it)."""
    if outcome.progress:
        _progress(machine, outcome.job_id, outcome.fence, outcome.progress)


def _progress(machine: JobStateMachine, job_id: str, fence: int, value: bytes) -> Done | Rejected:
    job = machine._held(job_id, fence)
    if isinstance(job, Rejected):
        return job
    run = job.run
    assert run is not None
    held = machine.held_bytes - len(run.progress)
    if held + len(value) > machine.held_bytes_max:
        return Rejected(code="full", message="the cluster holds its maximum bytes")
    run.progress = value
    machine.held_bytes = held + len(value)
    return Done(job_id=job.id, state=job.state.value)


# --- snapshot sections ----------------------------------------------------------------------------


def sections(jobs: list[Job]) -> Iterator[tuple[str, list[list[Any]]]]:
    """This module's non-empty sections, each ``[[job id, value], ...]`` in enqueue order."""
    # compress: the loops over every job run in C; Python steps only jobs that hold some.
    policies: list[list[Any]] = [
        [job.id, [policy.base_ms, policy.max_ms, policy.jitter_percent]]
        for job in itertools.compress(jobs, map(_extra, jobs))
        if (policy := job.extra.retry_policy) is not None  # type: ignore[union-attr]
    ]
    runs: list[tuple[str, Any]] = [
        (job.id, job.run) for job in itertools.compress(jobs, map(_run, jobs))
    ]
    progress: list[list[Any]] = [[job_id, run.progress] for job_id, run in runs if run.progress]
    snoozes: list[list[Any]] = [[job_id, run.snoozes] for job_id, run in runs if run.snoozes]
    for name, rows in zip(SECTIONS, (policies, progress, snoozes), strict=True):
        if rows:
            yield name, rows


def restore_sections(machine: JobStateMachine, sections: dict[str, Any]) -> None:
    """Read back (and take out of ``sections``) what ``sections`` wrote; ``DecodeError`` for
    rows that are not what it writes."""
    for job, value in _rows(machine, sections, "jobs.retry_policy"):
        try:
            policy = RetryPolicy(base_ms=value[0], max_ms=value[1], jitter_percent=value[2])
        except (TypeError, ValueError, IndexError, KeyError) as error:
            raise DecodeError(f"job {job.id!r}: bad retry policy {value!r}: {error}") from None
        job.extra = job.extra or JobExtra()
        job.extra.retry_policy = policy
    for job, value in _rows(machine, sections, "jobs.progress"):
        run = _run_of(job, "progress")
        if not isinstance(value, bytes) or not 0 < len(value) <= limits.JOB_PROGRESS_BYTES_MAX:
            raise DecodeError(
                f"job {job.id!r}: progress is not 1 to {limits.JOB_PROGRESS_BYTES_MAX} bytes"
            )
        run.progress = value
        machine.held_bytes += len(value)
    for job, value in _rows(machine, sections, "jobs.snoozes"):
        run = _run_of(job, "snoozes")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise DecodeError(f"job {job.id!r}: snoozes {value!r} is not a positive count")
        run.snoozes = value


def _rows(
    machine: JobStateMachine, sections: dict[str, Any], name: str
) -> Iterator[tuple[Job, Any]]:
    rows = sections.pop(name, [])
    if not isinstance(rows, list):
        raise DecodeError(f"snapshot section {name!r} is not a list")
    for row in rows:
        if not isinstance(row, list) or len(row) != 2 or not isinstance(row[0], str):
            raise DecodeError(f"snapshot section {name!r}: a row is not [job id, value]")
        job = machine.jobs.get(row[0])
        if job is None:
            raise DecodeError(f"snapshot section {name!r} names an unknown job {row[0]!r}")
        yield job, row[1]


def _run_of(job: Job, what: str) -> JobRun:
    if job.run is None:
        raise DecodeError(f"job {job.id!r} has {what} but never ran")
    return job.run
