"""A job's provenance replayed from a snapshot and the log (raftq/jobs/provenance.py)."""

from __future__ import annotations

import pytest

from raftq import codec, limits
from raftq.jobs.commands import (
    Claim,
    Command,
    Complete,
    Enqueue,
    ExpireLeases,
    Extend,
    ExtendAll,
    JobSpec,
    Progress,
    Report,
)
from raftq.jobs.machine import JobStateMachine
from raftq.jobs.provenance import LOG, SNAPSHOT, job_story
from raftq.raft.types import Entry, EntryKind
from tests.test_jobs_commands import spec

JOB = "j2-0"  # the job the enqueue at index 2 derives


def _spec() -> JobSpec:
    return spec(type="email", timeout_ms=1_000)


class Log:
    """Entries as a leader would append them: each term opens with its leader's no-op."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def lead(self, term: int, leader: str) -> None:
        index = len(self.entries) + 1
        self.entries.append(
            Entry(index=index, term=term, kind=EntryKind.NOOP, data=leader.encode())
        )

    def append(self, command: Command) -> None:
        term = self.entries[-1].term
        data = codec.encode(command, Command)
        self.entries.append(Entry(index=len(self.entries) + 1, term=term, data=data))


def _a_job_that_expired_was_refused_and_succeeded() -> Log:
    """A lease's fence is the index of the claim that granted it."""
    log = Log()
    log.lead(1, "n1")
    log.append(Enqueue(now_ms=0, jobs=(_spec(),)))  # 2
    log.append(Claim(now_ms=10, claimer="n1/w1", hold_ms=0))  # 3: fence 3
    log.append(Progress(now_ms=20, job_ids=(JOB,), fences=(3,), values=(b'{"done":1}',)))  # 4
    log.append(ExpireLeases(now_ms=2_000))  # 5: the lease ran out
    log.lead(2, "n3")  # 6
    log.append(ExtendAll(now_ms=2_010, by_ms=500))  # 7: nothing of the job's runs
    log.append(Claim(now_ms=60_000, claimer="n2/w7", hold_ms=0))  # 8: after its backoff
    log.append(ExtendAll(now_ms=60_010, by_ms=500))  # 9
    log.append(Complete(now_ms=60_020, job_id=JOB, fence=3, result=b"late"))  # 10: stale
    log.append(Extend(now_ms=60_030, job_ids=(JOB,), fences=(8,), until_ms=64_000))  # 11
    log.append(Complete(now_ms=60_040, job_id=JOB, fence=8, result=b"ok"))  # 12
    return log


def test_every_entry_that_touched_the_job_is_told_with_its_term_leader_worker_and_fence() -> None:
    log = _a_job_that_expired_was_refused_and_succeeded()
    story = job_story(JOB, None, 0, log.entries)
    told = [(e.index, e.term, e.leader, e.event, e.worker, e.fence) for e in story.events]
    assert told == [
        (2, 1, "n1", "enqueued", "", 0),
        (3, 1, "n1", "claimed", "n1/w1", 3),
        (4, 1, "n1", "progress", "n1/w1", 3),
        (5, 1, "n1", "lease expired", "n1/w1", 3),  # whose: the lease's holder
        (8, 2, "n3", "claimed", "n2/w7", 8),
        (9, 2, "n3", "extended by a new leader", "n2/w7", 8),
        (10, 2, "n3", "refused: report", "n1/w1", 3),
        (11, 2, "n3", "extended", "n2/w7", 8),
        (12, 2, "n3", "succeeded", "n2/w7", 8),
    ]
    refused = story.events[6]
    assert refused.detail == "fence 3 is not the job's current lease (fence 8, running)"
    assert [event.attempt for event in story.events] == [0, 1, 1, 1, 2, 2, 2, 2, 2]
    assert {event.source for event in story.events} == {LOG}
    assert (story.complete_from, story.through, story.dropped) == (1, 12, 0)


def test_before_the_snapshot_the_story_is_what_the_snapshot_kept() -> None:
    """A snapshot taken after index 5 keeps the job's ring (its events with their indexes),
    not the progress nor the leaders; from index 6 on every entry is read again."""
    log = _a_job_that_expired_was_refused_and_succeeded()
    machine = JobStateMachine()
    for entry in log.entries[:5]:
        if entry.kind is EntryKind.COMMAND:
            machine.apply(entry.index, codec.decode(entry.data, Command), entry.term)
    story = job_story(JOB, machine.snapshot(), 5, log.entries[5:])
    kept = [(e.index, e.event, e.source) for e in story.events if e.source == SNAPSHOT]
    assert kept == [
        (0, "enqueued", SNAPSHOT),
        (3, "claimed", SNAPSHOT),
        (5, "lease expired", SNAPSHOT),
    ]
    assert [e.index for e in story.events if e.source == LOG] == [8, 9, 10, 11, 12]
    assert story.complete_from == 6
    assert all(e.leader == "" for e in story.events if e.source == SNAPSHOT)


def test_a_report_naming_the_job_in_a_batch_under_a_stale_fence_is_refused() -> None:
    from raftq.jobs.commands import Outcome

    log = Log()
    log.lead(1, "n1")
    log.append(Enqueue(now_ms=0, jobs=(_spec(),)))
    log.append(Claim(now_ms=10, claimer="n1/w1", hold_ms=0))
    log.append(
        Report(now_ms=20, outcomes=(Outcome(job_id=JOB, fence=7, succeeded=True, result=b""),))
    )
    (*_, refused) = job_story(JOB, None, 0, log.entries).events
    assert (refused.event, refused.fence) == ("refused: report", 7)


def test_a_job_never_seen_has_an_empty_story_and_an_older_log_no_leaders() -> None:
    log = _a_job_that_expired_was_refused_and_succeeded()
    assert job_story("nobody", None, 0, log.entries).events == ()
    old = [  # no-ops written before they named their leader
        Entry(index=e.index, term=e.term, kind=e.kind, data=b"") if e.kind is EntryKind.NOOP else e
        for e in log.entries
    ]
    assert {event.leader for event in job_story(JOB, None, 0, old).events} == {""}


def test_the_story_keeps_its_newest_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "JOB_STORY_EVENTS_MAX", 3)
    story = job_story(JOB, None, 0, _a_job_that_expired_was_refused_and_succeeded().entries)
    assert [e.index for e in story.events] == [10, 11, 12]
    assert story.dropped == 6
