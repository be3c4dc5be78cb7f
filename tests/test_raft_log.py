"""RaftLog and Progress units: the log-matching bookkeeping the core relies on."""

from __future__ import annotations

import pytest

from raftq.errors import LocalProtocolError, LogCompacted, LogUnavailable
from raftq.raft.log import IncomingSnapshot, RaftLog
from raftq.raft.progress import Inflights, Progress, ProgressState
from raftq.raft.storage import MemoryStorage
from raftq.raft.types import Entry, SnapshotMeta


def entry(index: int, term: int) -> Entry:
    return Entry(index=index, term=term, data=f"{index}/{term}".encode())


def log_with_terms(*terms: int, committed: int = 0) -> RaftLog:
    """A persisted log whose entry i has term terms[i-1]."""
    storage = MemoryStorage()
    storage.append([entry(index, term) for index, term in enumerate(terms, start=1)])
    return RaftLog(storage, committed=committed)


def test_term_reads_storage_and_the_unstable_tail() -> None:
    log = log_with_terms(1, 1, 2)
    log.append([entry(4, 3), entry(5, 3)])
    assert [log.term(index) for index in range(0, 6)] == [0, 1, 1, 2, 3, 3]
    assert log.last_index() == 5
    assert log.last_term() == 3
    with pytest.raises(LogUnavailable):
        log.term(6)


def test_entries_span_storage_and_unstable_and_respect_bytes() -> None:
    log = log_with_terms(1, 1, 2)
    log.append([entry(4, 3), entry(5, 3)])
    assert [e.index for e in log.entries(2, 6)] == [2, 3, 4, 5]
    assert [e.index for e in log.entries(2, 6, bytes_max=1)] == [2]
    assert log.entries(3, 3) == []
    with pytest.raises(LogUnavailable):
        log.entries(1, 7)


@pytest.mark.parametrize(
    ("appended", "conflict"),
    [
        ([], 0),
        ([entry(1, 1), entry(2, 2), entry(3, 3)], 0),  # all present
        ([entry(2, 2), entry(3, 3), entry(4, 4)], 4),  # new from 4
        ([entry(3, 3), entry(4, 4), entry(5, 4)], 4),
        ([entry(1, 4), entry(2, 4)], 1),  # conflict from the start
        ([entry(2, 1), entry(3, 4), entry(4, 4)], 2),
        ([entry(3, 1), entry(4, 2)], 3),
    ],
)
def test_find_conflict(appended: list[Entry], conflict: int) -> None:
    assert log_with_terms(1, 2, 3).find_conflict(appended) == conflict


@pytest.mark.parametrize(
    ("index", "term", "expected"),
    [
        (6, 5, (6, 4)),  # our entry 6 is term 4 <= 5
        (6, 3, (4, 3)),  # skip the term-4 entries back to the last term-3 one
        (6, 2, (2, 2)),
        (6, 1, (1, 1)),
        (6, 0, (0, 0)),
        (4, 4, (4, 3)),
        (10, 4, (6, 4)),  # past the end: start from our last entry
    ],
)
def test_find_conflict_by_term(index: int, term: int, expected: tuple[int, int]) -> None:
    assert log_with_terms(1, 2, 3, 3, 4, 4).find_conflict_by_term(index, term) == expected


def test_find_conflict_by_term_stops_at_the_snapshot() -> None:
    storage = MemoryStorage()
    storage.append([entry(index, 1) for index in range(1, 6)] + [entry(6, 2)])
    storage.create_snapshot(SnapshotMeta(index=4, term=1), b"")
    log = RaftLog(storage, committed=4)
    assert log.find_conflict_by_term(6, 0) == (3, 0)


def test_maybe_append_checks_the_previous_entry_and_truncates_conflicts() -> None:
    log = log_with_terms(1, 2, 3, committed=1)
    assert log.maybe_append(3, 2, 3, [entry(4, 3)]) is None  # term at 3 is 3, not 2
    assert log.maybe_append(5, 3, 3, []) is None  # no entry 5 at all
    assert log.maybe_append(1, 1, 5, [entry(2, 4), entry(3, 4)]) == 3
    assert [log.term(index) for index in (1, 2, 3)] == [1, 4, 4]
    assert log.committed == 3  # commit follows the leader, capped at the last new entry
    assert log.unstable_offset == 2  # the node rewrites from index 2


def test_maybe_append_commit_is_capped_by_what_the_message_vouches_for() -> None:
    log = log_with_terms(1, 1, 1, 1)
    assert log.maybe_append(1, 1, 10, [entry(2, 1)]) == 2
    assert log.committed == 2  # entries 3 and 4 were not vouched for by this message


def test_append_refuses_to_overwrite_committed_or_leave_a_gap() -> None:
    log = log_with_terms(1, 1, 1, committed=2)
    with pytest.raises(LocalProtocolError):
        log.append([entry(2, 2)])
    with pytest.raises(LocalProtocolError):
        log.append([entry(5, 2)])


def test_stable_to_drops_persisted_entries_only_if_terms_match() -> None:
    log = log_with_terms(1)
    log.append([entry(2, 1), entry(3, 1)])
    log.stable_to(2, 9)  # a different term: entry 2 was replaced meanwhile
    assert log.unstable_offset == 2
    log.stable_to(2, 1)
    assert log.unstable_offset == 3
    assert [e.index for e in log.unstable] == [3]


def test_commit_and_apply_cursors_only_move_forward_within_bounds() -> None:
    log = log_with_terms(1, 1, 1)
    log.commit_to(2)
    log.commit_to(1)
    assert log.committed == 2
    with pytest.raises(LocalProtocolError):
        log.commit_to(9)
    assert [e.index for e in log.next_committed_entries(1 << 20)] == [1, 2]
    log.applied_to(2)
    assert log.next_committed_entries(1 << 20) == []
    with pytest.raises(LocalProtocolError):
        log.applied_to(3)


def test_restore_replaces_the_log_until_persisted() -> None:
    log = log_with_terms(1, 1, 1, committed=1)
    meta = SnapshotMeta(index=10, term=3)
    log.restore(IncomingSnapshot(meta=meta, data=b"state"))
    assert (log.first_index(), log.last_index(), log.committed) == (11, 10, 10)
    assert log.term(10) == 3
    with pytest.raises(LogCompacted):
        log.term(5)
    assert log.next_committed_entries(1 << 20) == []  # nothing to apply but the snapshot
    log.storage.apply_snapshot(meta, b"state")  # type: ignore[attr-defined]
    log.snapshot_persisted()
    assert log.applied == 10
    assert log.pending_snapshot is None


def test_up_to_date_compares_last_term_then_length() -> None:
    log = log_with_terms(1, 2, 2)
    assert log.is_up_to_date(1, 3)
    assert log.is_up_to_date(3, 2)
    assert log.is_up_to_date(4, 2)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(9, 1)


# --- progress -----------------------------------------------------------------------------------


def progress(**fields: object) -> Progress:
    return Progress(next=5, inflights=Inflights(capacity=3), **fields)  # type: ignore[arg-type]


def test_probe_sends_one_append_at_a_time() -> None:
    tracker = progress()
    assert not tracker.is_paused()
    tracker.sent_entries(7)
    assert tracker.is_paused()
    assert tracker.next == 5  # a probe does not move next optimistically
    tracker.maybe_update(4)
    assert not tracker.is_paused()


def test_replicate_pipelines_up_to_the_window() -> None:
    tracker = progress(match=4)
    tracker.become_replicate()
    for last in (6, 8, 10):
        assert not tracker.is_paused()
        tracker.sent_entries(last)
    assert tracker.next == 11
    assert tracker.is_paused()
    tracker.inflights.free_to(8)
    assert not tracker.is_paused()
    assert list(tracker.inflights.last_indexes) == [10]


def test_rejections_move_next_back_but_stale_ones_are_ignored() -> None:
    tracker = progress(match=2)
    tracker.become_replicate()
    tracker.sent_entries(9)
    assert not tracker.maybe_decrease_to(2, 0)  # at or below match: stale
    assert tracker.maybe_decrease_to(7, 4)
    assert tracker.next == 3  # replicate falls back to match + 1
    tracker = progress(match=2)
    assert not tracker.maybe_decrease_to(7, 4)  # we are not probing at 7
    assert tracker.maybe_decrease_to(4, 3)
    assert tracker.next == 4  # the hint: entries after 3 cannot match
    assert tracker.maybe_decrease_to(3, 0)
    assert tracker.next == 3  # never below match + 1


def test_snapshot_state_pauses_until_it_is_installed() -> None:
    tracker = progress(match=1)
    tracker.become_snapshot(SnapshotMeta(index=20, term=2), 100)
    assert tracker.state is ProgressState.SNAPSHOT
    assert tracker.is_paused()
    tracker.become_probe()
    assert tracker.next == 21  # after the snapshot
    assert tracker.snapshot is None
