"""Rules of issue #17's retry policy, snoozes and progress (docs/jobs.md), on the committed log
as the ``JobOracle`` (``sim.checkers``) applies it:

- a job with its own retry policy is claimed again no sooner than its policy's delay after its
  attempt failed or its lease expired (``raftq.jobs.backoff.policy_delay_ms``, the jitter
  included: the checker computes the same integers);
- a snooze gives its attempt back: in the entry that snoozed it the job's attempts are one
  below the attempt the snooze names; and it is claimed again no sooner than the snooze's delay;
- progress comes only from the current fence: a ``Progress`` value whose (job, fence) is not a
  lease held leaves the job's progress as it was.

``checkers_more`` checks the default backoff of jobs without a policy. Like it, these rules read
the oracle's state after each entry (``observe``) and decode only the entries they need.
"""

from __future__ import annotations

from raftq.jobs.backoff import policy_delay_ms
from raftq.jobs.commands import NOT_SNOOZED, Progress, Report
from raftq.jobs.job import JobState, retry_policy_of
from raftq.raft.types import Entry, EntryKind
from sim.checkers import JobOracle, Violation, command_of

FAILURE_EVENTS = ("failed", "lease expired")
SNOOZES_KEPT = 100_000
"""Snoozes remembered until their job's next claim (a run has a few hundred)."""


class PolicyRules:
    def __init__(self) -> None:
        self._held: set[str] = set()
        self._progress: list[tuple[str, int, bytes | None]] = []
        """The entry's progress values: (job id, fence, the job's progress before it)."""
        self._snoozed: dict[str, tuple[int, int]] = {}
        """Job id -> (when it snoozed, the snooze's delay), until its next claim."""
        self.retries_checked = 0
        self.snoozes_checked = 0
        self.stale_progress_checked = 0
        """Progress values that came under a fence not held (each must change nothing)."""

    def before(self, entry: Entry, oracle: JobOracle) -> None:
        """Call right before ``oracle.apply(entry)``."""
        self._progress = []
        if entry.kind is not EntryKind.COMMAND or b"Progress" not in entry.data:
            return
        command = _decode(entry)
        if isinstance(command, Progress):
            for job_id, fence in zip(command.job_ids, command.fences, strict=True):
                job = oracle.machine.jobs.get(job_id)
                run = job.run if job is not None else None
                self._progress.append((job_id, fence, run.progress if run else None))

    def observe(self, entry: Entry, oracle: JobOracle) -> None:
        """Call right after ``oracle.apply(entry)``."""
        if entry.kind is not EntryKind.COMMAND:
            return
        held = set(oracle.held)
        ended, started = self._held - held, held - self._held
        self._held = held
        snoozed = [job_id for job_id in sorted(ended) if _last_event(oracle, job_id, entry)]
        if snoozed:
            self._check_snoozes(entry, snoozed, oracle)
        for job_id in sorted(started):
            self._check_claim(entry.index, job_id, oracle)
        current = {job_id for job_id, fence, _ in self._progress if _holds(oracle, job_id, fence)}
        for job_id, fence, before in self._progress:
            if job_id not in current:  # a current value beside it may change it
                self._check_progress(entry.index, job_id, fence, before, oracle)

    def _check_snoozes(self, entry: Entry, job_ids: list[str], oracle: JobOracle) -> None:
        command = _decode(entry)
        delays = {}
        if isinstance(command, Report):
            delays = {o.job_id: o.snooze_ms for o in command.outcomes if o.snooze_ms != NOT_SNOOZED}
        for job_id in job_ids:
            job = oracle.machine.jobs[job_id]
            assert job.run is not None
            at_ms, _, attempt = job.run.history[-1][:3]
            self.snoozes_checked += 1
            if job.attempts != attempt - 1:
                raise Violation(
                    "a snooze gives its attempt back",
                    f"index {entry.index}: {job_id} snoozed attempt {attempt} and has "
                    f"{job.attempts} attempts counted; {attempt - 1} belong",
                )
            if job_id not in delays:
                raise Violation(
                    "a snooze gives its attempt back",
                    f"index {entry.index}: {job_id} recorded a snooze no report asked for",
                )
            self._snoozed[job_id] = (at_ms, delays[job_id])
            while len(self._snoozed) > SNOOZES_KEPT:
                del self._snoozed[next(iter(self._snoozed))]

    def _check_claim(self, index: int, job_id: str, oracle: JobOracle) -> None:
        job = oracle.machine.jobs[job_id]
        snooze = self._snoozed.pop(job_id, None)
        history = job.run.history if job.run is not None else []
        if len(history) < 2:
            return
        claimed_at_ms = history[-1][0]
        ended_at_ms, event, ended_attempt = history[-2][:3]
        if event == "snoozed" and snooze is not None and snooze[0] == ended_at_ms:
            self.snoozes_checked += 1
            if claimed_at_ms - ended_at_ms < snooze[1]:
                raise Violation(
                    "a snoozed job waits its snooze",
                    f"index {index}: {job_id} claimed {claimed_at_ms - ended_at_ms} ms after "
                    f"it snoozed for {snooze[1]} ms",
                )
            return
        policy = retry_policy_of(job)
        if policy is None or event not in FAILURE_EVENTS:
            return  # the default backoff: checkers_more; an operator's retry: no wait promised
        self.retries_checked += 1
        delay_ms = policy_delay_ms(job_id, ended_attempt, policy)
        if claimed_at_ms - ended_at_ms < delay_ms:
            raise Violation(
                "retries wait their policy's delay",
                f"index {index}: {job_id} attempt {job.attempts} claimed "
                f"{claimed_at_ms - ended_at_ms} ms after attempt {ended_attempt} {event}; its "
                f"policy ({policy.base_ms}-{policy.max_ms} ms, jitter "
                f"{policy.jitter_percent}%) waits {delay_ms} ms",
            )

    def _check_progress(
        self, index: int, job_id: str, fence: int, before: bytes | None, oracle: JobOracle
    ) -> None:
        job = oracle.machine.jobs.get(job_id)
        run = job.run if job is not None else None
        if job is None or run is None:
            return
        self.stale_progress_checked += 1
        if run.progress != before:
            raise Violation(
                "progress only from the current fence",
                f"index {index}: {job_id}'s progress changed to {run.progress!r} by a value "
                f"under fence {fence}; the job is {job.state.value} under fence {run.fence}",
            )


def _holds(oracle: JobOracle, job_id: str, fence: int) -> bool:
    job = oracle.machine.jobs.get(job_id)
    run = job.run if job is not None else None
    return (
        job is not None and job.state is JobState.RUNNING and run is not None and run.fence == fence
    )


def _last_event(oracle: JobOracle, job_id: str, entry: Entry) -> bool:
    """Whether ``job_id``'s newest event is a snooze recorded by ``entry``."""
    job = oracle.machine.jobs.get(job_id)
    if job is None or job.run is None or not job.run.history:
        return False
    last = job.run.history[-1]
    return last[1] == "snoozed" and last[5] == entry.index


def _decode(entry: Entry) -> object:
    return command_of(entry)
