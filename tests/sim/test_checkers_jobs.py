"""The rules of ``sim.checkers_jobs`` fire on the logs they forbid, and stay quiet on the logs
the job machine writes (each test feeds committed entries as the simulator does: ``before``,
the oracle applies, ``observe``)."""

from __future__ import annotations

from typing import Any

import pytest

from raftq import codec
from raftq.jobs import machine as machine_module
from raftq.jobs.commands import (
    Cancel,
    Claim,
    Command,
    Complete,
    Enqueue,
    ExpireLeases,
    Fail,
    JobSpec,
    Retry,
    RetryDead,
)
from raftq.raft.types import Entry, EntryKind
from sim.checkers import JobOracle, Violation
from sim.checkers_jobs import HistoryAndBulkRules


class _Log:
    def __init__(self) -> None:
        self.oracle = JobOracle()
        self.rules = HistoryAndBulkRules()
        self.index = 0

    def commit(self, command: Command, term: int = 1) -> None:
        self.index += 1
        entry = Entry(
            index=self.index, term=term, kind=EntryKind.COMMAND, data=codec.encode(command, Command)
        )
        self.rules.before(entry, self.oracle)
        self.oracle.apply(entry)
        self.rules.observe(entry, self.oracle)


def _jobs(count: int, max_attempts: int = 1) -> Enqueue:
    return Enqueue(
        now_ms=0,
        jobs=tuple(
            JobSpec(
                id=f"job-{n}", type="sim", payload=b"", queue="default", priority=0,
                delay_ms=0, max_attempts=max_attempts, timeout_ms=1_000, key="",
            )
            for n in range(count)
        ),
    )  # fmt: skip


def _kill(log: _Log, count: int) -> None:
    """``count`` jobs claimed and failed for good: dead."""
    log.commit(_jobs(count))
    log.commit(Claim(now_ms=10, claimer="w1", max_jobs=count))
    fence = log.index
    for n in range(count):
        log.commit(Fail(now_ms=20, job_id=f"job-{n}", fence=fence, error="boom"))


def test_the_events_of_claims_outcomes_expiries_cancels_and_retries_name_their_entry() -> None:
    log = _Log()
    log.commit(_jobs(3, max_attempts=2), term=1)
    log.commit(Claim(now_ms=10, claimer="w1", max_jobs=3), term=2)  # three events
    fence = log.index
    log.commit(Complete(now_ms=20, job_id="job-0", fence=fence), term=2)
    log.commit(Cancel(now_ms=20, job_id="job-1"), term=3)  # cancel requested: still running
    log.commit(Cancel(now_ms=20, job_id="job-0"), term=3)  # refused (succeeded): no event
    log.commit(ExpireLeases(now_ms=5_000), term=3)  # job-1 cancelled, job-2's lease expired
    log.commit(Retry(now_ms=5_000, job_id="job-2"), term=4)  # failed: runs again now
    assert log.rules.events_checked == 3 + 1 + 1 + 2 + 1


def test_an_event_that_names_another_entry_is_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine noting its entry after the command ran (mutant
    history_names_the_previous_entry): the first claim's event names the enqueue's entry."""

    def apply_then_note(self: Any, index: int, command: Command, term: int = 0) -> Any:
        self.now_ms = max(self.now_ms, command.now_ms)
        self._promote_due()
        result = machine_module._HANDLERS[type(command)](self, index, command)
        self.entry_index, self.entry_term = index, term
        return result

    monkeypatch.setattr(machine_module.JobStateMachine, "apply", apply_then_note)
    log = _Log()
    log.commit(_jobs(1))
    with pytest.raises(Violation, match="history events name their entry") as caught:
        log.commit(Claim(now_ms=10, claimer="w1"))
    assert "recorded 'claimed' for job-0 as index 1, term 1" in str(caught.value)


def test_a_bulk_retry_within_its_bound_is_fine_and_one_past_it_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = _Log()
    _kill(log, 4)
    log.commit(RetryDead(now_ms=30, max_jobs=3))
    log.commit(RetryDead(now_ms=30, max_jobs=3))  # one left: fine
    assert log.rules.bulk_retries_checked == 2
    # The machine that takes one job more than asked (mutant retry_dead_past_its_bound).
    original = machine_module.JobStateMachine._retry_dead

    def one_more(self: Any, index: int, command: RetryDead) -> Any:
        wider = RetryDead(now_ms=command.now_ms, queue=command.queue, type=command.type,
                          max_jobs=command.max_jobs + 1)  # fmt: skip
        return original(self, index, wider)

    monkeypatch.setattr(machine_module.JobStateMachine, "_retry_dead", one_more)
    monkeypatch.setitem(machine_module._HANDLERS, RetryDead, one_more)
    log = _Log()
    _kill(log, 4)
    with pytest.raises(Violation, match="a bulk retry stays within its bound") as caught:
        log.commit(RetryDead(now_ms=30, max_jobs=2))
    assert "took 3 jobs off the dead-letter list; at most 2" in str(caught.value)
