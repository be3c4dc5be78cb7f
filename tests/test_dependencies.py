"""Dependencies and uniqueness while active (issue #17 items 3 and 4; docs/jobs.md
"Dependencies" and "Unique while active"), applied to ``JobStateMachine`` entry by entry.

Each test names the rule it checks. After every test the machine's snapshot restores to the
same bytes and the same derived indexes (``assert_restores_alike``): the children lists, the
parents-left counts and the key holders are rebuilt from the jobs, never written.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from raftq import limits
from raftq.errors import DecodeError
from raftq.jobs.commands import (
    Cancel,
    Done,
    Enqueue,
    Enqueued,
    ExpireLeases,
    Purge,
    Rejected,
    Retry,
    RetryDead,
)
from raftq.jobs.job import JobState
from raftq.jobs.machine import JobStateMachine
from tests.test_jobs_commands import Log, assert_counts_match_jobs, spec

WAITING, PENDING, CANCELLED = JobState.WAITING, JobState.PENDING, JobState.CANCELLED


def state(log: Log, job_id: str) -> JobState:
    return log.machine.jobs[job_id].state


def finish(log: Log, job_id: str, *, succeed: bool = True, now_ms: int = 0) -> None:
    """Claim ``job_id`` (it must be the one claimable) and end it: succeeded or dead."""
    lease = log.claim_one(now_ms=now_ms)
    assert lease.job_id == job_id, (lease.job_id, job_id)
    if succeed:
        log.complete(lease, now_ms=now_ms)
    else:
        log.fail(lease, now_ms=now_ms, retryable=False)


def derived(machine: JobStateMachine) -> Any:
    children = {
        parent: [child.id for child in waiting]
        for parent, waiting in machine.dependencies.children.items()
    }
    left = {
        job.id: job.extra.parents_left for job in machine.jobs.values() if job.extra is not None
    }
    holders = {key: job.id for key, job in machine.active_keys.holders.items()}
    return children, left, holders, machine.dependencies.edges


def assert_restores_alike(log: Log) -> None:
    restored = JobStateMachine.restore(log.machine.snapshot())
    assert restored.snapshot() == log.machine.snapshot()
    assert derived(restored) == derived(log.machine)
    assert_counts_match_jobs(log.machine)


@pytest.fixture
def log() -> Any:
    made = Log()
    yield made
    assert_restores_alike(made)


# --- waiting and release ------------------------------------------------------------------------


def test_a_child_waits_and_is_released_in_the_entry_that_finishes_its_last_parent(log: Log) -> None:
    log.enqueue(spec(id="a"), spec(id="b"), spec(id="c", depends_on=("a", "b")))
    assert state(log, "c") is WAITING
    assert log.machine.state_counts()["waiting"] == 1
    first, second = log.claim(max_jobs=10)  # never the waiting child
    assert (first.job_id, second.job_id) == ("a", "b")
    log.complete(first, now_ms=1)
    assert state(log, "c") is WAITING
    assert log.machine.get("c").parents_left == 1  # type: ignore[union-attr]
    log.complete(second, now_ms=2)
    assert state(log, "c") is PENDING  # released by that very entry
    assert log.claimed_ids(now_ms=2) == ["c"]


def test_a_released_child_keeps_its_own_delay_and_runs_in_release_order(log: Log) -> None:
    log.enqueue(spec(id="p"), spec(id="late", depends_on=("p",), delay_ms=5_000))
    log.enqueue(spec(id="soon", depends_on=("p",)))
    finish(log, "p", now_ms=10)
    assert state(log, "late") is PENDING
    assert log.machine.jobs["late"].run_at_ms == 5_000
    assert log.claimed_ids(now_ms=10, max_jobs=5) == ["soon"]
    assert log.claimed_ids(now_ms=5_000, max_jobs=5) == ["late"]


def test_a_chain_runs_in_order(log: Log) -> None:
    ids = [f"step-{n}" for n in range(5)]
    log.enqueue(
        *(spec(id=job_id, depends_on=(ids[n - 1],) if n else ()) for n, job_id in enumerate(ids))
    )
    for job_id in ids:
        assert [state(log, other) for other in ids].count(PENDING) == 1
        finish(log, job_id)
    assert [state(log, job_id) for job_id in ids] == [JobState.SUCCEEDED] * len(ids)


def test_a_batch_callback_waits_for_the_whole_batch(log: Log) -> None:
    batch = [f"b{n}" for n in range(200)]
    log.enqueue(*(spec(id=job_id) for job_id in batch))
    log.enqueue(spec(id="callback", depends_on=tuple(batch)))
    assert log.machine.dependencies.edges == 200
    leases = log.claim(max_jobs=1000)
    assert len(leases) == 200
    for lease in leases[:-1]:
        log.complete(lease)
        assert state(log, "callback") is WAITING
    log.complete(leases[-1])
    assert state(log, "callback") is PENDING


# --- a parent that fails ------------------------------------------------------------------------


def test_a_dead_parent_cancels_its_child_and_grandchildren_naming_the_parent(log: Log) -> None:
    log.enqueue(
        spec(id="p"),
        spec(id="c", depends_on=("p",)),
        spec(id="g", depends_on=("c",)),
        spec(id="other", depends_on=("c",), on_parent_failure="run"),
    )
    finish(log, "p", succeed=False)
    assert state(log, "c") is CANCELLED
    assert log.machine.get("c").error == "parent p ended dead"  # type: ignore[union-attr]
    assert state(log, "g") is CANCELLED
    assert log.machine.get("g").error == "parent c ended cancelled"  # type: ignore[union-attr]
    assert state(log, "other") is PENDING  # runs anyway


def test_a_long_chain_is_cancelled_without_recursion(log: Log) -> None:
    ids = [f"n{n}" for n in range(3_000)]  # deeper than Python's recursion limit
    log.enqueue(
        *(spec(id=job_id, depends_on=(ids[n - 1],) if n else ()) for n, job_id in enumerate(ids))
    )
    log.single(Cancel(now_ms=1, job_id="n0"))
    assert {state(log, job_id) for job_id in ids} == {CANCELLED}
    assert log.machine.dependencies.children == {}


def test_run_anyway_waits_for_every_parent_to_end(log: Log) -> None:
    log.enqueue(
        spec(id="a"), spec(id="b"), spec(id="c", depends_on=("a", "b"), on_parent_failure="run")
    )
    log.single(Cancel(now_ms=0, job_id="a"))
    assert state(log, "c") is WAITING
    finish(log, "b", succeed=False)
    assert state(log, "c") is PENDING


def test_a_retried_dead_parent_holds_back_a_run_anyway_child_again(log: Log) -> None:
    log.enqueue(spec(id="a"), spec(id="b"))
    log.enqueue(spec(id="c", depends_on=("a", "b"), on_parent_failure="run"))
    finish(log, "a", succeed=False)
    assert log.machine.jobs["c"].extra.parents_left == 1  # type: ignore[union-attr]
    assert_restores_alike(log)
    log.single(Retry(now_ms=1, job_id="a"))
    assert log.machine.jobs["c"].extra.parents_left == 2  # type: ignore[union-attr]
    assert_restores_alike(log)
    finish(log, "b", now_ms=1)
    assert state(log, "c") is WAITING
    finish(log, "a", now_ms=1)
    assert state(log, "c") is PENDING


def test_retrying_a_dead_parent_does_not_bring_back_its_cancelled_child(log: Log) -> None:
    log.enqueue(spec(id="p"), spec(id="c", depends_on=("p",)))
    finish(log, "p", succeed=False)
    assert log.count(RetryDead(now_ms=1)) == 1
    finish(log, "p", now_ms=1)
    assert state(log, "c") is CANCELLED  # cancelled is final: enqueue the child again


def test_cancelling_a_waiting_job_takes_it_out_of_its_parents_lists(log: Log) -> None:
    log.enqueue(spec(id="p"), spec(id="c", depends_on=("p",)), spec(id="d", depends_on=("p",)))
    assert log.single(Cancel(now_ms=0, job_id="c")) == Done(job_id="c", state="cancelled")
    assert [job.id for job in log.machine.dependencies.children["p"]] == ["d"]


# --- refused and at-once ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("depends_on", "code", "words"),
    [
        (("nope",), "unknown_parent", "not held"),
        (("child",), "bad_dependency", "itself"),
        (("p", "p"), "bad_dependency", "twice"),
        (("later",), "bad_dependency", "comes later in the same enqueue"),
    ],
)
def test_bad_dependencies_are_refused_and_change_nothing(
    log: Log, depends_on: tuple[str, ...], code: str, words: str
) -> None:
    log.enqueue(spec(id="p"))
    alike = Log()
    alike.enqueue(spec(id="p"))
    alike.enqueue(spec(id="later"))
    outcomes = log.enqueue_result(spec(id="child", depends_on=depends_on), spec(id="later"))
    assert isinstance(outcomes[0], Rejected)
    assert outcomes[0].code == code
    assert words in outcomes[0].message
    assert outcomes[1] == Enqueued(job_id="later", created=True)
    assert log.machine.snapshot() == alike.machine.snapshot()  # as if never sent


def test_a_purged_parent_is_refused_as_unknown(log: Log) -> None:
    log.enqueue(spec(id="p"))
    finish(log, "p")
    assert log.count(Purge(now_ms=1, before_ms=1)) == 1
    (outcome,) = log.enqueue_result(spec(id="c", depends_on=("p",)), now_ms=1)
    assert isinstance(outcome, Rejected)
    assert outcome.code == "unknown_parent"
    assert "purged" in outcome.message


def test_finished_parents_decide_at_once(log: Log) -> None:
    log.enqueue(spec(id="ok"), spec(id="bad"))
    finish(log, "ok")
    finish(log, "bad", succeed=False)
    log.enqueue(
        spec(id="runs", depends_on=("ok",)),
        spec(id="cancelled", depends_on=("ok", "bad")),
        spec(id="anyway", depends_on=("bad",), on_parent_failure="run"),
    )
    assert state(log, "runs") is PENDING
    assert state(log, "cancelled") is CANCELLED
    assert log.machine.get("cancelled").error == "parent bad ended dead"  # type: ignore[union-attr]
    assert state(log, "anyway") is PENDING
    # A dead parent may still be retried: the child that runs anyway is not held back by it
    # any more (it already runs), and the retry changes nothing for it.
    log.single(Retry(now_ms=1, job_id="bad"))
    assert state(log, "anyway") is PENDING


def test_limits_on_parents_children_and_edges(log: Log) -> None:
    log.enqueue(spec(id="p"), spec(id="q"))
    with mock.patch.object(limits, "CHILDREN_PER_PARENT_MAX", 2):
        log.enqueue(spec(id="c1", depends_on=("p",)), spec(id="c2", depends_on=("p",)))
        (outcome,) = log.enqueue_result(spec(id="c3", depends_on=("p",)))
        assert isinstance(outcome, Rejected)
        assert outcome.code == "too_many_children"
    with mock.patch.object(limits, "DEPENDENCY_EDGES_MAX", 3):
        (outcome,) = log.enqueue_result(spec(id="c4", depends_on=("p", "q")))
        assert isinstance(outcome, Rejected)
        assert outcome.code == "full"
    with pytest.raises(ValueError, match="depends_on"):
        spec(depends_on=tuple(f"x{n}" for n in range(limits.PARENTS_MAX + 1)))
    with pytest.raises(ValueError, match="on_parent_failure"):
        spec(on_parent_failure="ignore")


def test_a_purged_child_gives_back_its_edges(log: Log) -> None:
    log.enqueue(spec(id="p"), spec(id="c", depends_on=("p",)))
    log.single(Cancel(now_ms=0, job_id="c"))
    assert log.machine.dependencies.edges == 1
    log.count(Purge(now_ms=1, before_ms=1))
    assert log.machine.dependencies.edges == 0


# --- uniqueness while active --------------------------------------------------------------------


def test_a_unique_key_refuses_a_duplicate_only_while_its_holder_is_active(log: Log) -> None:
    log.enqueue(spec(id="first", unique_while_active="report:42"))
    (duplicate,) = log.enqueue_result(spec(id="second", unique_while_active="report:42"))
    assert duplicate == Enqueued(job_id="first", created=False)  # names the holder
    assert "second" not in log.machine.jobs
    lease = log.claim_one()
    (still,) = log.enqueue_result(spec(id="third", unique_while_active="report:42"))
    assert still == Enqueued(job_id="first", created=False)  # running is active
    log.fail(lease)  # failed, awaiting its retry: still active
    (still,) = log.enqueue_result(spec(id="third", unique_while_active="report:42"))
    assert still == Enqueued(job_id="first", created=False)
    log.single(Cancel(now_ms=0, job_id="first"))
    assert log.enqueue(spec(id="fourth", unique_while_active="report:42")) == ["fourth"]


def test_a_waiting_job_holds_its_unique_key(log: Log) -> None:
    log.enqueue(spec(id="p"), spec(id="c", depends_on=("p",), unique_while_active="k"))
    (outcome,) = log.enqueue_result(spec(id="d", unique_while_active="k"))
    assert outcome == Enqueued(job_id="c", created=False)
    finish(log, "p", succeed=False)  # cancels c: the key is free in that entry
    assert log.enqueue(spec(id="d", unique_while_active="k")) == ["d"]


def test_a_dead_holder_retried_takes_its_key_back_unless_taken(log: Log) -> None:
    log.enqueue(spec(id="a", unique_while_active="k", max_attempts=1))
    finish(log, "a", succeed=False)
    assert log.single(Retry(now_ms=0, job_id="a")) == Done(job_id="a", state="pending")
    assert log.machine.active_keys.holders["k"].id == "a"
    (outcome,) = log.enqueue_result(spec(id="b", unique_while_active="k"))
    assert outcome == Enqueued(job_id="a", created=False)
    finish(log, "a", succeed=False)
    log.enqueue(spec(id="b", unique_while_active="k"))
    refused = log.single(Retry(now_ms=0, job_id="a"))
    assert isinstance(refused, Rejected)
    assert refused.code == "unique_taken"
    assert log.count(RetryDead(now_ms=0)) == 0  # skipped by the bulk retry too
    assert state(log, "a") is JobState.DEAD


def test_an_expired_lease_keeps_the_key_until_the_job_dies(log: Log) -> None:
    log.enqueue(spec(id="a", unique_while_active="k", max_attempts=1, timeout_ms=100))
    log.claim_one()
    log.count(ExpireLeases(now_ms=100))
    assert state(log, "a") is JobState.DEAD
    assert "k" not in log.machine.active_keys.holders


def test_unique_and_idempotency_keys_are_separate(log: Log) -> None:
    log.enqueue(spec(id="a", key="same", unique_while_active="same"))
    log.single(Cancel(now_ms=0, job_id="a"))
    (outcome,) = log.enqueue_result(spec(id="b", key="same"))
    assert outcome == Enqueued(job_id="a", created=False)  # the window still holds "same"
    assert log.enqueue(spec(id="c", unique_while_active="same")) == ["c"]


# --- snapshots ----------------------------------------------------------------------------------


def test_plain_jobs_write_no_sections() -> None:
    log = Log()
    log.enqueue(spec(id="a"))
    assert log.machine.snapshot_sections() == {}


def test_sections_hold_only_depends_on_policy_and_keys() -> None:
    log = Log()
    log.enqueue(spec(id="p"), spec(id="c", depends_on=("p",), on_parent_failure="run"))
    log.enqueue(spec(id="u", unique_while_active="k"))
    assert log.machine.snapshot_sections() == {
        "jobs.depends_on": [["c", ["p"]]],
        "jobs.on_parent_failure": [["c", "run"]],
        "jobs.unique": [["u", "k"]],
    }


@pytest.mark.parametrize(
    "sections",
    [
        {"jobs.depends_on": [["ghost", ["p"]]]},
        {"jobs.depends_on": [["c", "p"]]},
        {"jobs.on_parent_failure": [["p", "run"]]},
        {"jobs.unique": [["p", ""]]},
        {"jobs.unique": "k"},
    ],
)
def test_bad_sections_are_a_decode_error(sections: dict[str, Any]) -> None:
    from raftq.jobs.machine import Rebuild

    log = Log()
    log.enqueue(spec(id="p"), spec(id="c"))
    rebuild = Rebuild(now_ms=0, next_seq=3, paused=(), names=("default", "noop"))
    rebuild.add_jobs(list(JobStateMachine.restore(log.machine.snapshot()).jobs.values()))
    with pytest.raises(DecodeError):
        rebuild.finish(dead=(), finished=(), keys=(), key_jobs=(), key_times=(), sections=sections)


def test_two_active_holders_of_one_key_are_a_decode_error() -> None:
    log = Log()
    log.enqueue(spec(id="a", unique_while_active="k"), spec(id="b", unique_while_active="j"))
    sections = log.machine.snapshot_sections()
    sections["jobs.unique"] = [["a", "k"], ["b", "k"]]
    with mock.patch.object(JobStateMachine, "snapshot_sections", return_value=sections):
        data = log.machine.snapshot()
    with pytest.raises(DecodeError, match="both active"):
        JobStateMachine.restore(data)


def test_an_enqueue_is_one_entry_whatever_its_dependencies() -> None:
    """Older entries (no depends_on) decode as plain jobs; plain jobs carry no new bytes."""
    from raftq import codec

    plain = Enqueue(now_ms=0, jobs=(spec(id="a"),))
    assert codec.encode(plain) == codec.encode(
        Enqueue(now_ms=0, jobs=(spec(id="a", depends_on=(), on_parent_failure="cancel"),))
    )


def test_a_new_job_with_a_purged_parents_id_is_not_its_parent(log: Log) -> None:
    """Found by the model check: a parent that let its child go (cancelled, the child runs
    anyway) is purged, and a new job takes its id; the child must not wait for that one, live
    or restored (the rebuild counts only parents enqueued before the child)."""
    log.enqueue(spec(id="a"), spec(id="b"))
    log.enqueue(spec(id="c", depends_on=("a", "b"), on_parent_failure="run"))
    log.single(Cancel(now_ms=0, job_id="b"))
    log.count(Purge(now_ms=1, before_ms=1))
    log.enqueue(spec(id="b"), now_ms=1)
    assert log.machine.get("c").parents_left == 1  # type: ignore[union-attr]
    assert_restores_alike(log)
    finish(log, "a", now_ms=1)
    assert state(log, "c") is PENDING


def test_a_bulk_retry_gives_a_unique_key_back_to_one_dead_job_only(log: Log) -> None:
    log.enqueue(spec(id="a", unique_while_active="k", max_attempts=1))
    finish(log, "a", succeed=False)
    log.enqueue(spec(id="b", unique_while_active="k", max_attempts=1))
    finish(log, "b", succeed=False)
    assert log.count(RetryDead(now_ms=1)) == 1
    assert (state(log, "a"), state(log, "b")) == (PENDING, JobState.DEAD)
