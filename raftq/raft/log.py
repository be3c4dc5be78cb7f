"""The Raft log as the core sees it: persisted entries (``LogStorage``) plus the unstable tail.

Entries the core has appended but the node has not yet persisted live in ``unstable``; a
``Ready`` hands them out and ``stable_to`` drops them once written. A snapshot received from a
leader waits in ``pending_snapshot`` the same way. ``committed`` and ``applied`` are the two
cursors of Raft figure 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from raftq.errors import LocalProtocolError, LogCompacted, LogUnavailable
from raftq.raft.storage import LogStorage, cut_to_size
from raftq.raft.types import Entry, SnapshotMeta


@attrs.frozen(kw_only=True)
class IncomingSnapshot:
    """A leader's snapshot, received whole: persist it, restore the application from it."""

    meta: SnapshotMeta
    data: bytes


class RaftLog:
    def __init__(self, storage: LogStorage, *, committed: int) -> None:
        self.storage = storage
        snapshot = storage.snapshot_meta
        self.unstable: list[Entry] = []
        self.unstable_offset = storage.last_index() + 1
        self.pending_snapshot: IncomingSnapshot | None = None
        # A snapshot holds only committed entries, while the hard state's commit index is saved
        # lazily (``LogWriter``): after a restart it may lag behind the snapshot, never start
        # below it (found by the simulator: a node that snapshotted could not restart).
        committed = max(committed, snapshot.index)
        if not snapshot.index <= committed <= storage.last_index():
            raise LocalProtocolError(
                f"commit {committed} outside [{snapshot.index}, {storage.last_index()}]"
            )
        self.committed = committed
        self.applied = snapshot.index

    # --- positions ------------------------------------------------------------------------------

    def first_index(self) -> int:
        if self.pending_snapshot is not None:
            return self.pending_snapshot.meta.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        if self.unstable:
            return self.unstable[-1].index
        if self.pending_snapshot is not None:
            return self.pending_snapshot.meta.index
        return self.storage.last_index()

    def term(self, index: int) -> int:
        """Term of entry ``index``; raises ``LogCompacted`` or ``LogUnavailable``."""
        if index >= self.unstable_offset and self.unstable:
            if index > self.unstable[-1].index:
                raise LogUnavailable(f"entry {index} is past the end {self.last_index()}")
            return self.unstable[index - self.unstable_offset].term
        if self.pending_snapshot is not None:
            meta = self.pending_snapshot.meta
            if index == meta.index:
                return meta.term
            if index < meta.index:
                raise LogCompacted(f"entry {index} is in the snapshot")
            raise LogUnavailable(f"entry {index} is past the end {meta.index}")
        return self.storage.term(index)

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        try:
            return self.term(index) == term
        except (LogCompacted, LogUnavailable):
            return False

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Is a log ending at (last_index, last_term) at least as up to date as ours (5.4.1)?"""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    # --- reading --------------------------------------------------------------------------------

    def entries(self, low: int, high: int, bytes_max: int | None = None) -> list[Entry]:
        """Entries ``low <= index < high`` from storage and the unstable tail, cut to size."""
        if low >= high:
            return []
        if low < self.first_index():
            raise LogCompacted(f"entries from {low} are compacted")
        if high > self.last_index() + 1:
            raise LogUnavailable(f"entries up to {high} do not exist")
        result: list[Entry] = []
        if low < self.unstable_offset:
            result = self.storage.entries(low, min(high, self.unstable_offset), bytes_max)
            if high <= self.unstable_offset or len(result) < self.unstable_offset - low:
                return result  # all from storage (already cut), or cut short by bytes_max
        if high > self.unstable_offset:
            start = max(low, self.unstable_offset) - self.unstable_offset
            result = result + self.unstable[start : high - self.unstable_offset]
        return cut_to_size(result, bytes_max)

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Index of the first entry whose term differs from ours (or is new); 0 if none."""
        if not entries:
            return 0
        last = entries[-1]
        if self.match_term(last.index, last.term):
            return 0  # Log Matching (5.3): then every entry before it matches too
        if entries[0].index > self.last_index():
            return entries[0].index  # all new: the common case of a follower keeping up
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Our largest index <= ``index`` whose term is <= ``term``, with that term.

        Used on both sides of fast back-off: entries after it cannot match the other log.
        """
        while index > 0:
            try:
                our_term = self.term(index)
            except LogCompacted:
                return index, 0
            except LogUnavailable:
                index = self.last_index()
                continue
            if our_term <= term:
                return index, our_term
            index -= 1
        return 0, 0

    def next_committed_entries(self, bytes_max: int) -> list[Entry]:
        """Committed entries not yet handed out for applying, at most ``bytes_max`` of them."""
        if self.pending_snapshot is not None or self.committed <= self.applied:
            return []
        return self.entries(self.applied + 1, self.committed + 1, bytes_max)

    # --- changing -------------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Append to the unstable tail, replacing whatever was there from ``entries[0]`` on."""
        if not entries:
            return
        first = entries[0].index
        if first <= self.committed:
            raise LocalProtocolError(f"append at {first} would overwrite commit {self.committed}")
        if first > self.last_index() + 1:
            raise LocalProtocolError(f"append at {first} leaves a gap after {self.last_index()}")
        if first == self.unstable_offset + len(self.unstable):
            self.unstable.extend(entries)
        elif first <= self.unstable_offset:
            # Replaces persisted entries too: the node truncates them when it writes these.
            self.unstable_offset = first
            self.unstable = list(entries)
        else:
            del self.unstable[first - self.unstable_offset :]
            self.unstable.extend(entries)

    def maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: Sequence[Entry]
    ) -> int | None:
        """The follower side of AppendEntries: ``None`` if the log does not match at
        ``prev_index`` (5.3), else the index of the last entry the message vouches for."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            self.append(entries[conflict - prev_index - 1 :])
        self.commit_to(min(commit, last_new))
        return last_new

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise LocalProtocolError(f"commit {index} past the last entry {self.last_index()}")
            self.committed = index

    def applied_to(self, index: int) -> None:
        if not self.applied <= index <= self.committed:
            raise LocalProtocolError(f"applied {index} outside [{self.applied}, {self.committed}]")
        self.applied = index

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` are persisted: drop them from the unstable tail."""
        if not self.unstable or index < self.unstable_offset:
            return
        if index <= self.unstable[-1].index and self.term(index) == term:
            del self.unstable[: index + 1 - self.unstable_offset]
            self.unstable_offset = index + 1

    def restore(self, snapshot: IncomingSnapshot) -> None:
        """Replace the whole log by a leader's snapshot (it waits to be persisted)."""
        self.pending_snapshot = snapshot
        self.unstable = []
        self.unstable_offset = snapshot.meta.index + 1
        self.committed = snapshot.meta.index

    def snapshot_persisted(self) -> None:
        assert self.pending_snapshot is not None
        self.applied = self.pending_snapshot.meta.index
        self.pending_snapshot = None
