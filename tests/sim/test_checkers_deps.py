"""The rules of ``sim.checkers_deps`` fire on what they forbid and stay quiet on what the job
machine does (committed entries fed as the simulator feeds them). The forbidden logs are made
by planting each mutant's bug (tests/mutants/deps_*.patch, unique_*.patch) for the test."""

from __future__ import annotations

from typing import Any

import pytest

from raftq.jobs import dependencies, unique
from raftq.jobs.commands import (
    Cancel,
    Claim,
    Complete,
    Enqueue,
    Fail,
    JobSpec,
    Retry,
)
from raftq.jobs.job import Job, JobState
from sim.checkers import Violation
from sim.checkers_deps import DependencyRules
from tests.sim.committed_log import CommittedLog


class _Log(CommittedLog[DependencyRules]):
    def __init__(self) -> None:
        super().__init__(DependencyRules())

    def run(self, job_id: str, *, succeed: bool = True) -> None:
        """Claim ``job_id`` (the one claimable) and end it: succeeded, or dead."""
        self.commit(Claim(now_ms=0, claimer="w"))
        fence = self.index
        job = self.oracle.machine.jobs[job_id]
        assert job.run is not None
        assert job.run.fence == fence, job_id
        if succeed:
            self.commit(Complete(now_ms=0, job_id=job_id, fence=fence))
        else:
            self.commit(Fail(now_ms=0, job_id=job_id, fence=fence, retryable=False))


def _spec(job_id: str, **fields: Any) -> JobSpec:
    plain: dict[str, Any] = {
        "type": "sim",
        "payload": b"",
        "queue": "default",
        "priority": 0,
        "delay_ms": 0,
        "max_attempts": 3,
        "timeout_ms": 1_000,
        "key": "",
    }
    return JobSpec(id=job_id, **{**plain, **fields})


def _enqueue(*specs: JobSpec) -> Enqueue:
    return Enqueue(now_ms=0, jobs=specs)


def test_quiet_on_chains_batches_failures_and_unique_keys() -> None:
    log = _Log()
    log.commit(_enqueue(_spec("a"), _spec("b", depends_on=("a",)), _spec("c", depends_on=("b",))))
    log.commit(_enqueue(_spec("x"), _spec("y"), _spec("cb", depends_on=("x", "y"))))
    log.commit(_enqueue(_spec("bad"), _spec("k", depends_on=("bad",))))
    for job_id in ("a", "b", "c", "x", "y", "cb"):
        log.run(job_id)
    log.run("bad", succeed=False)
    log.commit(_enqueue(_spec("u1", unique_while_active="u"), _spec("u2", unique_while_active="u")))
    log.run("u1", succeed=False)
    log.commit(_enqueue(_spec("u3", unique_while_active="u")))
    log.commit(Retry(now_ms=0, job_id="u1"))  # refused: u3 holds the key
    log.commit(Cancel(now_ms=0, job_id="u3"))
    assert log.oracle.machine.jobs["k"].state.value == "cancelled"
    assert log.rules.waiting == {}
    assert log.rules.released_checked == 4  # b, c and cb released, k cancelled
    assert log.rules.claims_checked == 3
    assert log.rules.keys_checked == 2


def test_fires_on_a_release_after_the_first_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deps_release_after_first_parent mutant."""
    original = dependencies.Dependencies.parent_finished

    def early(self: dependencies.Dependencies, parent: Job) -> list[tuple[Job, str]]:
        for child in self.children.get(parent.id, ()):
            assert child.extra is not None
            child.extra.parents_left = min(child.extra.parents_left, 1)
        return original(self, parent)

    monkeypatch.setattr(dependencies.Dependencies, "parent_finished", early)
    log = _Log()
    log.commit(_enqueue(_spec("a"), _spec("b"), _spec("c", depends_on=("a", "b"))))
    log.commit(Claim(now_ms=0, claimer="w", max_jobs=2))
    with pytest.raises(Violation, match="released before every parent succeeded"):
        log.commit(Complete(now_ms=0, job_id="a", fence=2))


def test_fires_on_a_child_left_waiting_by_a_dead_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deps_dead_parent_leaves_child_waiting mutant."""
    original = dependencies.Dependencies.parent_finished

    def forgetful(self: dependencies.Dependencies, parent: Job) -> list[tuple[Job, str]]:
        return [(child, reason) for child, reason in original(self, parent) if not reason]

    monkeypatch.setattr(dependencies.Dependencies, "parent_finished", forgetful)
    log = _Log()
    log.commit(_enqueue(_spec("a"), _spec("c", depends_on=("a",))))
    with pytest.raises(Violation, match="cancelled in the entry where a parent ends dead"):
        log.run("a", succeed=False)


def test_fires_on_a_waiting_job_never_released(monkeypatch: pytest.MonkeyPatch) -> None:
    def nothing(self: dependencies.Dependencies, parent: Job) -> list[tuple[Job, str]]:
        return []

    monkeypatch.setattr(dependencies.Dependencies, "parent_finished", nothing)
    log = _Log()
    log.commit(_enqueue(_spec("a"), _spec("c", depends_on=("a",))))
    with pytest.raises(Violation, match="released in the entry that finishes its last parent"):
        log.run("a")


def test_fires_on_a_claim_of_a_waiting_job() -> None:
    log = _Log()
    log.commit(_enqueue(_spec("a", priority=-1), _spec("c", depends_on=("a",))))
    machine = log.oracle.machine
    child = machine.jobs["c"]
    machine._set_state(child, JobState.PENDING)  # planted: claimable, its parent pending
    machine._schedule(child, 0)
    log.rules.waiting.clear()  # (else its release is what fires)
    with pytest.raises(Violation, match="starts before every parent succeeded"):
        log.commit(Claim(now_ms=0, claimer="w", max_jobs=1))


def test_fires_on_a_unique_key_freed_early(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unique_key_freed_early mutant: a failed job awaiting its retry loses its key."""
    original = unique.ActiveKeys.holder

    def forgetting(self: unique.ActiveKeys, key: str) -> Job | None:
        holder = original(self, key)
        return None if holder is not None and holder.state.value == "failed" else holder

    monkeypatch.setattr(unique.ActiveKeys, "holder", forgetting)
    monkeypatch.setattr(unique.ActiveKeys, "take", lambda self, job: None)
    log = _Log()
    log.commit(_enqueue(_spec("u1", unique_while_active="u")))
    log.commit(Claim(now_ms=0, claimer="w"))
    log.commit(Fail(now_ms=0, job_id="u1", fence=2))
    with pytest.raises(Violation, match="no two active jobs hold one unique key"):
        log.commit(_enqueue(_spec("u2", unique_while_active="u")))


def test_fires_on_a_free_key_that_creates_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    log = _Log()
    log.commit(_enqueue(_spec("u1", unique_while_active="u")))
    log.commit(Cancel(now_ms=0, job_id="u1"))
    monkeypatch.setattr(unique.ActiveKeys, "free", lambda self, job: None)  # too late to free
    log.oracle.machine.active_keys.holders["u"] = log.oracle.machine.jobs["u1"]
    with pytest.raises(Violation, match="creates its job"):
        log.commit(_enqueue(_spec("u2", unique_while_active="u")))
