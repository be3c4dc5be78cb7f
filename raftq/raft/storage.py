"""What the Raft core reads its log through, and an in-memory implementation.

``LogStorage`` is the synchronous read side of the durable log (``raftq.storage.DurableLog``
implements it); the core never writes it. The node persists each ``Ready`` into it before
calling ``advance``. ``MemoryStorage`` is the same contract in memory, for tests, the
benchmark and the simulator's pure checks.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Protocol

import attrs

from raftq.errors import LocalProtocolError, LogCompacted, LogUnavailable
from raftq.raft.types import Entry, HardState, SnapshotMeta


@attrs.frozen(kw_only=True)
class InitialState:
    """What a restarting Raft core needs first. The membership is the snapshot's; the core
    brings it up to date from the MEMBERSHIP entries after the snapshot."""

    hard_state: HardState
    snapshot: SnapshotMeta


class LogStorage(Protocol):
    """The persisted log: entries ``first_index()..last_index()`` after ``snapshot_meta``."""

    def initial_state(self) -> InitialState: ...

    @property
    def snapshot_meta(self) -> SnapshotMeta:
        """The newest snapshot (index 0 when there is none)."""
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def term(self, index: int) -> int:
        """Term of entry ``index`` (the snapshot's own index included); raises ``LogCompacted``
        below it and ``LogUnavailable`` past the end."""
        ...

    def entries(self, low: int, high: int, bytes_max: int | None = None) -> list[Entry]:
        """Entries ``low <= index < high``, cut after ``bytes_max`` (but at least one)."""
        ...

    def snapshot_size(self, meta: SnapshotMeta) -> int:
        """Bytes of snapshot ``meta``'s data; ``LogCompacted`` if it is no longer kept."""
        ...

    def snapshot_chunk(self, meta: SnapshotMeta, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of snapshot ``meta``'s data at ``offset``."""
        ...


def entries_size(entries: Sequence[Entry]) -> int:
    """The byte measure used for every entry bound: payload plus a fixed overhead."""
    return sum(map(len, map(_data, entries))) + ENTRY_OVERHEAD_BYTES * len(entries)


_data = operator.attrgetter("data")


ENTRY_OVERHEAD_BYTES = 16
"""Index, term and kind as encoded, roughly; keeps empty entries from counting as free."""


def cut_to_size(entries: list[Entry], bytes_max: int | None) -> list[Entry]:
    """The longest prefix within ``bytes_max`` (at least one entry)."""
    if bytes_max is None or entries_size(entries) <= bytes_max:
        return entries  # the common case, summed in C
    total = 0
    for count, entry in enumerate(entries):
        total += len(entry.data) + ENTRY_OVERHEAD_BYTES
        if total > bytes_max and count > 0:
            return entries[:count]
    return entries


class MemoryStorage:
    """``LogStorage`` in memory, plus the writes a node would make durable."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self._snapshot = SnapshotMeta(index=0, term=0)
        self._snapshot_data = b""
        self._entries: list[Entry] = []  # entries[0].index == snapshot.index + 1

    # --- LogStorage ---

    def initial_state(self) -> InitialState:
        return InitialState(hard_state=self.hard_state, snapshot=self._snapshot)

    @property
    def snapshot_meta(self) -> SnapshotMeta:
        return self._snapshot

    def first_index(self) -> int:
        return self._snapshot.index + 1

    def last_index(self) -> int:
        return self._snapshot.index + len(self._entries)

    def term(self, index: int) -> int:
        if index == self._snapshot.index:
            return self._snapshot.term
        if index < self._snapshot.index:
            raise LogCompacted(f"entry {index} is in the snapshot")
        if index > self.last_index():
            raise LogUnavailable(f"entry {index} is past the end {self.last_index()}")
        return self._entries[index - self._snapshot.index - 1].term

    def entries(self, low: int, high: int, bytes_max: int | None = None) -> list[Entry]:
        if low <= self._snapshot.index:
            raise LogCompacted(f"entries from {low} are in the snapshot")
        if high > self.last_index() + 1:
            raise LogUnavailable(f"entries up to {high} do not exist")
        offset = self._snapshot.index + 1
        return cut_to_size(self._entries[low - offset : high - offset], bytes_max)

    def snapshot_size(self, meta: SnapshotMeta) -> int:
        if meta != self._snapshot:
            raise LogCompacted(f"snapshot {meta.index} is no longer kept")
        return len(self._snapshot_data)

    def snapshot_chunk(self, meta: SnapshotMeta, offset: int, length: int) -> bytes:
        if meta != self._snapshot:
            raise LogCompacted(f"snapshot {meta.index} is no longer kept")
        return self._snapshot_data[offset : offset + length]

    # --- writes (what the node persists from a Ready) ---

    def append(self, entries: Sequence[Entry]) -> None:
        """Append, replacing any suffix from ``entries[0].index`` on."""
        if not entries:
            return
        first = entries[0].index
        if first <= self._snapshot.index or first > self.last_index() + 1:
            raise LocalProtocolError(
                f"append at {first} outside ({self._snapshot.index}, {self.last_index() + 1}]"
            )
        del self._entries[first - self._snapshot.index - 1 :]
        self._entries.extend(entries)

    def apply_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Install a leader's snapshot: keep the entries after it only if the log continues it."""
        keep: list[Entry] = []
        continues = self._snapshot.index < meta.index <= self.last_index() and (
            self.term(meta.index) == meta.term
        )
        if continues:
            keep = self._entries[meta.index - self._snapshot.index :]
        self._entries = keep
        self._snapshot = meta
        self._snapshot_data = data

    def create_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Keep a snapshot the application took at an applied index; compact behind it."""
        if not self._snapshot.index < meta.index <= self.last_index():
            raise LocalProtocolError(f"snapshot at {meta.index} outside the log")
        if self.term(meta.index) != meta.term:
            raise LocalProtocolError(f"snapshot term {meta.term} != log term at {meta.index}")
        self._entries = self._entries[meta.index - self._snapshot.index :]
        self._snapshot = meta
        self._snapshot_data = data
