"""Concurrency and rate limits in the job state machine (docs/limits.md, issue #17 item 2).

(``tests/test_limits.py`` is about ``raftq/limits.py``, the bounds; this is about the feature.)
Each test names the rule it proves; ``tests/test_jobs_model.py`` checks the same rules against
the reference model on random logs.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import cbor2
import pytest

from raftq import codec, limits
from raftq.errors import DecodeError
from raftq.jobs.commands import (
    Cancel,
    Claim,
    ClaimResult,
    Command,
    Complete,
    Done,
    Enqueue,
    ExpireLeases,
    Fail,
    JobSpec,
    Rejected,
    Release,
    RemoveLimit,
    Result,
    SetLimit,
)
from raftq.jobs.job import JobState
from raftq.jobs.machine import JobStateMachine
from raftq.jobs.snapshot import encode_state

PLAIN = JobSpec(
    id="",
    type="t",
    payload=b"",
    queue="q",
    priority=0,
    delay_ms=0,
    max_attempts=3,
    timeout_ms=1_000,
    key="",
)


class Log:
    """A machine and the next log index."""

    def __init__(self) -> None:
        self.machine = JobStateMachine()
        self.index = itertools.count(1)
        self.now_ms = 1_000

    def apply(self, command: Command) -> Result:
        return self.machine.apply(next(self.index), command)

    def at(self, now_ms: int) -> Log:
        self.now_ms = now_ms
        return self

    def enqueue(self, *ids: str, group: str = "", queue: str = "q", priority: int = 0) -> None:
        specs = tuple(
            attrs.evolve(PLAIN, id=job_id, group=group, queue=queue, priority=priority)
            for job_id in ids
        )
        self.apply(Enqueue(now_ms=self.now_ms, jobs=specs))

    def claim(self, max_jobs: int = 100, hold_ms: int = 0, **more: Any) -> list[str]:
        result = self.apply(
            Claim(now_ms=self.now_ms, claimer="w", max_jobs=max_jobs, hold_ms=hold_ms, **more)
        )
        assert isinstance(result, ClaimResult)
        return [lease.job_id for lease in result.leases]

    def limit(self, scope: str, name: str, **numbers: int) -> Result:
        return self.apply(SetLimit(now_ms=self.now_ms, scope=scope, name=name, **numbers))

    def fence(self, job_id: str) -> int:
        run = self.machine.jobs[job_id].run
        assert run is not None
        return run.fence

    def complete(self, job_id: str) -> Result:
        fence = self.fence(job_id)
        return self.apply(Complete(now_ms=self.now_ms, job_id=job_id, fence=fence))

    def row(self, scope: str, name: str) -> dict[str, Any]:
        rows = [
            row for row in self.machine.limit_rows() if (row["scope"], row["name"]) == (scope, name)
        ]
        assert len(rows) == 1
        return rows[0]


# --- concurrency --------------------------------------------------------------------------------


def test_a_group_runs_at_most_its_concurrency_and_does_not_block_the_queue() -> None:
    log = Log()
    log.limit("group", "g", concurrency=2)
    log.enqueue("g1", "g2", "g3", "g4", group="g")
    log.enqueue("p1", "p2")
    assert log.claim() == ["g1", "g2", "p1", "p2"]
    assert log.claim() == []
    assert log.row("group", "g")["running"] == 2
    assert log.row("group", "g")["pending"] == 2
    log.complete("g1")
    assert log.claim() == ["g3"]  # the slot freed, in enqueue order
    assert log.claim() == []


def test_a_prefetched_job_counts_from_its_claim_and_a_release_frees_its_slot_once() -> None:
    log = Log()
    log.limit("group", "g", concurrency=1)
    log.enqueue("a", "b", group="g")
    assert log.claim(hold_ms=5_000) == ["a"]  # handed out ahead of a free worker slot
    assert log.claim(hold_ms=5_000) == []
    fence = log.fence("a")
    release = Release(now_ms=log.now_ms, job_ids=("a",), fences=(fence,))
    assert isinstance(log.apply(release).outcomes[0], Done)  # type: ignore[union-attr]
    assert log.row("group", "g")["running"] == 0
    # The same release again is stale: it frees nothing a second time.
    assert isinstance(log.apply(release).outcomes[0], Rejected)  # type: ignore[union-attr]
    assert log.row("group", "g")["running"] == 0
    assert log.claim() == ["a"]
    assert log.claim() == []


def test_an_expired_lease_frees_its_slot_and_a_stale_report_does_not_free_it_again() -> None:
    log = Log()
    log.limit("group", "g", concurrency=1)
    log.enqueue("a", "b", group="g")
    assert log.claim() == ["a"]
    stale = log.fence("a")
    log.at(log.now_ms + 1_000).apply(ExpireLeases(now_ms=log.now_ms))
    assert log.machine.jobs["a"].state is JobState.FAILED
    assert log.claim() == ["b"]  # a's slot is free; a itself waits for its backoff
    late = log.apply(Complete(now_ms=log.now_ms, job_id="a", fence=stale))
    assert isinstance(late, Rejected)
    assert late.code == "lease_lost"
    assert log.row("group", "g")["running"] == 1  # b still holds the one slot
    assert log.claim() == []


@pytest.mark.parametrize("outcome", ["complete", "fail", "cancel_then_fail", "dead"])
def test_every_end_of_a_running_job_frees_its_slot(outcome: str) -> None:
    log = Log()
    log.limit("group", "g", concurrency=1)
    log.enqueue("a", "b", group="g")
    assert log.claim() == ["a"]
    fence = log.fence("a")
    if outcome == "complete":
        log.complete("a")
    elif outcome == "fail":
        log.apply(Fail(now_ms=log.now_ms, job_id="a", fence=fence))
    elif outcome == "cancel_then_fail":
        log.apply(Cancel(now_ms=log.now_ms, job_id="a"))
        assert log.claim() == []  # a cancel requested does not free the slot: a still runs
        log.apply(Fail(now_ms=log.now_ms, job_id="a", fence=fence))
        assert log.machine.jobs["a"].state is JobState.CANCELLED
    else:
        log.apply(Fail(now_ms=log.now_ms, job_id="a", fence=fence, retryable=False))
        assert log.machine.jobs["a"].state is JobState.DEAD
    assert log.claim() == ["b"]


def test_a_failed_attempt_frees_its_one_slot_not_two() -> None:
    log = Log()
    log.limit("group", "g", concurrency=2)
    log.enqueue("a", "b", "c", "d", group="g")
    assert log.claim() == ["a", "b"]
    log.apply(Fail(now_ms=log.now_ms, job_id="a", fence=log.fence("a")))
    assert log.row("group", "g")["running"] == 1
    assert log.claim() == ["c"]
    assert log.claim() == []


def test_lowering_a_limit_never_preempts_and_removing_it_opens_the_group() -> None:
    log = Log()
    log.limit("group", "g", concurrency=3)
    log.enqueue("a", "b", "c", "d", "e", group="g")
    assert log.claim(max_jobs=2) == ["a", "b"]
    log.limit("group", "g", concurrency=1)
    assert log.machine.jobs["a"].state is JobState.RUNNING  # nothing preempted
    assert log.claim() == []
    log.complete("a")
    assert log.claim() == []  # one still runs, and the limit is now one
    log.complete("b")
    assert log.claim() == ["c"]
    assert isinstance(log.apply(RemoveLimit(now_ms=log.now_ms, scope="group", name="g")), Done)
    assert log.claim() == ["d", "e"]
    missing = log.apply(RemoveLimit(now_ms=log.now_ms, scope="group", name="g"))
    assert isinstance(missing, Rejected)
    assert missing.code == "not_found"


def test_a_queue_limit_skips_the_queue_and_not_the_others() -> None:
    log = Log()
    log.limit("queue", "slow", concurrency=1)
    log.enqueue("s1", "s2", queue="slow", priority=5)
    log.enqueue("f1", "f2", queue="fast")
    assert log.claim() == ["s1", "f1", "f2"]
    assert log.claim() == []
    assert log.row("queue", "slow") | {"pending": 1, "running": 1} == log.row("queue", "slow")
    log.complete("s1")
    assert log.claim() == ["s2"]


def test_a_job_counts_against_both_its_queue_and_its_group() -> None:
    log = Log()
    log.limit("queue", "q", concurrency=2)
    log.limit("group", "g", concurrency=1)
    log.enqueue("g1", "g2", group="g")
    log.enqueue("p1", "p2")
    assert log.claim() == ["g1", "p1"]  # g2: its group is full; p2: the queue is full
    log.complete("p1")
    assert log.claim() == ["p2"]


def test_a_cancelled_job_that_stood_for_its_parked_group_lets_the_next_one_up() -> None:
    """The group's parked jobs come back one at a time (its representative in the ready
    queue); when that one is cancelled before it is claimed, the next takes its place."""
    log = Log()
    log.limit("group", "g", concurrency=1)
    log.enqueue("a", "b", "c", group="g")
    assert log.claim() == ["a"]
    assert log.claim() == []  # b and c parked
    log.complete("a")  # b is put back
    log.apply(Cancel(now_ms=log.now_ms, job_id="b"))
    assert log.claim() == ["c"]


def test_a_claim_meets_each_parked_job_once_not_at_every_claim() -> None:
    """The ready index: a full group's jobs are set aside once (into its lane), not scanned
    by every claim; each slot freed puts back one job, which the next claim takes."""
    log = Log()
    log.limit("group", "g", concurrency=1)
    log.enqueue(*(f"g{n}" for n in range(2_000)), group="g")
    log.enqueue(*(f"p{n}" for n in range(100)))
    parks = 0
    table = log.machine.limit_table
    park = table.park

    def counted(*args: Any) -> None:
        nonlocal parks
        parks += 1
        park(*args)

    table.park = counted  # type: ignore[method-assign]
    assert log.claim(max_jobs=2) == ["g0", "p0"]
    assert parks == 1_999  # every other job of g, each once
    for n in range(1, 50):
        assert log.claim(max_jobs=1) == [f"p{n}"]
        log.complete(f"g{n - 1}")
        assert log.claim(max_jobs=1) == [f"g{n}"]
    assert parks == 1_999  # not one job of g looked at again
    assert table.parked("g") == 2_000 - 50


def test_limits_do_not_change_the_order_of_the_jobs_they_let_through() -> None:
    log = Log()
    log.limit("group", "g", concurrency=1)
    log.enqueue("g1", "g2", group="g", priority=1)
    log.enqueue("h1", group="h", priority=1)
    log.enqueue("p1")
    assert log.claim(max_jobs=1) == ["g1"]
    assert log.claim(max_jobs=1) == ["h1"]
    log.enqueue("g3", group="g", priority=2)  # better than g2, enqueued while g is full
    log.complete("g1")
    assert log.claim(max_jobs=1) == ["g3"]
    log.complete("g3")
    assert log.claim(max_jobs=1) == ["g2"]


# --- rate -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["queue", "group"])
def test_a_rate_lets_n_jobs_start_in_any_window_of_its_length(scope: str) -> None:
    """Sliding window ``(now - window, now]`` on the stamped clock: a job handed out at t
    stops counting at t + window exactly. (A queue's window is judged at each claim; a
    group's parked jobs wake when it moves on: both are checked.)"""
    log = Log()
    log.limit(scope, "g" if scope == "group" else "q", rate=2, window_ms=1_000)
    log.enqueue(*(f"j{n}" for n in range(6)), group="g")
    assert log.at(1_000).claim(max_jobs=1) == ["j0"]
    assert log.at(1_500).claim() == ["j1"]
    assert log.at(1_999).claim() == []
    assert log.at(2_000).claim() == ["j2"]  # j0's hand-out left the window
    assert log.at(2_499).claim() == []
    assert log.at(2_500).claim() == ["j3"]
    assert log.at(3_500).claim() == ["j4", "j5"]
    assert log.row(scope, "g" if scope == "group" else "q")["started_in_window"] == 2


def test_a_released_job_still_counts_against_the_rate() -> None:
    log = Log()
    log.limit("queue", "q", rate=1, window_ms=10_000)
    log.enqueue("a", "b")
    assert log.claim(hold_ms=100) == ["a"]
    fence = log.fence("a")
    log.apply(Release(now_ms=log.now_ms, job_ids=("a",), fences=(fence,)))
    assert log.claim() == []  # a was handed out: that is a start, released or not
    assert log.at(log.now_ms + 10_000).claim() == ["a"]


def test_a_rate_blocked_group_wakes_when_its_window_moves_on_without_a_claim_of_it() -> None:
    log = Log()
    log.limit("group", "g", rate=1, window_ms=1_000)
    log.enqueue("a", "b", group="g")
    assert log.at(1_000).claim() == ["a"]
    assert log.claim() == []  # b parked
    log.at(2_000).enqueue("x")
    assert log.claim() == ["b", "x"]


def test_a_new_rate_counts_from_when_it_is_set_and_the_same_one_set_again_keeps_its_count() -> None:
    log = Log()
    log.limit("group", "g", rate=3, window_ms=1_000)
    log.enqueue(*(f"j{n}" for n in range(7)), group="g")
    assert log.claim() == ["j0", "j1", "j2"]
    log.limit("group", "g", rate=3, window_ms=1_000)  # a retried command: nothing changes
    assert log.claim() == []
    log.limit("group", "g", rate=2, window_ms=1_000)  # a new rate: its window starts now
    assert log.claim() == ["j3", "j4"]
    assert log.claim() == []


# --- the table ------------------------------------------------------------------------------------


def test_limit_commands_refuse_what_is_not_a_limit() -> None:
    with pytest.raises(ValueError, match="concurrency or a rate"):
        SetLimit(now_ms=0, scope="group", name="g")
    with pytest.raises(ValueError, match="window"):
        SetLimit(now_ms=0, scope="group", name="g", rate=5)
    with pytest.raises(ValueError, match="scope"):
        SetLimit(now_ms=0, scope="type", name="g", concurrency=1)
    with pytest.raises(ValueError, match="concurrency"):
        SetLimit(now_ms=0, scope="queue", name="q", concurrency=-1)
    with pytest.raises(ValueError, match="1 to"):
        SetLimit(now_ms=0, scope="queue", name="", concurrency=1)


def test_the_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "LIMITS_MAX", 2)
    monkeypatch.setattr(limits, "LIMIT_RATE_STARTS_MAX", 10)
    log = Log()
    assert isinstance(log.limit("group", "a", concurrency=1), Done)
    refused = log.limit("group", "b", rate=11, window_ms=1)
    assert isinstance(refused, Rejected)
    assert refused.code == "too_many_limits"
    assert isinstance(log.limit("group", "b", rate=10, window_ms=1), Done)
    refused = log.limit("group", "c", concurrency=1)
    assert isinstance(refused, Rejected)
    assert refused.code == "too_many_limits"
    assert isinstance(log.limit("group", "a", concurrency=5), Done)  # a change is no new row


# --- snapshots ------------------------------------------------------------------------------------


def busy_log() -> Log:
    log = Log()
    log.limit("group", "g", concurrency=1, rate=5, window_ms=60_000)
    log.limit("queue", "q", concurrency=10)
    log.enqueue("g1", "g2", "g3", group="g")
    log.enqueue("h1", "h2", group="h")
    log.enqueue("p1")
    log.claim()
    return log


def test_a_restored_machine_holds_the_same_limits_and_counts_and_claims_alike() -> None:
    log = busy_log()
    restored = JobStateMachine.restore(log.machine.snapshot())
    assert restored.snapshot() == log.machine.snapshot()
    assert restored.limit_rows() == log.machine.limit_rows()
    assert restored.limit_table.group_running == {"g": 1, "h": 2}
    twin = Log()
    twin.machine, twin.index, twin.now_ms = restored, itertools.count(100), log.now_ms
    log.index = itertools.count(100)
    for each in (log, twin):
        each.complete("g1")
        assert each.claim() == ["g2"]
    assert restored.snapshot() == log.machine.snapshot()


def test_the_sections_hold_only_jobs_with_a_group_and_the_limits() -> None:
    sections = busy_log().machine.snapshot_sections()
    assert sections["jobs.group"] == [
        ["g1", "g"],
        ["g2", "g"],
        ["g3", "g"],
        ["h1", "h"],
        ["h2", "h"],
    ]
    assert [row[:5] for row in sections["limits"]] == [
        ["group", "g", 1, 5, 60_000],
        ["queue", "q", 10, 0, 0],
    ]
    assert sections["limits"][0][5] == [1_000]
    assert JobStateMachine().snapshot_sections() == {}


@pytest.mark.parametrize(
    ("section", "value", "problem"),
    [
        ("jobs.group", [["nobody", "g"]], "unknown job"),
        ("jobs.group", [["p1", ""]], "unknown job"),
        ("jobs.group", "g", "not a list"),
        ("limits", [["group", "g", 0, 0, 0, []]], "concurrency or a rate"),
        ("limits", [["group", "g", 1, 1, 10, [5, 3]]], "starts"),
        ("limits", [["team", "g", 1, 0, 0, []]], "scope"),
    ],
)
def test_a_bad_section_is_refused(section: str, value: Any, problem: str) -> None:
    log = Log()
    log.enqueue("p1")
    machine = log.machine
    machine.snapshot_sections = lambda: {section: value}  # type: ignore[method-assign]
    with pytest.raises(DecodeError, match=problem):
        JobStateMachine.restore(encode_state(machine))


def test_a_plain_job_costs_no_byte_for_the_group_field() -> None:
    plain = codec.encode(PLAIN)
    grouped = codec.encode(attrs.evolve(PLAIN, group="tenant-7"))
    assert codec.decode(plain, JobSpec).group == ""
    assert codec.decode(grouped, JobSpec).group == "tenant-7"
    assert len(cbor2.loads(plain)) == 9  # as before the field existed
    assert len(cbor2.loads(grouped)) == 10


def test_views_show_the_group() -> None:
    log = busy_log()
    view = log.machine.get("g1")
    assert view is not None
    assert view.group == "g"
    plain = log.machine.get("p1")
    assert plain is not None
    assert plain.group == ""


def test_a_shorter_rate_window_wakes_the_group_s_parked_jobs_at_its_own_end() -> None:
    """Found by the simulator (seed 1100054: a follower restored from a snapshot claimed other
    jobs than the log's replay). A job parked while a one-per-2-s rate was full scheduled its
    group's wake-up for the window's end; the rate then became one per 0.5 s, and when the
    group filled its new window and parked a job again, that older, later wake-up stood: the
    group reopened after 0.5 s but its parked job stayed parked, and a newer job of the group
    that was not parked went first. A restored machine (lanes are not in snapshots) claims
    the older job, as it must."""
    log = Log()
    log.apply(
        SetLimit(now_ms=1_000, scope="group", name="g", concurrency=3, rate=1, window_ms=2_000)
    )
    log.at(1_000).enqueue("a", "b", "c", group="g")
    assert log.at(1_000).claim() == ["a"]  # b and c parked; wake-up at 3,000
    log.apply(SetLimit(now_ms=1_100, scope="group", name="g", concurrency=3, rate=1, window_ms=500))
    assert log.at(1_200).claim(max_jobs=1) == ["b"]  # a new window: b comes back and goes
    assert log.at(1_300).claim() == []  # c is parked again: the window reopens at 1,700
    log.at(1_800).enqueue("d", group="g")
    restored = JobStateMachine.restore(log.machine.snapshot())
    expected = restored.apply(99, Claim(now_ms=1_800, claimer="w", max_jobs=1))
    assert isinstance(expected, ClaimResult)
    assert [lease.job_id for lease in expected.leases] == ["c"]
    assert log.at(1_800).claim(max_jobs=1) == ["c"]
