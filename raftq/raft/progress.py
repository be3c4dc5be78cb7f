"""The leader's view of one follower: how far it matches, and how to send it more.

Three states, as in etcd-io/raft: PROBE (one AppendEntries at a time until the logs are found
to match), REPLICATE (pipelined: many in flight, bounded by a window) and SNAPSHOT (sending the
snapshot in chunks; no appends until it is installed).
"""

from __future__ import annotations

import enum
from collections import deque

import attrs

from raftq.raft.types import SnapshotMeta


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@attrs.define(eq=False)
class Inflights:
    """Last indexes of the AppendEntries in flight, oldest first; at most ``capacity``."""

    capacity: int
    last_indexes: deque[int] = attrs.field(factory=deque)

    def full(self) -> bool:
        return len(self.last_indexes) >= self.capacity

    def add(self, last_index: int) -> None:
        assert not self.full()
        self.last_indexes.append(last_index)

    def free_to(self, index: int) -> None:
        """Acknowledged up to ``index``: those messages are no longer in flight."""
        while self.last_indexes and self.last_indexes[0] <= index:
            self.last_indexes.popleft()

    def free_first(self) -> None:
        if self.last_indexes:
            self.last_indexes.popleft()

    def clear(self) -> None:
        self.last_indexes.clear()


@attrs.define(eq=False)
class SnapshotTransfer:
    meta: SnapshotMeta
    total_bytes: int
    acknowledged_bytes: int = 0
    idle_ticks: int = 0
    """Ticks since the follower last acknowledged a chunk (a lost chunk is sent again)."""


@attrs.define(eq=False)
class Progress:
    next: int
    inflights: Inflights
    match: int = 0
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False
    """PROBE: an AppendEntries is out; send no other until it is answered (or a heartbeat is)."""
    heard: bool = False
    """Heard from at all since this leader's reign began (or since the peer joined). The round
    flags below start out true, so that check-quorum gives a new leader a round's grace; a
    membership change must not take that grace for an answer (``replication.answering``)."""
    recent_active: bool = True
    """Heard from since the last check-quorum round."""
    active_last_round: bool = True
    """Heard from in the round before (a membership change counts a voter as up if it was
    heard from in either: the current round may have only just begun)."""
    learner: bool = False
    snapshot: SnapshotTransfer | None = None
    commit_sent: int = 0
    """The commit index last told to this follower (an empty append carries a newer one)."""
    read_round: int = 0
    applied: int = 0
    """The follower's applied index, as its last heartbeat answer said."""
    """The highest ReadIndex round this follower acknowledged (a heartbeat's context)."""

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT and self.snapshot is not None:
            self.next = max(self.match + 1, self.snapshot.meta.index + 1)
        else:
            self.next = self.match + 1
        self._enter(ProgressState.PROBE)

    def become_replicate(self) -> None:
        self.next = self.match + 1
        self._enter(ProgressState.REPLICATE)

    def become_snapshot(self, meta: SnapshotMeta, total_bytes: int) -> None:
        self._enter(ProgressState.SNAPSHOT)
        self.snapshot = SnapshotTransfer(meta=meta, total_bytes=total_bytes)

    def _enter(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.snapshot = None
        self.inflights.clear()

    def maybe_update(self, index: int) -> bool:
        """The follower matches up to ``index``; True if that is news."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease_to(self, rejected: int, hint: int) -> bool:
        """A rejection of ``prev_index == rejected``; ``hint`` is where the logs may match.

        False if the rejection is stale (answers a message older than our current guess).
        """
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def sent_entries(self, last_index: int | None) -> None:
        """An AppendEntries went out; ``last_index`` of its entries, ``None`` if empty."""
        if self.state is ProgressState.REPLICATE:
            if last_index is not None:
                self.next = last_index + 1
                self.inflights.add(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True
