"""The rules of ``sim.checkers_policy`` fire on the logs they forbid (written by the machine
with one of the mutants planted, by monkeypatch), and stay quiet on the logs the job machine
writes (each test feeds committed entries as the simulator does)."""

from __future__ import annotations

import pytest

from raftq.jobs import machine as machine_module
from raftq.jobs import policy as policy_module
from raftq.jobs.backoff import RetryPolicy, policy_delay_ms
from raftq.jobs.commands import (
    Claim,
    Done,
    Enqueue,
    Fail,
    JobSpec,
    Outcome,
    Progress,
    Report,
)
from raftq.jobs.job import JobState
from sim.checkers import Violation
from sim.checkers_policy import PolicyRules
from tests.sim.committed_log import CommittedLog

POLICY = RetryPolicy(base_ms=5_000, max_ms=20_000, jitter_percent=50)


class _Log(CommittedLog[PolicyRules]):
    def __init__(self) -> None:
        super().__init__(PolicyRules())

    def claimed(self, now_ms: int = 10) -> int:
        self.commit(Claim(now_ms=now_ms, claimer="w1"))
        return self.index


def _job(**fields: object) -> JobSpec:
    values: dict[str, object] = {
        "id": "job-1",
        "type": "sim",
        "payload": b"",
        "queue": "default",
        "priority": 0,
        "delay_ms": 0,
        "max_attempts": 3,
        "timeout_ms": 1_000,
        "key": "",
    }
    return JobSpec(**{**values, **fields})  # type: ignore[arg-type]


def _snooze(fence: int, delay_ms: int, now_ms: int) -> Report:
    outcome = Outcome(job_id="job-1", fence=fence, succeeded=False, snooze_ms=delay_ms)
    return Report(now_ms=now_ms, outcomes=(outcome,))


def test_a_retry_waits_its_policy_delay_and_one_sooner_is_a_violation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    delay_ms = policy_delay_ms("job-1", 1, POLICY)
    log = _Log()
    log.commit(Enqueue(now_ms=0, jobs=(_job(retry_policy=POLICY),)))
    fence = log.claimed()
    log.commit(Fail(now_ms=20, job_id="job-1", fence=fence, error="boom"))
    log.commit(Claim(now_ms=20 + delay_ms - 1, claimer="w1"))  # not due yet: nothing claimed
    log.commit(Claim(now_ms=20 + delay_ms, claimer="w1"))
    assert log.rules.retries_checked == 1
    # The machine ignoring the policy (mutant retry_policy_ignored): the rule fires.
    default = machine_module.policy_delay_ms
    monkeypatch.setattr(
        machine_module,
        "policy_delay_ms",
        lambda job_id, attempt, policy: default(job_id, attempt, None),
    )
    log = _Log()
    log.commit(Enqueue(now_ms=0, jobs=(_job(retry_policy=POLICY),)))
    fence = log.claimed()
    log.commit(Fail(now_ms=20, job_id="job-1", fence=fence, error="boom"))
    with pytest.raises(Violation, match="retries wait their policy's delay"):
        log.commit(Claim(now_ms=20 + 2_000, claimer="w1"))


def test_a_snooze_gives_its_attempt_back_and_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    log = _Log()
    log.commit(Enqueue(now_ms=0, jobs=(_job(),)))
    log.commit(_snooze(log.claimed(), 3_000, now_ms=20))
    log.commit(Claim(now_ms=3_019, claimer="w1"))  # not due
    log.commit(Claim(now_ms=3_020, claimer="w1"))
    assert log.rules.snoozes_checked == 2  # the snooze, then the claim after it
    # A snooze that keeps its attempt (mutant snooze_counts_an_attempt): the rule fires.
    monkeypatch.setattr(policy_module, "snoozed", _keeping_the_attempt)
    log = _Log()
    log.commit(Enqueue(now_ms=0, jobs=(_job(),)))
    with pytest.raises(Violation, match="a snooze gives its attempt back"):
        log.commit(_snooze(log.claimed(), 0, now_ms=20))


def _keeping_the_attempt(machine: object, job_id: str, fence: int, delay_ms: int) -> object:
    """``raftq.jobs.policy.snoozed`` as mutant ``snooze_counts_an_attempt`` makes it."""
    result = _SNOOZED(machine, job_id, fence, delay_ms)  # type: ignore[arg-type]
    job = machine.jobs[job_id]  # type: ignore[attr-defined]
    if isinstance(result, Done) and job.state is JobState.PENDING:
        job.attempts += 1
    return result


_SNOOZED = policy_module.snoozed


def test_progress_from_a_stale_fence_must_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    log = _Log()
    log.commit(Enqueue(now_ms=0, jobs=(_job(),)))
    first = log.claimed()
    log.commit(Progress(now_ms=20, job_ids=("job-1",), fences=(first,), values=(b"1",)))
    log.commit(Fail(now_ms=30, job_id="job-1", fence=first, error="boom"))
    log.commit(Progress(now_ms=40, job_ids=("job-1",), fences=(first,), values=(b"2",)))
    assert log.rules.stale_progress_checked == 1
    # A machine that takes any fence (mutant progress_stale_fence): the rule fires.
    monkeypatch.setattr(
        machine_module.JobStateMachine,
        "_held",
        lambda machine, job_id, fence: machine.jobs[job_id],
    )
    with pytest.raises(Violation, match="progress only from the current fence"):
        log.commit(Progress(now_ms=50, job_ids=("job-1",), fences=(first,), values=(b"3",)))
