"""The replicated job-queue state machine (raftq/jobs/), command by command.

What each group proves, against DESIGN.md "Job semantics", CONTRACT.md (job fields and states)
and the docstrings of raftq/jobs/:

- Enqueue: derived ids ``j{index}-{position}``, client ids, idempotency keys within
  ``limits.DEDUPE_WINDOW_MS`` and ``limits.DEDUPE_KEYS_MAX``, ``id_taken``, ``too_many_names``.
- Claim: "priority, then run_at, then enqueue order", across queues and types; filters; paused
  queues; delays; ``max_jobs``; a lease's fence is the claim's log index.
- Complete / Fail / Extend / ExtendAll / ExpireLeases: fences, exponential backoff with
  deterministic jitter, ``max_attempts``, the dead-letter list, leases that never shorten.
- Cancel / Retry / Purge / PauseQueue / ResumeQueue, including every rejection.
- History, counts, monotonic time, no clock, and snapshots that restore to the same behaviour.

Every machine a test builds through ``Log`` has its counts recounted from ``list_jobs`` after the
test (the autouse fixture at the top).
"""

from __future__ import annotations

import gc
import os
import random
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import pytest

from raftq import codec, limits
from raftq.errors import DecodeError
from raftq.jobs.backoff import JITTER_FRACTION, retry_delay_ms
from raftq.jobs.commands import (
    Cancel,
    Claim,
    ClaimResult,
    Command,
    Complete,
    Count,
    Done,
    Enqueue,
    Enqueued,
    EnqueueResult,
    ExpireLeases,
    Extend,
    ExtendAll,
    ExtendResult,
    Fail,
    JobSpec,
    Lease,
    Outcome,
    PauseQueue,
    Purge,
    Rejected,
    Report,
    ReportResult,
    Result,
    ResumeQueue,
    Retry,
)
from raftq.jobs.job import HistoryEvent, JobState, JobView
from raftq.jobs.machine import LEASE_EXPIRED, JobStateMachine

ALL_STATES = tuple(state.value for state in JobState)
EVERYTHING = 1_000_000  # a list_jobs limit above any job count in these tests

# --- builders -------------------------------------------------------------------------------------


def spec(**overrides: Any) -> JobSpec:
    """A job spec with the job-file defaults of CONTRACT.md, except where overridden."""
    fields: dict[str, Any] = {
        "id": "",
        "type": "noop",
        "payload": b"{}",
        "queue": "default",
        "priority": 0,
        "delay_ms": 0,
        "max_attempts": 3,
        "timeout_ms": 30_000,
        "key": "",
    }
    fields.update(overrides)
    return JobSpec(**fields)


_machines_under_test: list[JobStateMachine] = []


class Log:
    """A state machine fed one committed entry at a time, with increasing log indexes."""

    def __init__(self, machine: JobStateMachine | None = None, *, index: int = 0) -> None:
        self.machine = machine if machine is not None else JobStateMachine()
        self.index = index
        self.term = 0
        """The term the next entries are applied in (0 unless a test sets it)."""
        _machines_under_test.append(self.machine)

    def apply(self, command: Command) -> Result:
        self.index += 1
        return self.machine.apply(self.index, command, self.term)

    def enqueue_result(self, *specs: JobSpec, now_ms: int = 0) -> tuple[Enqueued | Rejected, ...]:
        result = self.apply(Enqueue(now_ms=now_ms, jobs=specs))
        assert isinstance(result, EnqueueResult)
        assert len(result.jobs) == len(specs)
        return result.jobs

    def enqueue(self, *specs: JobSpec, now_ms: int = 0) -> list[str]:
        """Enqueue jobs that must all be created; their ids."""
        ids = []
        for outcome in self.enqueue_result(*specs, now_ms=now_ms):
            assert isinstance(outcome, Enqueued), outcome
            assert outcome.created, outcome
            ids.append(outcome.job_id)
        return ids

    def claim(self, *, now_ms: int = 0, claimer: str = "w1", **options: Any) -> tuple[Lease, ...]:
        result = self.apply(Claim(now_ms=now_ms, claimer=claimer, **options))
        assert isinstance(result, ClaimResult)
        return result.leases

    def claim_one(self, *, now_ms: int = 0, claimer: str = "w1", **options: Any) -> Lease:
        leases = self.claim(now_ms=now_ms, claimer=claimer, **options)
        assert len(leases) == 1, leases
        return leases[0]

    def claimed_ids(self, *, now_ms: int = 0, max_jobs: int = 1, **options: Any) -> list[str]:
        leases = self.claim(now_ms=now_ms, max_jobs=max_jobs, **options)
        return [lease.job_id for lease in leases]

    def complete(self, lease: Lease, *, now_ms: int = 0, result: bytes = b"") -> Done | Rejected:
        return self.single(
            Complete(now_ms=now_ms, job_id=lease.job_id, fence=lease.fence, result=result)
        )

    def fail(
        self, lease: Lease, *, now_ms: int = 0, error: str = "boom", retryable: bool = True
    ) -> Done | Rejected:
        command = Fail(
            now_ms=now_ms,
            job_id=lease.job_id,
            fence=lease.fence,
            error=error,
            retryable=retryable,
        )
        return self.single(command)

    def single(self, command: Command) -> Done | Rejected:
        result = self.apply(command)
        assert isinstance(result, Done | Rejected), result
        return result

    def count(self, command: Command) -> int:
        result = self.apply(command)
        assert isinstance(result, Count), result
        return result.count

    def extend(
        self, job_ids: Sequence[str], fences: Sequence[int], *, until_ms: int, now_ms: int = 0
    ) -> tuple[Done | Rejected, ...]:
        command = Extend(
            now_ms=now_ms, job_ids=tuple(job_ids), fences=tuple(fences), until_ms=until_ms
        )
        result = self.apply(command)
        assert isinstance(result, ExtendResult)
        return result.outcomes

    def view(self, job_id: str) -> JobView:
        view = self.machine.get(job_id)
        assert view is not None, f"no job {job_id}"
        return view

    def state(self, job_id: str) -> str:
        return self.view(job_id).state

    def events(self, job_id: str) -> list[str]:
        return [event.event for event in self.view(job_id).history]


def assert_counts_match_jobs(machine: JobStateMachine) -> None:
    """state_counts, queue_counts, list_jobs per state and dead_letters agree with the jobs."""
    views = machine.list_jobs(limit=EVERYTHING)
    by_state = Counter(view.state for view in views)
    assert machine.state_counts() == {state: by_state.get(state, 0) for state in ALL_STATES}
    by_queue: dict[str, dict[str, int]] = {}
    for view in views:
        by_queue.setdefault(view.queue, dict.fromkeys(ALL_STATES, 0))[view.state] += 1
    counted_queues = {
        queue: counts for queue, counts in machine.queue_counts().items() if any(counts.values())
    }
    assert counted_queues == by_queue
    for state in ALL_STATES:
        assert len(machine.list_jobs(state=state, limit=EVERYTHING)) == by_state.get(state, 0)
    dead_ids = {view.id for view in views if view.state == "dead"}
    assert {view.id for view in machine.dead_letters(EVERYTHING)} == dead_ids


@pytest.fixture(autouse=True)
def _recount_after_each_test() -> Iterator[None]:
    _machines_under_test.clear()
    yield
    machines = list(_machines_under_test)
    _machines_under_test.clear()
    for machine in machines:
        assert_counts_match_jobs(machine)


def rejected(outcome: object, code: str) -> None:
    assert isinstance(outcome, Rejected), outcome
    assert outcome.code == code, outcome


def done(outcome: object, state: str) -> None:
    assert isinstance(outcome, Done), outcome
    assert outcome.state == state, outcome


def run_until_dead(log: Log, job_id: str, *, now_ms: int) -> int:
    """Claim and fail ``job_id`` until it is dead; the time it died."""
    for _ in range(limits.JOB_HISTORY_MAX):
        lease = log.claim_one(now_ms=now_ms, queues=(log.view(job_id).queue,))
        assert lease.job_id == job_id
        log.fail(lease, now_ms=now_ms)
        if log.state(job_id) == "dead":
            return now_ms
        now_ms = log.view(job_id).run_at_ms
    raise AssertionError(f"job {job_id} never died")


# --- Enqueue --------------------------------------------------------------------------------------


def test_enqueue_derives_ids_from_log_index_and_position() -> None:
    log = Log(index=6)
    ids = log.enqueue(spec(), spec(), spec(), now_ms=10)
    assert ids == ["j7-0", "j7-1", "j7-2"]
    assert log.enqueue(spec(), now_ms=10) == ["j8-0"]
    assert [view.id for view in log.machine.list_jobs()] == ["j7-0", "j7-1", "j7-2", "j8-0"]


def test_enqueue_keeps_a_client_id() -> None:
    log = Log()
    assert log.enqueue(spec(id="job-001"), spec(), spec(id="job-002")) == [
        "job-001",
        "j1-1",
        "job-002",
    ]


def test_new_job_is_pending_due_now_with_its_spec_and_nothing_else() -> None:
    log = Log()
    log.apply(PauseQueue(now_ms=100, queue="elsewhere"))  # moves now to 100
    [job_id] = log.enqueue(
        spec(type="resize", queue="images", priority=7, payload=b"a.png", timeout_ms=5000),
        now_ms=150,
    )
    view = log.view(job_id)
    assert view == JobView(
        id=job_id,
        type="resize",
        queue="images",
        state="pending",
        priority=7,
        attempts=0,
        max_attempts=3,
        payload=b"a.png",
        result=b"",
        error="",
        enqueued_ms=150,
        run_at_ms=150,
        timeout_ms=5000,
        fence=0,
        lease_expires_ms=0,
        finished_ms=0,
        history=(HistoryEvent(at_ms=150, event="enqueued", attempt=0, node="", fence=0),),
    )
    # Claim defaults: any type, any queue, one job.
    assert log.claimed_ids(now_ms=150) == [job_id]


@pytest.mark.parametrize(
    ("claim_at_ms", "claimable"),
    [(1_000, False), (5_999, False), (6_000, True), (9_000, True)],
)
def test_delayed_job_is_claimable_from_its_run_at(claim_at_ms: int, claimable: bool) -> None:
    log = Log()
    [job_id] = log.enqueue(spec(delay_ms=5_000), now_ms=1_000)
    view = log.view(job_id)
    assert (view.state, view.run_at_ms, view.enqueued_ms) == ("pending", 6_000, 1_000)
    expected = [job_id] if claimable else []
    assert log.claimed_ids(now_ms=claim_at_ms) == expected


def test_one_enqueue_answers_each_job_in_order() -> None:
    log = Log()
    log.enqueue(spec(id="taken"), spec(key="k-old"), now_ms=0)
    outcomes = log.enqueue_result(
        spec(),
        spec(id="taken"),
        spec(key="k-old"),
        spec(id="fresh", key="k-new"),
        spec(key="k-new"),
        now_ms=5,
    )
    assert outcomes[0] == Enqueued(job_id="j2-0", created=True)
    rejected(outcomes[1], "id_taken")
    assert outcomes[2] == Enqueued(job_id="j1-1", created=False)
    assert outcomes[3] == Enqueued(job_id="fresh", created=True)
    assert outcomes[4] == Enqueued(job_id="fresh", created=False)  # key seen earlier, same entry
    assert [view.id for view in log.machine.list_jobs()] == ["taken", "j1-1", "j2-0", "fresh"]


@pytest.mark.parametrize(
    "later_ms",
    [0, 1, limits.DEDUPE_WINDOW_MS // 2, limits.DEDUPE_WINDOW_MS - 1],
)
def test_duplicate_key_within_the_window_returns_the_original(later_ms: int) -> None:
    log = Log()
    [original] = log.enqueue(spec(key="order-42", payload=b"first"), now_ms=1_000)
    before = log.machine.digest()
    outcomes = log.enqueue_result(
        spec(key="order-42", payload=b"second", queue="other"), now_ms=1_000 + later_ms
    )
    assert outcomes == (Enqueued(job_id=original, created=False),)
    assert [view.id for view in log.machine.list_jobs()] == [original]
    assert log.view(original).payload == b"first"
    assert log.machine.state_counts()["pending"] == 1
    if later_ms == 0:
        assert log.machine.digest() == before  # nothing at all changed


@pytest.mark.parametrize(
    "later_ms", [limits.DEDUPE_WINDOW_MS, limits.DEDUPE_WINDOW_MS + 1, 3 * limits.DEDUPE_WINDOW_MS]
)
def test_key_is_forgotten_after_the_dedupe_window(later_ms: int) -> None:
    # The window is [at, at + DEDUPE_WINDOW_MS): machine._forget_old_keys drops at_ms <= now - W.
    log = Log()
    [original] = log.enqueue(spec(key="order-42"), now_ms=1_000)
    [second] = log.enqueue(spec(key="order-42"), now_ms=1_000 + later_ms)
    assert second != original
    assert len(log.machine.list_jobs()) == 2
    # And the key now names the new job, for a window of its own.
    assert log.enqueue_result(spec(key="order-42"), now_ms=1_000 + later_ms + 1) == (
        Enqueued(job_id=second, created=False),
    )


def test_oldest_keys_are_forgotten_past_the_count_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "DEDUPE_KEYS_MAX", 2)
    log = Log()
    first, second = log.enqueue(spec(key="a"), spec(key="b"), now_ms=0)
    [third] = log.enqueue(spec(key="c"), now_ms=1)  # the third key pushes out the oldest
    outcomes = log.enqueue_result(spec(key="c"), spec(key="a"), now_ms=2)
    assert outcomes[0] == Enqueued(job_id=third, created=False)
    assert isinstance(outcomes[1], Enqueued)
    assert outcomes[1].created
    assert outcomes[1].job_id not in (first, second, third)
    assert len(log.machine.list_jobs()) == 4


def test_a_taken_client_id_is_rejected_and_changes_nothing() -> None:
    log = Log()
    log.enqueue(spec(id="job-1", payload=b"original"), now_ms=0)
    before = log.machine.digest()
    [outcome] = log.enqueue_result(spec(id="job-1", payload=b"impostor"), now_ms=0)
    rejected(outcome, "id_taken")
    assert log.machine.digest() == before
    assert log.view("job-1").payload == b"original"


def test_a_client_id_that_a_later_derived_id_would_take_is_id_taken() -> None:
    log = Log()
    log.enqueue(spec(id="j2-1"), now_ms=0)  # at index 1; index 2 would derive j2-0, j2-1
    outcomes = log.enqueue_result(spec(), spec(), now_ms=0)
    assert outcomes[0] == Enqueued(job_id="j2-0", created=True)
    rejected(outcomes[1], "id_taken")


def test_too_many_names_rejects_new_names_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "NAMES_MAX", 4)
    log = Log()
    log.enqueue(spec(queue="q1", type="t1"), spec(queue="q2", type="t2"), now_ms=0)
    outcomes = log.enqueue_result(
        spec(queue="q3", type="t1"), spec(queue="q1", type="t3"), spec(queue="q2", type="t1")
    )
    rejected(outcomes[0], "too_many_names")
    rejected(outcomes[1], "too_many_names")
    assert isinstance(outcomes[2], Enqueued)
    assert outcomes[2].created
    assert {view.queue for view in log.machine.list_jobs()} == {"q1", "q2"}


# --- Claim order ----------------------------------------------------------------------------------

# (job id, priority, delay_ms) enqueued in this order at t=0, then claimed at t=10_000.
ORDER_CASES = {
    "priority first": ([("low", 0, 0), ("high", 5, 0), ("mid", 1, 0)], ["high", "mid", "low"]),
    "negative priority last": ([("neg", -3, 0), ("zero", 0, 0)], ["zero", "neg"]),
    "then earlier run_at": (
        [("late", 0, 3_000), ("early", 0, 1_000), ("now", 0, 0)],
        ["now", "early", "late"],
    ),
    "then enqueue order": ([("a", 2, 0), ("b", 2, 0), ("c", 2, 0)], ["a", "b", "c"]),
    "same run_at by delay keeps enqueue order": (
        [("x", 0, 500), ("y", 0, 500)],
        ["x", "y"],
    ),
    "priority beats run_at": ([("due-first", 0, 0), ("urgent", 9, 4_000)], ["urgent", "due-first"]),
}


@pytest.mark.parametrize(("jobs", "expected"), ORDER_CASES.values(), ids=ORDER_CASES.keys())
def test_claim_order_is_priority_then_run_at_then_enqueue_order(
    jobs: list[tuple[str, int, int]], expected: list[str]
) -> None:
    log = Log()
    for job_id, priority, delay_ms in jobs:
        log.enqueue(spec(id=job_id, priority=priority, delay_ms=delay_ms), now_ms=0)
    assert log.claimed_ids(now_ms=10_000, max_jobs=len(jobs)) == expected


def test_claim_order_holds_one_job_at_a_time_too() -> None:
    log = Log()
    for job_id, priority, delay_ms in [("a", 0, 200), ("b", 1, 0), ("c", 0, 100), ("d", 0, 100)]:
        log.enqueue(spec(id=job_id, priority=priority, delay_ms=delay_ms), now_ms=0)
    claimed = [log.claimed_ids(now_ms=1_000) for _ in range(5)]
    assert claimed == [["b"], ["c"], ["d"], ["a"], []]


def test_claim_order_spans_queues_and_types() -> None:
    log = Log()
    log.enqueue(spec(id="mail-low", queue="mail", type="send", priority=0), now_ms=0)
    log.enqueue(spec(id="img-delayed", queue="images", type="resize", delay_ms=50), now_ms=0)
    log.enqueue(spec(id="mail-high", queue="mail", type="digest", priority=3), now_ms=0)
    log.enqueue(spec(id="img-low", queue="images", type="resize", priority=0), now_ms=10)
    log.enqueue(spec(id="rep-high", queue="reports", type="render", priority=3), now_ms=20)
    assert log.claimed_ids(now_ms=100, max_jobs=10) == [
        "mail-high",  # priority 3, run_at 0
        "rep-high",  # priority 3, run_at 20
        "mail-low",  # priority 0, run_at 0
        "img-low",  # priority 0, run_at 10
        "img-delayed",  # priority 0, run_at 50
    ]


CLAIM_FILTERS = {
    "any": ((), (), ["m1", "m2", "i1", "i2"]),
    "one type": (("send",), (), ["m1"]),
    "one queue": ((), ("images",), ["i1", "i2"]),
    "type and queue": (("resize",), ("images",), ["i1"]),
    "type in another queue": (("send",), ("images",), []),
    "several types": (("send", "thumb"), (), ["m1", "i2"]),
    "unknown queue": ((), ("nowhere",), []),
    "unknown type": (("nothing",), (), []),
}


@pytest.mark.parametrize(
    ("types", "queues", "expected"), CLAIM_FILTERS.values(), ids=CLAIM_FILTERS.keys()
)
def test_claim_filters_by_type_and_queue(
    types: tuple[str, ...], queues: tuple[str, ...], expected: list[str]
) -> None:
    log = Log()
    log.enqueue(
        spec(id="m1", queue="mail", type="send"),
        spec(id="m2", queue="mail", type="digest"),
        spec(id="i1", queue="images", type="resize"),
        spec(id="i2", queue="images", type="thumb"),
    )
    claimed = log.claimed_ids(now_ms=1, max_jobs=10, types=types, queues=queues)
    assert claimed == expected
    for job_id in ("m1", "m2", "i1", "i2"):
        assert log.state(job_id) == ("running" if job_id in expected else "pending")


def test_claim_hands_out_at_most_max_jobs() -> None:
    log = Log()
    ids = log.enqueue(*(spec() for _ in range(5)))
    assert log.claimed_ids(max_jobs=2) == ids[:2]
    assert log.claimed_ids(max_jobs=2) == ids[2:4]
    assert log.claimed_ids(max_jobs=2) == ids[4:]
    assert log.claimed_ids(max_jobs=2) == []


def test_a_paused_queue_is_never_claimed_from_until_resumed() -> None:
    log = Log()
    log.enqueue(spec(id="mail-1", queue="mail", priority=9), spec(id="other-1", queue="other"))
    assert log.apply(PauseQueue(now_ms=0, queue="mail")) == Done(job_id="", state="paused")
    assert "mail" in log.machine.queue_counts()
    assert log.claimed_ids(now_ms=1, queues=("mail",)) == []
    assert log.claimed_ids(now_ms=2, max_jobs=10) == ["other-1"]
    log.enqueue(spec(id="mail-2", queue="mail", delay_ms=10), now_ms=3)
    assert log.claimed_ids(now_ms=100, max_jobs=10) == []  # due, but still paused
    assert log.apply(ResumeQueue(now_ms=101, queue="mail")) == Done(job_id="", state="resumed")
    assert log.claimed_ids(now_ms=102, max_jobs=10) == ["mail-1", "mail-2"]


def test_pausing_an_empty_queue_holds_back_jobs_enqueued_later() -> None:
    log = Log()
    log.apply(PauseQueue(now_ms=0, queue="later"))
    log.enqueue(spec(id="x", queue="later"), now_ms=1)
    assert log.claimed_ids(now_ms=2) == []
    log.apply(ResumeQueue(now_ms=3, queue="later"))
    assert log.claimed_ids(now_ms=4) == ["x"]


def test_a_retried_job_keeps_its_enqueue_order_among_equally_due_jobs() -> None:
    # "priority, then run_at, then enqueue order" (DESIGN.md): a retried job is due now, and
    # so is a job enqueued now; the one enqueued first goes first.
    log = Log()
    log.enqueue(spec(id="first"), now_ms=0)
    lease = log.claim_one(now_ms=0)
    log.fail(lease, now_ms=0)
    log.enqueue(spec(id="second"), now_ms=500)
    done(log.single(Retry(now_ms=500, job_id="first")), "pending")
    assert log.view("first").run_at_ms == log.view("second").run_at_ms == 500
    assert log.claimed_ids(now_ms=500, max_jobs=2) == ["first", "second"]


# --- Leases ---------------------------------------------------------------------------------------


def test_a_lease_is_fenced_by_the_claim_index_and_expires_after_the_timeout() -> None:
    log = Log()
    log.enqueue(spec(id="a", type="resize", queue="images", payload=b"p", timeout_ms=4_000))
    log.enqueue(spec(id="b", timeout_ms=9_000))
    leases = log.claim(now_ms=1_000, claimer="worker-7", max_jobs=2)
    assert log.index == 3
    assert leases == (
        Lease(
            job_id="a",
            type="resize",
            queue="images",
            payload=b"p",
            attempt=1,
            fence=3,
            expires_ms=5_000,
            timeout_ms=4_000,
        ),
        Lease(
            job_id="b",
            type="noop",
            queue="default",
            payload=b"{}",
            attempt=1,
            fence=3,
            expires_ms=10_000,
            timeout_ms=9_000,
        ),
    )
    view = log.view("a")
    assert (view.state, view.attempts, view.fence, view.lease_expires_ms) == (
        "running",
        1,
        3,
        5_000,
    )
    assert view.history[-1] == HistoryEvent(
        at_ms=1_000, event="claimed", attempt=1, node="worker-7", fence=3, index=3
    )


def test_each_claim_of_a_job_counts_an_attempt_under_a_new_fence() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(max_attempts=5))
    fences = []
    now_ms = 0
    for attempt in (1, 2, 3):
        lease = log.claim_one(now_ms=now_ms)
        assert lease.attempt == attempt
        assert log.view(job_id).attempts == attempt
        fences.append(lease.fence)
        log.fail(lease, now_ms=now_ms)
        now_ms = log.view(job_id).run_at_ms
    assert fences == sorted(set(fences))


# --- Complete -------------------------------------------------------------------------------------


def test_complete_succeeds_and_keeps_the_result() -> None:
    log = Log()
    [job_id] = log.enqueue(spec())
    lease = log.claim_one(now_ms=10)
    outcome = log.complete(lease, now_ms=25, result=b'{"ok": true}')
    assert outcome == Done(job_id=job_id, state="succeeded")
    view = log.view(job_id)
    assert (view.state, view.result, view.finished_ms, view.attempts) == (
        "succeeded",
        b'{"ok": true}',
        25,
        1,
    )
    assert log.events(job_id) == ["enqueued", "claimed", "succeeded"]
    assert log.machine.state_counts()["succeeded"] == 1
    assert log.claimed_ids(now_ms=30) == []


def test_complete_after_the_lease_time_but_before_expiry_is_applied_still_succeeds() -> None:
    log = Log()
    log.enqueue(spec(timeout_ms=100))
    lease = log.claim_one(now_ms=0)
    done(log.complete(lease, now_ms=500), "succeeded")  # no ExpireLeases was committed


REJECTED_REPORTS = {
    "unknown job": "not_found",
    "wrong fence": "lease_lost",
    "never claimed": "lease_lost",
    "reported twice": "lease_lost",
    "after expiry": "lease_lost",
    "old fence after a reclaim": "lease_lost",
}


def _lease_no_longer_held(log: Log, case: str) -> Lease:
    """A lease (or what a worker believes is one) that does not hold its job any more."""
    [job_id] = log.enqueue(spec(id="job", timeout_ms=1_000), spec(id="idle"), now_ms=0)[:1]
    lease = log.claim_one(now_ms=0)
    assert lease.job_id == job_id
    if case == "unknown job":
        return attrs.evolve(lease, job_id="nobody")
    if case == "wrong fence":
        return attrs.evolve(lease, fence=lease.fence + 1)
    if case == "never claimed":
        return attrs.evolve(lease, job_id="idle")
    if case == "reported twice":
        done(log.complete(lease, now_ms=10, result=b"first"), "succeeded")
        return lease
    if case == "after expiry":
        assert log.count(ExpireLeases(now_ms=5_000)) == 1
        return lease
    assert case == "old fence after a reclaim"
    log.fail(lease, now_ms=10)
    log.claim_one(now_ms=log.view(job_id).run_at_ms, claimer="w2", queues=("default",))
    return lease


@pytest.mark.parametrize(("case", "code"), REJECTED_REPORTS.items(), ids=REJECTED_REPORTS.keys())
@pytest.mark.parametrize("report", ["complete", "fail", "extend"])
def test_reports_without_the_lease_are_rejected_and_change_nothing(
    case: str, code: str, report: str
) -> None:
    log = Log()
    lease = _lease_no_longer_held(log, case)
    now_ms = log.machine.now_ms  # the report must change nothing, not even the clock
    before = log.machine.snapshot()
    if report == "complete":
        outcome = log.complete(lease, now_ms=now_ms, result=b"late")
    elif report == "fail":
        outcome = log.fail(lease, now_ms=now_ms)
    else:
        [outcome] = log.extend([lease.job_id], [lease.fence], until_ms=10**9, now_ms=now_ms)
    rejected(outcome, code)
    assert log.machine.snapshot() == before


def test_report_settles_each_outcome_in_order_as_its_complete_or_fail_would() -> None:
    log = Log()
    ids = log.enqueue(spec(id="a"), spec(id="b"), spec(id="c", max_attempts=1), spec(id="d"))
    leases = {lease.job_id: lease for lease in log.claim(now_ms=10, max_jobs=4)}
    report = Report(
        now_ms=20,
        outcomes=(
            Outcome(job_id="a", fence=leases["a"].fence, succeeded=True, result=b"1"),
            Outcome(job_id="b", fence=leases["b"].fence, succeeded=False, error="flaky"),
            Outcome(job_id="c", fence=leases["c"].fence, succeeded=False, error="x"),
            Outcome(job_id="d", fence=leases["d"].fence + 1, succeeded=True),  # stale fence
            Outcome(job_id="a", fence=leases["a"].fence, succeeded=True),  # a second time
            Outcome(job_id="zz", fence=1, succeeded=False, retryable=False),
        ),
    )
    result = log.apply(report)
    assert isinstance(result, ReportResult)
    assert [o.state if isinstance(o, Done) else o.code for o in result.outcomes] == [
        "succeeded",
        "failed",
        "dead",
        "lease_lost",
        "lease_lost",
        "not_found",
    ]
    assert [log.view(job_id).state for job_id in ids] == ["succeeded", "failed", "dead", "running"]
    assert log.view("a").result == b"1"
    assert log.view("b").error == "flaky"
    assert log.events("a") == ["enqueued", "claimed", "succeeded"]


# --- Fail and backoff -----------------------------------------------------------------------------


def test_fail_schedules_the_retry_with_backoff_and_jitter() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(max_attempts=3))
    lease = log.claim_one(now_ms=1_000)
    assert log.fail(lease, now_ms=1_200, error="disk full") == Done(job_id=job_id, state="failed")
    view = log.view(job_id)
    assert view.state == "failed"
    assert view.error == "disk full"
    assert view.attempts == 1
    assert view.run_at_ms == 1_200 + retry_delay_ms(job_id, 1)
    assert view.history[-1] == HistoryEvent(
        at_ms=1_200,
        event="failed",
        attempt=1,
        node="",
        fence=lease.fence,
        index=log.index,
        error="disk full",
    )


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 10])
def test_retry_delay_is_exponential_with_bounded_deterministic_jitter(attempt: int) -> None:
    base = min(limits.RETRY_CAP_MS, limits.RETRY_BASE_MS * 2 ** (attempt - 1))
    delays = [retry_delay_ms(f"job-{n}", attempt) for n in range(20)]
    for delay in delays:
        assert base <= delay <= base + base * JITTER_FRACTION
    assert len(set(delays)) > 1, "jitter spreads jobs that fail together"
    assert delays == [retry_delay_ms(f"job-{n}", attempt) for n in range(20)]


@pytest.mark.parametrize("attempt", [13, 30, 1_000])
def test_retry_delay_is_capped(attempt: int) -> None:
    delay = retry_delay_ms("job", attempt)
    assert limits.RETRY_CAP_MS <= delay <= limits.RETRY_CAP_MS * (1 + JITTER_FRACTION)


def test_each_failure_waits_for_its_own_attempts_backoff() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(max_attempts=4))
    now_ms = 0
    for attempt in (1, 2, 3):
        lease = log.claim_one(now_ms=now_ms)
        now_ms += 7
        log.fail(lease, now_ms=now_ms)
        assert log.view(job_id).run_at_ms == now_ms + retry_delay_ms(job_id, attempt)
        now_ms = log.view(job_id).run_at_ms


def test_a_failed_job_is_claimable_again_only_when_due() -> None:
    log = Log()
    [job_id] = log.enqueue(spec())
    log.fail(log.claim_one(now_ms=0), now_ms=0)
    run_at_ms = log.view(job_id).run_at_ms
    assert log.claimed_ids(now_ms=run_at_ms - 1) == []
    assert log.state(job_id) == "failed"
    lease = log.claim_one(now_ms=run_at_ms)
    assert (lease.job_id, lease.attempt) == (job_id, 2)


def test_a_due_failed_job_becomes_pending() -> None:
    log = Log()
    [job_id] = log.enqueue(spec())
    log.fail(log.claim_one(now_ms=0), now_ms=0)
    log.apply(PauseQueue(now_ms=log.view(job_id).run_at_ms, queue="unrelated"))
    assert log.state(job_id) == "pending"


def test_the_last_attempt_failing_makes_the_job_dead() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(max_attempts=3))
    died_ms = run_until_dead(log, job_id, now_ms=0)
    view = log.view(job_id)
    assert (view.state, view.attempts, view.finished_ms) == ("dead", 3, died_ms)
    assert log.events(job_id) == ["enqueued"] + ["claimed", "failed"] * 2 + ["claimed", "dead"]
    assert [job.id for job in log.machine.dead_letters()] == [job_id]
    assert log.claimed_ids(now_ms=died_ms + limits.RETRY_CAP_MS * 2) == []


def test_a_failure_that_is_not_retryable_is_dead_at_once() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(max_attempts=5))
    lease = log.claim_one(now_ms=0)
    outcome = log.fail(lease, now_ms=3, error="bad payload", retryable=False)
    assert outcome == Done(job_id=job_id, state="dead")
    view = log.view(job_id)
    assert (view.state, view.attempts, view.error, view.finished_ms) == (
        "dead",
        1,
        "bad payload",
        3,
    )
    assert [job.id for job in log.machine.dead_letters()] == [job_id]


def test_dead_letters_are_in_order_of_death_and_limited() -> None:
    log = Log()
    log.enqueue(spec(id="a"), spec(id="b"), spec(id="c"))
    leases = {lease.job_id: lease for lease in log.claim(now_ms=0, max_jobs=3)}
    for job_id in ("c", "a", "b"):
        log.fail(leases[job_id], now_ms=1, retryable=False)
    assert [job.id for job in log.machine.dead_letters()] == ["c", "a", "b"]
    assert [job.id for job in log.machine.dead_letters(limit=2)] == ["c", "a"]


def test_list_jobs_of_the_dead_state_is_in_enqueue_order_like_every_listing() -> None:
    # list_jobs' docstring: "Jobs in enqueue order, filtered"; dead_letters is in death order.
    log = Log()
    log.enqueue(spec(id="a"), spec(id="b"))
    leases = {lease.job_id: lease for lease in log.claim(now_ms=0, max_jobs=2)}
    log.fail(leases["b"], now_ms=1, retryable=False)
    log.fail(leases["a"], now_ms=2, retryable=False)
    assert [job.id for job in log.machine.list_jobs(state="dead")] == ["a", "b"]


def test_list_jobs_filters_by_state_and_queue_with_a_limit() -> None:
    log = Log()
    log.enqueue(
        spec(id="m1", queue="mail"),
        spec(id="i1", queue="images"),
        spec(id="m2", queue="mail"),
        spec(id="m3", queue="mail"),
    )
    log.claim(now_ms=0, queues=("mail",))
    machine = log.machine
    assert [job.id for job in machine.list_jobs(queue="mail")] == ["m1", "m2", "m3"]
    assert [job.id for job in machine.list_jobs(state="pending")] == ["i1", "m2", "m3"]
    assert [job.id for job in machine.list_jobs(state="pending", queue="mail")] == ["m2", "m3"]
    assert [job.id for job in machine.list_jobs(limit=2)] == ["m1", "i1"]
    assert machine.list_jobs(state="succeeded") == []
    assert machine.get("nobody") is None


# --- Extend, ExtendAll, ExpireLeases --------------------------------------------------------------


@pytest.mark.parametrize(
    ("until_ms", "expected_ms"),
    [(9_000, 9_000), (5_001, 5_001), (5_000, 5_000), (3_000, 5_000), (0, 5_000)],
)
def test_extend_renews_a_lease_but_never_shortens_it(until_ms: int, expected_ms: int) -> None:
    log = Log()
    [job_id] = log.enqueue(spec(timeout_ms=4_000))
    lease = log.claim_one(now_ms=1_000)
    outcomes = log.extend([job_id], [lease.fence], until_ms=until_ms, now_ms=2_000)
    assert outcomes == (Done(job_id=job_id, state="running"),)
    assert log.view(job_id).lease_expires_ms == expected_ms
    assert log.count(ExpireLeases(now_ms=expected_ms - 1)) == 0
    assert log.state(job_id) == "running"


def test_extend_judges_each_job_by_its_own_fence() -> None:
    log = Log()
    log.enqueue(spec(id="a", timeout_ms=100), spec(id="b", timeout_ms=100))
    lease_a, lease_b = log.claim(now_ms=0, max_jobs=2)
    outcomes = log.extend(
        ["a", "b", "ghost"], [lease_a.fence, lease_b.fence + 1, lease_a.fence], until_ms=9_000
    )
    assert outcomes[0] == Done(job_id="a", state="running")
    rejected(outcomes[1], "lease_lost")
    rejected(outcomes[2], "not_found")
    assert log.view("a").lease_expires_ms == 9_000
    assert log.view("b").lease_expires_ms == 100


def test_a_lease_extended_later_is_not_expired_by_its_old_expiry() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(timeout_ms=100))
    lease = log.claim_one(now_ms=0)
    log.extend([job_id], [lease.fence], until_ms=1_000, now_ms=50)
    log.extend([job_id], [lease.fence], until_ms=2_000, now_ms=60)
    assert log.count(ExpireLeases(now_ms=500)) == 0
    assert log.count(ExpireLeases(now_ms=1_500)) == 0
    assert log.state(job_id) == "running"
    assert log.count(ExpireLeases(now_ms=2_000)) == 1
    assert log.state(job_id) == "failed"


def test_extend_all_keeps_every_lease_alive_for_at_least_by_ms() -> None:
    log = Log()
    log.enqueue(spec(id="short", timeout_ms=100), spec(id="long", timeout_ms=50_000))
    log.enqueue(spec(id="done", timeout_ms=100), spec(id="waiting"))
    leases = {lease.job_id: lease for lease in log.claim(now_ms=0, max_jobs=3)}
    log.complete(leases["done"], now_ms=10)
    assert log.count(ExtendAll(now_ms=1_000, by_ms=10_000)) == 1
    assert log.view("short").lease_expires_ms == 11_000
    assert log.view("long").lease_expires_ms == 50_000
    assert log.view("done").lease_expires_ms == 100  # finished: untouched
    assert log.count(ExpireLeases(now_ms=10_999)) == 0
    assert log.count(ExpireLeases(now_ms=11_000)) == 1
    assert log.state("short") == "failed"
    assert log.state("long") == "running"


def test_expire_leases_expires_only_the_expired_ones() -> None:
    log = Log()
    log.enqueue(*(spec(id=f"t{timeout}", timeout_ms=timeout) for timeout in (300, 100, 200, 900)))
    log.claim(now_ms=0, max_jobs=4)
    assert log.count(ExpireLeases(now_ms=250)) == 2
    assert {job_id: log.state(job_id) for job_id in ("t100", "t200", "t300", "t900")} == {
        "t100": "failed",
        "t200": "failed",
        "t300": "running",
        "t900": "running",
    }
    assert log.count(ExpireLeases(now_ms=260)) == 0
    assert log.count(ExpireLeases(now_ms=1_000)) == 2


def test_expire_leases_skips_jobs_that_finished() -> None:
    log = Log()
    log.enqueue(spec(id="ok", timeout_ms=100), spec(id="bad", timeout_ms=100))
    leases = log.claim(now_ms=0, max_jobs=2)
    log.complete(leases[0], now_ms=10)
    log.fail(leases[1], now_ms=10)
    assert log.count(ExpireLeases(now_ms=1_000)) == 0


def test_an_expired_lease_counts_as_a_failed_attempt() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(timeout_ms=100, max_attempts=3))
    lease = log.claim_one(now_ms=0)
    assert log.count(ExpireLeases(now_ms=150)) == 1
    view = log.view(job_id)
    assert (view.state, view.attempts) == ("failed", 1)
    assert view.run_at_ms == 150 + retry_delay_ms(job_id, 1)
    assert view.history[-1] == HistoryEvent(
        at_ms=150,
        event="lease expired",
        attempt=1,
        node="",
        fence=lease.fence,
        index=log.index,
        error=LEASE_EXPIRED,
    )
    assert log.claimed_ids(now_ms=view.run_at_ms - 1) == []
    assert log.claim_one(now_ms=view.run_at_ms).attempt == 2


def test_expiry_of_the_last_attempt_makes_the_job_dead() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(timeout_ms=100, max_attempts=2))
    log.fail(log.claim_one(now_ms=0), now_ms=1)
    log.claim_one(now_ms=log.view(job_id).run_at_ms)
    assert log.count(ExpireLeases(now_ms=log.view(job_id).lease_expires_ms)) == 1
    view = log.view(job_id)
    assert (view.state, view.attempts) == ("dead", 2)
    assert view.history[-1].event == "dead"
    assert view.error == LEASE_EXPIRED  # not the first attempt's error, nor none at all
    assert [job.id for job in log.machine.dead_letters()] == [job_id]


# --- Cancel ---------------------------------------------------------------------------------------


def _job_in_state(log: Log, state: str) -> str:
    """A job brought to ``state``: pending, delayed, failed, running, succeeded, dead, cancelled."""
    if state == "delayed":
        [job_id] = log.enqueue(spec(delay_ms=60_000), now_ms=0)
        return job_id
    [job_id] = log.enqueue(spec(max_attempts=2), now_ms=0)
    if state == "pending":
        return job_id
    if state == "cancelled":
        done(log.single(Cancel(now_ms=0, job_id=job_id)), "cancelled")
        return job_id
    lease = log.claim_one(now_ms=0)
    if state == "succeeded":
        log.complete(lease, now_ms=1)
    elif state == "failed":
        log.fail(lease, now_ms=1)
    elif state == "dead":
        log.fail(lease, now_ms=1, retryable=False)
    else:
        assert state == "running", state
    assert log.state(job_id) == state
    return job_id


@pytest.mark.parametrize("state", ["pending", "delayed", "failed"])
def test_cancel_finishes_a_job_that_is_not_running(state: str) -> None:
    log = Log()
    job_id = _job_in_state(log, state)
    assert log.single(Cancel(now_ms=500, job_id=job_id)) == Done(job_id=job_id, state="cancelled")
    view = log.view(job_id)
    assert (view.state, view.finished_ms) == ("cancelled", 500)
    assert view.history[-1].event == "cancelled"
    assert log.claimed_ids(now_ms=10 * limits.RETRY_CAP_MS) == []


@pytest.mark.parametrize(
    ("ending", "final_state"),
    [
        ("fail", "cancelled"),
        ("extend", "cancelled"),
        ("expiry", "cancelled"),
        ("complete", "succeeded"),
    ],
)
def test_cancelling_a_running_job_takes_effect_at_its_next_report(
    ending: str, final_state: str
) -> None:
    log = Log()
    [job_id] = log.enqueue(spec(timeout_ms=1_000, max_attempts=5))
    lease = log.claim_one(now_ms=0)
    assert log.single(Cancel(now_ms=10, job_id=job_id)) == Done(job_id=job_id, state="running")
    assert log.state(job_id) == "running"
    assert log.events(job_id)[-1] == "cancel requested"
    assert log.claimed_ids(now_ms=20) == []
    if ending == "fail":
        outcome = log.fail(lease, now_ms=30)
    elif ending == "extend":
        [outcome] = log.extend([job_id], [lease.fence], until_ms=5_000, now_ms=30)
    elif ending == "expiry":
        assert log.count(ExpireLeases(now_ms=1_000)) == 1
        outcome = Done(job_id=job_id, state=log.state(job_id))
    else:
        outcome = log.complete(lease, now_ms=30, result=b"done anyway")
    assert outcome == Done(job_id=job_id, state=final_state)
    view = log.view(job_id)
    assert view.state == final_state
    assert view.finished_ms > 0
    assert view.history[-1].event == final_state
    if final_state == "succeeded":
        assert view.result == b"done anyway"
    assert log.claimed_ids(now_ms=10 * limits.RETRY_CAP_MS) == []


@pytest.mark.parametrize("state", ["succeeded", "dead", "cancelled"])
def test_cancelling_a_finished_job_is_rejected(state: str) -> None:
    log = Log()
    job_id = _job_in_state(log, state)
    before = log.view(job_id)
    rejected(log.single(Cancel(now_ms=50, job_id=job_id)), "finished")
    assert log.view(job_id) == before


def test_cancelling_an_unknown_job_is_not_found() -> None:
    log = Log()
    rejected(log.single(Cancel(now_ms=0, job_id="ghost")), "not_found")


# --- Retry ----------------------------------------------------------------------------------------


def test_retry_returns_a_dead_job_to_pending_with_a_full_set_of_attempts() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(max_attempts=2))
    died_ms = run_until_dead(log, job_id, now_ms=0)
    retry_ms = died_ms + 100
    assert log.single(Retry(now_ms=retry_ms, job_id=job_id)) == Done(job_id=job_id, state="pending")
    view = log.view(job_id)
    assert (view.state, view.attempts, view.run_at_ms) == ("pending", 0, retry_ms)
    assert view.history[-1].event == "retried"
    assert log.machine.dead_letters() == []
    # Claimable at once, and it gets max_attempts attempts again before dying.
    assert log.claim_one(now_ms=retry_ms).attempt == 1
    assert log.state(job_id) == "running"


def test_a_retried_dead_job_dies_again_only_after_max_attempts() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(max_attempts=2))
    died_ms = run_until_dead(log, job_id, now_ms=0)
    log.single(Retry(now_ms=died_ms, job_id=job_id))
    lease = log.claim_one(now_ms=died_ms)
    log.fail(lease, now_ms=died_ms)
    assert log.state(job_id) == "failed"
    again_ms = run_until_dead(log, job_id, now_ms=log.view(job_id).run_at_ms)
    assert log.view(job_id).finished_ms == again_ms


def test_retry_runs_a_failed_job_now_keeping_its_attempts() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(max_attempts=3))
    log.fail(log.claim_one(now_ms=0), now_ms=10)
    assert log.view(job_id).run_at_ms > 20
    assert log.single(Retry(now_ms=20, job_id=job_id)) == Done(job_id=job_id, state="pending")
    view = log.view(job_id)
    assert (view.state, view.attempts, view.run_at_ms) == ("pending", 1, 20)
    assert log.claim_one(now_ms=20).attempt == 2


@pytest.mark.parametrize("state", ["succeeded", "cancelled", "pending", "delayed", "running"])
def test_retry_of_a_job_that_is_not_dead_or_failed_is_not_retryable(state: str) -> None:
    log = Log()
    job_id = _job_in_state(log, state)
    before = log.view(job_id)
    rejected(log.single(Retry(now_ms=5, job_id=job_id)), "not_retryable")
    assert log.view(job_id) == before


def test_retry_of_an_unknown_job_is_not_found() -> None:
    log = Log()
    rejected(log.single(Retry(now_ms=0, job_id="ghost")), "not_found")


# --- Purge ----------------------------------------------------------------------------------------


def test_purge_forgets_only_jobs_finished_before_the_cutoff() -> None:
    log = Log()
    log.enqueue(*(spec(id=job_id) for job_id in ("ok", "dead", "gone", "late", "run", "fail")))
    log.enqueue(spec(id="wait", delay_ms=10**9))
    leases = {lease.job_id: lease for lease in log.claim(now_ms=0, max_jobs=6)}
    log.complete(leases["ok"], now_ms=100)
    log.fail(leases["dead"], now_ms=200, retryable=False)
    log.single(Cancel(now_ms=250, job_id="wait"))  # pending -> cancelled at 250
    log.complete(leases["late"], now_ms=300)
    log.fail(leases["fail"], now_ms=300)
    log.complete(leases["gone"], now_ms=250)
    assert log.count(Purge(now_ms=400, before_ms=250)) == 2
    remaining = {job.id for job in log.machine.list_jobs()}
    assert remaining == {"gone", "late", "run", "fail", "wait"}
    assert log.machine.get("ok") is None
    assert log.machine.get("dead") is None
    assert log.machine.dead_letters() == []
    assert log.count(Purge(now_ms=400, before_ms=301)) == 3
    assert {job.id for job in log.machine.list_jobs()} == {"run", "fail"}
    assert log.count(Purge(now_ms=500, before_ms=500)) == 0


def test_purge_skips_a_job_retried_after_it_finished() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(id="phoenix"))
    log.fail(log.claim_one(now_ms=0), now_ms=100, retryable=False)
    log.single(Retry(now_ms=150, job_id=job_id))
    assert log.count(Purge(now_ms=200, before_ms=200)) == 0
    assert log.state(job_id) == "pending"
    log.complete(log.claim_one(now_ms=300), now_ms=300)
    assert log.count(Purge(now_ms=350, before_ms=250)) == 0
    assert log.count(Purge(now_ms=400, before_ms=400)) == 1
    assert log.machine.get(job_id) is None


# --- History --------------------------------------------------------------------------------------


def test_history_records_each_step_of_a_job() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(), now_ms=5)
    first = log.claim_one(now_ms=10, claimer="w1")
    log.fail(first, now_ms=20)
    retry_ms = log.view(job_id).run_at_ms
    second = log.claim_one(now_ms=retry_ms, claimer="w2")
    log.single(Cancel(now_ms=retry_ms + 1, job_id=job_id))
    log.complete(second, now_ms=retry_ms + 2)
    # Entries 1 to 6: enqueue, claim, fail, claim, cancel, complete; a claim's fence is its index.
    assert log.view(job_id).history == (
        HistoryEvent(at_ms=5, event="enqueued", attempt=0, node="", fence=0),
        HistoryEvent(at_ms=10, event="claimed", attempt=1, node="w1", fence=2, index=2),
        HistoryEvent(at_ms=20, event="failed", attempt=1, node="", fence=2, index=3, error="boom"),
        HistoryEvent(at_ms=retry_ms, event="claimed", attempt=2, node="w2", fence=4, index=4),
        HistoryEvent(
            at_ms=retry_ms + 1, event="cancel requested", attempt=2, node="", fence=4, index=5
        ),
        HistoryEvent(at_ms=retry_ms + 2, event="succeeded", attempt=2, node="", fence=4, index=6),
    )
    assert (first.fence, second.fence) == (2, 4)


def test_history_of_a_job_cancelled_before_running() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(), now_ms=1)
    log.single(Cancel(now_ms=2, job_id=job_id))
    assert log.events(job_id) == ["enqueued", "cancelled"]


def _fail_many_times(log: Log, job_id: str, cycles: int) -> list[tuple[str, int]]:
    """Claim and fail ``cycles`` times; every (event, attempt) the job went through."""
    expected = [("enqueued", 0)]
    now_ms = 0
    for attempt in range(1, cycles + 1):
        log.fail(log.claim_one(now_ms=now_ms), now_ms=now_ms)
        expected += [("claimed", attempt), ("failed", attempt)]
        now_ms = log.view(job_id).run_at_ms
    return expected


def test_history_keeps_the_enqueue_first_and_the_newest_events() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(max_attempts=1_000))
    expected = _fail_many_times(log, job_id, cycles=limits.JOB_HISTORY_MAX)
    history = [(event.event, event.attempt) for event in log.view(job_id).history]
    assert history[0] == ("enqueued", 0)
    assert len(history) >= limits.JOB_HISTORY_MAX
    assert history[1:] == expected[len(expected) - len(history) + 1 :]


def test_history_is_bounded_by_job_history_max() -> None:
    # limits.JOB_HISTORY_MAX: "Events kept per job ... the oldest events after the first are
    # dropped (the enqueue stays)".
    log = Log()
    [job_id] = log.enqueue(spec(max_attempts=1_000))
    _fail_many_times(log, job_id, cycles=limits.JOB_HISTORY_MAX)
    assert len(log.view(job_id).history) <= limits.JOB_HISTORY_MAX


def test_each_attempt_keeps_its_own_error_in_history() -> None:
    """The event that ends a failed attempt carries that attempt's error (its end, at most
    ``JOB_HISTORY_ERROR_CHARS_MAX`` characters: a traceback's end names the exception); an
    expired lease says so; the job's ``error`` stays the last attempt's, whole."""
    log = Log()
    [job_id] = log.enqueue(spec(max_attempts=3, timeout_ms=1_000))
    log.fail(log.claim_one(now_ms=0), now_ms=10, error="first: ValueError")
    now_ms = log.view(job_id).run_at_ms
    log.claim_one(now_ms=now_ms)
    assert log.count(ExpireLeases(now_ms=now_ms + 1_000)) == 1
    now_ms = log.view(job_id).run_at_ms
    traceback = "Traceback\n" + "  frame\n" * 400 + "KeyError: 'third'"
    log.fail(log.claim_one(now_ms=now_ms), now_ms=now_ms, error=traceback)
    view = log.view(job_id)
    assert view.state == "dead"
    assert view.error == traceback
    ended = [(e.event, e.attempt, e.error) for e in view.history if e.event != "claimed"]
    assert ended == [
        ("enqueued", 0, ""),
        ("failed", 1, "first: ValueError"),
        ("lease expired", 2, LEASE_EXPIRED),
        ("dead", 3, traceback[-limits.JOB_HISTORY_ERROR_CHARS_MAX :]),
    ]
    assert ended[-1][2].endswith("KeyError: 'third'")
    assert len(ended[-1][2]) == limits.JOB_HISTORY_ERROR_CHARS_MAX


def test_a_not_retryable_failure_and_a_cancelled_attempt_keep_their_errors() -> None:
    log = Log()
    [first, second] = log.enqueue(spec(id="first"), spec(id="second"))
    log.fail(log.claim_one(), error="bad payload", retryable=False)
    lease = log.claim_one()
    log.single(Cancel(now_ms=0, job_id=second))
    log.fail(lease, error="interrupted")
    assert [(e.event, e.error) for e in log.view(first).history][-1] == (
        "failed, not retryable",
        "bad payload",
    )
    assert [(e.event, e.error) for e in log.view(second).history][-2:] == [
        ("cancel requested", ""),
        ("cancelled", "interrupted"),
    ]


def held_bytes_recounted(machine: JobStateMachine) -> int:
    """Every payload, result and error the machine holds, counted the slow way."""
    total = 0
    for job in machine.jobs.values():
        total += len(job.payload)
        if job.run is not None:
            total += len(job.run.result) + len(job.run.error)
            total += sum(len(event[7]) for event in job.run.history)
    return total


def test_history_errors_count_in_held_bytes_and_go_with_their_events() -> None:
    """The errors a history keeps count against ``JOBS_HELD_BYTES_MAX`` like results do: an
    event dropped at the history's bound, and a purged job, give their bytes back."""
    log = Log()
    [job_id] = log.enqueue(spec(max_attempts=1_000))
    now_ms = 0
    for attempt in range(limits.JOB_HISTORY_MAX):
        log.fail(log.claim_one(now_ms=now_ms), now_ms=now_ms, error=f"error {attempt:04d}")
        now_ms = log.view(job_id).run_at_ms
        assert log.machine.held_bytes == held_bytes_recounted(log.machine), attempt
    errors = [event.error for event in log.view(job_id).history if event.error]
    assert errors[-1] == f"error {limits.JOB_HISTORY_MAX - 1:04d}"
    assert len(errors) < limits.JOB_HISTORY_MAX  # the oldest were dropped with their events
    assert log.machine.held_bytes == len(b"{}") + len("error 0031") * (1 + len(errors))
    restored = JobStateMachine.restore(log.machine.snapshot())
    assert restored.held_bytes == log.machine.held_bytes
    log.apply(Cancel(now_ms=now_ms, job_id=job_id))
    log.apply(Purge(now_ms=now_ms + 1, before_ms=now_ms + 1))
    assert log.machine.jobs == {}
    assert log.machine.held_bytes == 0


def test_a_full_cluster_keeps_the_event_but_not_its_copy_of_the_error() -> None:
    log = Log()
    log.machine.held_bytes_max = 100
    [job_id] = log.enqueue(spec(payload=b"x" * 40, max_attempts=2))
    log.fail(log.claim_one(), error="e" * 30)  # 40 + 30 (error) + 30 (the event's copy)
    assert log.machine.held_bytes == 100
    now_ms = log.view(job_id).run_at_ms
    log.fail(log.claim_one(now_ms=now_ms), now_ms=now_ms, error="f" * 30)
    view = log.view(job_id)
    assert view.state == "dead"
    assert view.error == "f" * 30
    assert [e.error for e in view.history if e.event in ("failed", "dead")] == ["e" * 30, ""]
    assert log.machine.held_bytes == held_bytes_recounted(log.machine) <= 100


# --- counts and time ------------------------------------------------------------------------------


def test_counts_follow_every_transition() -> None:
    log = Log()
    steps: list[Command] = [
        Enqueue(now_ms=0, jobs=(spec(id="a", queue="q1"), spec(id="b", queue="q2"))),
        Enqueue(
            now_ms=0,
            jobs=(
                spec(id="c", queue="q1", delay_ms=50, max_attempts=1),
                spec(id="d", queue="q2", depends_on=("a",)),  # waiting until "a" ends
            ),
        ),
        Claim(now_ms=1, claimer="w", max_jobs=2),
        PauseQueue(now_ms=2, queue="q3"),
        Fail(now_ms=3, job_id="a", fence=3),
        Complete(now_ms=4, job_id="b", fence=3),
        Claim(now_ms=60, claimer="w", queues=("q1",)),
        Cancel(now_ms=61, job_id="c"),
        ExpireLeases(now_ms=40_000),
        Retry(now_ms=40_001, job_id="a"),
        Claim(now_ms=40_002, claimer="w"),
        Fail(now_ms=40_003, job_id="a", fence=11, retryable=False),
        Retry(now_ms=40_004, job_id="a"),
        Purge(now_ms=40_005, before_ms=40_005),
    ]
    states_seen = set()
    for command in steps:
        log.apply(command)
        assert_counts_match_jobs(log.machine)
        states_seen |= {job.state for job in log.machine.list_jobs()}
    assert states_seen == set(ALL_STATES)
    assert log.machine.queue_counts()["q3"] == dict.fromkeys(ALL_STATES, 0)
    assert log.machine.state_counts() == {**dict.fromkeys(ALL_STATES, 0), "pending": 1}


def test_time_never_goes_backwards() -> None:
    log = Log()
    log.enqueue(spec(id="a", timeout_ms=1_000), now_ms=10_000)
    [late] = log.enqueue(spec(delay_ms=100), now_ms=2_000)  # a leader whose clock is behind
    assert log.view(late).enqueued_ms == 10_000
    assert log.view(late).run_at_ms == 10_100
    lease = log.claim_one(now_ms=500, queues=("default",))
    assert lease.expires_ms == 11_000
    log.fail(lease, now_ms=600)
    assert log.view("a").run_at_ms == 10_000 + retry_delay_ms("a", 1)
    assert log.claimed_ids(now_ms=700) == []  # the delayed job's 10_100 has not come
    assert log.claimed_ids(now_ms=10_100) == [late]
    assert log.count(ExpireLeases(now_ms=5)) == 0  # its lease runs until 10_100 + 30_000
    assert log.machine.now_ms == 10_100


def test_the_state_machine_reads_no_clock_and_no_randomness(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the job state machine read a clock or a random source")

    with monkeypatch.context() as patch:
        for module, name in [
            (time, "time"),
            (time, "time_ns"),
            (time, "monotonic"),
            (time, "monotonic_ns"),
            (time, "perf_counter"),
            (time, "perf_counter_ns"),
            (random, "random"),
            (random, "randrange"),
            (random, "getrandbits"),
            (os, "urandom"),
        ]:
            patch.setattr(module, name, forbidden)
        first = Log()
        first_results = [first.apply(command) for command in SCENARIO]
        second = Log()
        second_results = [second.apply(command) for command in SCENARIO]
        first_digest, second_digest = first.machine.digest(), second.machine.digest()
    assert first_results == second_results
    assert first_digest == second_digest


# --- snapshots ------------------------------------------------------------------------------------

# A scenario touching every command; claims sit at known indexes, so the fences are literals.
SCENARIO: list[Command] = [
    Enqueue(  # 1
        now_ms=1_000,
        jobs=(
            spec(id="a", type="email", priority=5, max_attempts=2),
            spec(type="email", key="order-1"),
            spec(id="c", queue="reports", type="render", delay_ms=10_000),
            spec(id="d", type="email", max_attempts=1, timeout_ms=1_000),
        ),
    ),
    Claim(now_ms=1_100, claimer="w1", types=("email",), max_jobs=2),  # 2: a, j1-1
    Enqueue(  # 3
        now_ms=1_200,
        jobs=(spec(key="order-1"), spec(id="e", queue="reports", type="render", priority=-1)),
    ),
    Complete(now_ms=1_300, job_id="j1-1", fence=2, result=b"sent"),  # 4
    Fail(now_ms=1_400, job_id="a", fence=2, error="smtp down"),  # 5
    PauseQueue(now_ms=1_500, queue="reports"),  # 6
    Claim(now_ms=1_600, claimer="w2", max_jobs=3),  # 7: d
    Cancel(now_ms=1_700, job_id="d"),  # 8: requested
    Extend(now_ms=1_800, job_ids=("d",), fences=(7,), until_ms=5_000),  # 9: d cancelled
    ResumeQueue(now_ms=1_900, queue="reports"),  # 10
    Claim(now_ms=20_000, claimer="w3", max_jobs=5),  # 11: a, c, e
    Extend(now_ms=20_100, job_ids=("a", "c"), fences=(11, 2), until_ms=40_000),  # 12
    ExtendAll(now_ms=20_200, by_ms=30_000),  # 13
    ExpireLeases(now_ms=60_000),  # 14: a dead, c and e failed
    Retry(now_ms=60_100, job_id="a"),  # 15
    Cancel(now_ms=60_200, job_id="c"),  # 16
    Claim(now_ms=70_000, claimer="w1", max_jobs=2),  # 17: a, e
    Complete(now_ms=70_100, job_id="a", fence=17),  # 18
    Fail(now_ms=70_200, job_id="e", fence=17, retryable=False),  # 19
    Purge(now_ms=80_000, before_ms=70_150),  # 20
    Enqueue(now_ms=80_100, jobs=(spec(key="order-1"), spec(id="a", timeout_ms=500))),  # 21
    Claim(now_ms=80_200, claimer="w2", max_jobs=3),  # 22
    ExpireLeases(now_ms=90_000),  # 23
    Retry(now_ms=90_100, job_id="e"),  # 24
    Claim(now_ms=95_000, claimer="w2", max_jobs=3),  # 25
]


def test_the_scenario_exercises_what_the_snapshot_tests_rely_on() -> None:
    log = Log()
    results = [log.apply(command) for command in SCENARIO]
    assert isinstance(results[1], ClaimResult)
    assert [lease.job_id for lease in results[1].leases] == ["a", "j1-1"]
    assert isinstance(results[10], ClaimResult)
    assert [lease.job_id for lease in results[10].leases] == ["a", "c", "e"]
    assert results[13] == Count(count=3)
    assert results[19] == Count(count=4)
    assert results[8] == ExtendResult(outcomes=(Done(job_id="d", state="cancelled"),))
    assert isinstance(results[24], ClaimResult)
    assert [lease.job_id for lease in results[24].leases] == ["a", "e"]


@pytest.mark.parametrize("split", range(len(SCENARIO) + 1))
def test_a_restored_snapshot_behaves_like_the_original(split: int) -> None:
    original = Log()
    for command in SCENARIO[:split]:
        original.apply(command)
    snapshot = original.machine.snapshot()
    restored = Log(JobStateMachine.restore(snapshot), index=original.index)
    assert restored.machine.digest() == original.machine.digest()
    assert restored.machine.snapshot() == snapshot
    for command in SCENARIO[split:]:
        assert restored.apply(command) == original.apply(command), command
        assert restored.machine.digest() == original.machine.digest(), command
    machines = (original.machine, restored.machine)
    views = [machine.list_jobs(limit=EVERYTHING) for machine in machines]
    assert views[0] == views[1]
    assert machines[0].state_counts() == machines[1].state_counts()
    assert machines[0].queue_counts() == machines[1].queue_counts()
    assert machines[0].dead_letters() == machines[1].dead_letters()


def test_same_log_gives_the_same_snapshot_bytes() -> None:
    first, second = Log(), Log()
    for command in SCENARIO:
        first.apply(command)
        second.apply(command)
        assert first.machine.snapshot() == second.machine.snapshot()


def test_restore_after_a_retry_claims_in_the_same_order() -> None:
    log = Log()
    log.enqueue(spec(id="first"), now_ms=0)
    log.fail(log.claim_one(now_ms=0), now_ms=0)
    log.enqueue(spec(id="second"), now_ms=500)
    log.single(Retry(now_ms=500, job_id="first"))
    restored = Log(JobStateMachine.restore(log.machine.snapshot()), index=log.index)
    assert restored.machine.digest() == log.machine.digest()
    assert restored.claimed_ids(now_ms=500) == log.claimed_ids(now_ms=500)


def test_restore_keeps_the_name_table(monkeypatch: pytest.MonkeyPatch) -> None:
    # Names are bounded (NAMES_MAX); whether a new name fits must not depend on a restore.
    monkeypatch.setattr(limits, "NAMES_MAX", 3)
    log = Log()
    [outcome] = log.enqueue_result(spec(queue="q1", type="t1"), now_ms=0)
    [outcome] = log.enqueue_result(spec(queue="q2", type="t2"), now_ms=0)
    rejected(outcome, "too_many_names")
    restored = Log(JobStateMachine.restore(log.machine.snapshot()), index=log.index)
    command = Enqueue(now_ms=1, jobs=(spec(queue="q3", type="t1"),))
    assert restored.apply(command) == log.apply(command)
    assert restored.machine.digest() == log.machine.digest()


def test_restore_of_bytes_that_are_no_snapshot_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        JobStateMachine.restore(b"\xff\x00 not cbor")
    with pytest.raises(DecodeError):
        JobStateMachine.restore(JobStateMachine().snapshot()[:-1])


def test_restore_refuses_a_snapshot_cut_short_or_with_data_after_it() -> None:
    log = Log()
    for command in SCENARIO:
        log.apply(command)
    snapshot = log.machine.snapshot()
    with pytest.raises(DecodeError):
        JobStateMachine.restore(snapshot[: len(snapshot) // 2])
    with pytest.raises(DecodeError):
        JobStateMachine.restore(snapshot + codec.encode_plain_sequence([[1, 2, 3]]))
    without_tail = b"".join(
        codec.encode_plain_sequence([item])
        for item in list(codec.decode_plain_sequence(snapshot))[:-1]
    )
    with pytest.raises(DecodeError):
        JobStateMachine.restore(without_tail)


def test_a_jobs_history_names_the_log_entry_of_each_event() -> None:
    """Each event carries the index and term of the committed entry that caused it: the claim's
    index is also its fence, and a retry after a leader change shows the new term."""
    log = Log()
    log.term = 2
    log.enqueue(spec(id="j"))
    lease = log.claim_one()  # index 2
    log.term = 3
    log.fail(lease, retryable=False)  # index 3: dead
    log.single(Retry(now_ms=0, job_id="j"))  # index 4
    view = log.machine.get("j")
    assert view is not None
    events = [(e.event, e.index, e.term, e.fence) for e in view.history]
    assert events == [
        ("enqueued", 0, 0, 0),  # the enqueue itself is not an entry of the run's history
        ("claimed", 2, 2, 2),
        ("failed, not retryable", 3, 3, 2),
        ("retried", 4, 3, 2),
    ]
    assert lease.fence == 2
    restored = JobStateMachine.restore(log.machine.snapshot())
    assert restored.get("j") == view


def test_restore_holds_one_slice_of_raw_rows_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restore turns each slice of rows into jobs before reading the next: its peak memory
    is the restored state plus a slice's worth, not the state plus every raw row (which made
    a node that restored a million jobs hundreds of megabytes bigger than the jobs it held).
    Slices of 1,000 jobs here (16,384 in production: 2 MB against 400 MB at a million)."""
    monkeypatch.setattr(limits, "RESTORE_SLICE_JOBS", 1_000)
    log = Log()
    log.enqueue(*(spec(id=f"j{n}", payload=b"p" * 90) for n in range(5_000)))
    snapshot = log.machine.snapshot()
    gc.collect()
    tracemalloc.start()
    try:
        restored = JobStateMachine.restore(snapshot)
        retained, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(restored.jobs) == 5_000
    assert peak < 1.25 * retained, (peak, retained)


def test_the_job_state_holds_no_reference_cycles() -> None:
    """Node processes freeze long-lived objects out of the cyclic garbage collector
    (``raftq.node.__main__.freeze_survivors``): that is only safe if jobs, once forgotten, are
    freed by reference counting alone. Every transition, a purge, and a snapshot round trip
    leave no cyclic garbage behind."""
    gc.collect()
    gc.disable()
    try:
        log = Log()
        log.enqueue(*(spec(id=f"j{n}", max_attempts=1 + n % 2) for n in range(40)))
        leases = log.claim(now_ms=1, max_jobs=30)
        for lease in leases[:10]:
            log.complete(lease, now_ms=2)
        for lease in leases[10:20]:
            log.fail(lease, now_ms=3)
        log.apply(Cancel(now_ms=4, job_id="j35"))
        log.apply(ExpireLeases(now_ms=10_000_000))
        restored = JobStateMachine.restore(log.machine.snapshot())
        log.apply(Purge(now_ms=20_000_000, before_ms=20_000_000))
        del log, leases, restored
        assert gc.collect() == 0
    finally:
        gc.enable()
