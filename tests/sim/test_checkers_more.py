"""The rules of ``sim.checkers_more`` fire on the logs they forbid, and stay quiet on the
logs the job machine writes (each test feeds committed entries as the simulator does)."""

from __future__ import annotations

import pytest

from raftq import codec
from raftq.jobs import machine as machine_module
from raftq.jobs.commands import Claim, Command, Enqueue, ExpireLeases, ExtendAll, Fail, JobSpec
from raftq.raft.types import Entry, EntryKind
from sim.checkers import JobOracle, Violation
from sim.checkers_more import LeaseAndRetryRules, minimum_backoff_ms


class _Log:
    def __init__(self) -> None:
        self.oracle = JobOracle()
        self.rules = LeaseAndRetryRules()
        self.index = 0

    def commit(self, command: Command, term: int = 1) -> None:
        self.index += 1
        entry = Entry(
            index=self.index, term=term, kind=EntryKind.COMMAND, data=codec.encode(command, Command)
        )
        self.oracle.apply(entry)
        self.rules.observe(entry, self.oracle)


def _job(max_attempts: int = 3) -> JobSpec:
    return JobSpec(
        id="job-1",
        type="sim",
        payload=b"",
        queue="default",
        priority=0,
        delay_ms=0,
        max_attempts=max_attempts,
        timeout_ms=1_000,
        key="",
    )


def _claimed(log: _Log, term: int = 1) -> int:
    log.commit(Enqueue(now_ms=0, jobs=(_job(),)), term)
    log.commit(Claim(now_ms=10, claimer="w1"), term)
    return log.index


def test_a_lease_expired_by_a_leader_that_extended_first_is_fine() -> None:
    log = _Log()
    log.commit(ExtendAll(now_ms=0, by_ms=500))
    _claimed(log)
    log.commit(ExpireLeases(now_ms=5_000))
    assert log.rules.expiries_checked == 1


def test_a_lease_expired_in_a_term_without_an_extend_all_is_a_violation() -> None:
    log = _Log()
    log.commit(ExtendAll(now_ms=0, by_ms=500), term=1)
    _claimed(log, term=1)
    with pytest.raises(Violation, match="a new leader extends leases before expiring any"):
        log.commit(ExpireLeases(now_ms=5_000), term=2)


def test_a_retry_claimed_after_its_backoff_is_fine_and_one_claimed_sooner_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = _Log()
    fence = _claimed(log)
    log.commit(Fail(now_ms=20, job_id="job-1", fence=fence, error="boom"))
    log.commit(Claim(now_ms=20 + minimum_backoff_ms(1) - 1, claimer="w1"))  # not due yet
    log.commit(Claim(now_ms=20 + 2 * minimum_backoff_ms(1), claimer="w1"))
    assert log.rules.retries_checked == 1
    # The machine with retries at once (mutant retry_without_backoff): the rule fires.
    monkeypatch.setattr(machine_module, "policy_delay_ms", lambda job_id, attempt, policy: 0)
    log = _Log()
    fence = _claimed(log)
    log.commit(Fail(now_ms=20, job_id="job-1", fence=fence, error="boom"))
    with pytest.raises(Violation, match="retries wait their backoff"):
        log.commit(Claim(now_ms=21, claimer="w1"))


def test_a_claim_past_max_attempts_is_a_violation() -> None:
    log = _Log()
    fence = _claimed(log)
    log.commit(Fail(now_ms=20, job_id="job-1", fence=fence, error="boom"))
    # As if the machine had allowed one attempt more than asked (mutant retry_past_max_attempts).
    log.oracle.machine.jobs["job-1"].max_attempts = 1
    with pytest.raises(Violation, match="at most max_attempts attempts"):
        log.commit(Claim(now_ms=20 + 2 * minimum_backoff_ms(1), claimer="w1"))
