"""``DurableLog``: the log storage the Raft core reads, over WAL + snapshots + hard state.

Layout of a data directory::

    LOCK            held (flock) while a process uses the directory
    hardstate       term, vote, commit (replaced atomically)
    snapshots/      <term>-<index>.snap, the newest two
    wal/            <first index>.log segments

Reads (``term``, ``entries``) are synchronous, as the sans-IO core needs: terms come from the
WAL's in-memory index, recent entries from a bounded cache, older ones from one ``pread`` per
segment. Writes are async and durable on return.

Retention: the logical log starts after the newest snapshot, but the WAL is only compacted
below the *older* kept snapshot, so if the newest snapshot is ever found damaged the node can
still start from the older one and replay the WAL up to where it was.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from raftq import limits
from raftq.errors import (
    CorruptionError,
    LocalProtocolError,
    LogCompacted,
    LogUnavailable,
    StorageError,
)
from raftq.raft.storage import InitialState, LogStorage, cut_to_size
from raftq.raft.types import Entry, HardState, SnapshotMeta
from raftq.storage import hard_state as hard_state_file
from raftq.storage.disk import Disk, DiskLock
from raftq.storage.snapshots import SnapshotStore, SnapshotWriter
from raftq.storage.wal import WalStatistics, WriteAheadLog

logger = logging.getLogger("raftq.storage")

LOCK_PATH = "LOCK"
WAL_DIRECTORY = "wal"


class DurableLog:
    """Entries after the newest snapshot, the snapshot itself, and the hard state."""

    def __init__(
        self,
        disk: Disk,
        lock: DiskLock,
        wal: WriteAheadLog,
        snapshots: SnapshotStore,
        hard_state: HardState,
        *,
        cache_entries: int,
    ) -> None:
        self._disk = disk
        self._lock = lock
        self._wal = wal
        self._snapshots = snapshots
        self._hard_state = hard_state
        self._snapshot = snapshots.newest() or SnapshotMeta(index=0, term=0)
        self._cache: list[Entry] = []
        self._cache_entries = cache_entries

    @classmethod
    async def open(
        cls,
        disk: Disk,
        *,
        segment_bytes: int = limits.WAL_SEGMENT_BYTES,
        fsync: bool = True,
        cache_entries: int = limits.LOG_CACHE_ENTRIES,
    ) -> DurableLog:
        """Lock the data directory and recover it, or raise ``DataDirError``/``CorruptionError``."""
        lock = disk.lock(LOCK_PATH)
        wal: WriteAheadLog | None = None
        try:
            hard_state = await hard_state_file.load_hard_state(disk)
            snapshots = await SnapshotStore.open(disk)
            snapshot = snapshots.newest() or SnapshotMeta(index=0, term=0)
            wal = await WriteAheadLog.open(
                disk,
                WAL_DIRECTORY,
                start_index=snapshot.index + 1,
                segment_bytes=segment_bytes,
                fsync=fsync,
            )
            await _reconcile(wal, snapshot)
            log = cls(disk, lock, wal, snapshots, hard_state, cache_entries=cache_entries)
            if hard_state.commit > log.last_index():
                raise CorruptionError(
                    f"commit index {hard_state.commit} is past the last entry "
                    f"{log.last_index()}: entries that were synced are missing",
                    path=hard_state_file.PATH,
                    offset=0,
                )
        except BaseException:
            if wal is not None:
                await wal.close()
            lock.release()
            raise
        logger.info(
            "log recovered first=%d last=%d snapshot=%d term=%d commit=%d",
            log.first_index(),
            log.last_index(),
            snapshot.index,
            hard_state.term,
            hard_state.commit,
        )
        return log

    # --- reads for the Raft core ----------------------------------------------------------------

    def initial_state(self) -> InitialState:
        return InitialState(hard_state=self._hard_state, snapshot=self._snapshot)

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    @property
    def snapshot_meta(self) -> SnapshotMeta:
        """The newest snapshot (index 0 when there is none)."""
        return self._snapshot

    def first_index(self) -> int:
        return self._snapshot.index + 1

    def last_index(self) -> int:
        return max(self._wal.last_index, self._snapshot.index)

    def term(self, index: int) -> int:
        """The term of entry ``index``; the snapshot's term at its own index."""
        if index == self._snapshot.index:
            return self._snapshot.term
        self._check_range(index, index + 1)
        cache_first = self._cache[0].index if self._cache else None
        if cache_first is not None and index >= cache_first:
            return self._cache[index - cache_first].term
        return self._wal.term(index)

    def entries(self, low: int, high: int, bytes_max: int | None = None) -> list[Entry]:
        """Entries ``low <= index < high``, cut after ``bytes_max`` (but at least one)."""
        self._check_range(low, high)
        if low == high:
            return []
        cache_first = self._cache[0].index if self._cache else high
        if low >= cache_first:
            return cut_to_size(self._cache[low - cache_first : high - cache_first], bytes_max)
        return self._wal.read(low, high, bytes_max)

    def _check_range(self, low: int, high: int) -> None:
        if low < self.first_index():
            raise LogCompacted(f"entries before {self.first_index()} are in the snapshot")
        if high > self.last_index() + 1:
            raise LogUnavailable(f"entries after {self.last_index()} do not exist yet")

    # --- writes ---------------------------------------------------------------------------------

    async def append(self, entries: Sequence[Entry]) -> None:
        """Durably append; entries from an index already present replace the suffix there.

        One append at a time (the node's Raft peer is the only writer).
        """
        if not entries:
            return
        first = entries[0].index
        if first <= self._snapshot.index:
            raise LocalProtocolError(f"append at {first} inside the snapshot")
        if first < self._wal.next_index:
            if first <= self._hard_state.commit:
                raise LocalProtocolError(
                    f"append at {first} would overwrite committed entries (commit "
                    f"{self._hard_state.commit})"
                )
            await self._wal.truncate_suffix(first)
            cache_first = self._cache[0].index if self._cache else first
            del self._cache[max(0, first - cache_first) :]
        # Cached before they are durable: reads stop at the WAL's durable last index anyway.
        self._cache_extend(entries)
        try:
            await self._wal.append(entries)
        except BaseException:
            self._cache.clear()
            raise

    def _cache_extend(self, entries: Sequence[Entry]) -> None:
        if self._cache and self._cache[-1].index + 1 != entries[0].index:
            self._cache.clear()
        self._cache.extend(entries)
        if len(self._cache) > 2 * self._cache_entries:
            del self._cache[: len(self._cache) - self._cache_entries]

    async def save_hard_state(self, state: HardState) -> None:
        if state == self._hard_state:
            return
        assert state.term >= self._hard_state.term, (state, self._hard_state)
        try:
            await hard_state_file.save_hard_state(self._disk, state)
        except OSError as error:  # the old file still stands: saving again later is safe
            raise StorageError(f"saving the hard state failed: {error}") from None
        self._hard_state = state

    @property
    def failure(self) -> StorageError | None:
        """Why the log refuses writes (a failed write or sync), or None."""
        return self._wal.failure

    async def recover(self) -> None:
        """Make the log writable again after a ``StorageError`` (``WriteAheadLog.recover``);
        raises ``StorageError`` while the disk still fails."""
        self._cache.clear()
        await self._wal.recover()

    async def save_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Keep a snapshot the application took at an applied index; compact behind it.

        A leader's snapshot installed (or committed) while the application was catching up
        supersedes it: then this one is dropped. (The applier snapshots from its own task, so
        the two race; found by the simulator, where this raised and stopped the node.)"""
        if self._superseded(meta):
            logger.info("snapshot at %d skipped: a newer one was installed", meta.index)
            return
        if not self._snapshot.index < meta.index <= self.last_index():
            raise LocalProtocolError(
                f"snapshot at {meta.index} outside ({self._snapshot.index}, {self.last_index()}]"
            )
        if meta.term != self.term(meta.index):
            raise LocalProtocolError(f"snapshot term {meta.term} != log term at {meta.index}")
        await self._snapshots.save(meta, data)
        if meta.index > self._snapshot.index:  # unless an install overtook it meanwhile
            await self._adopt_snapshot(meta)

    def _superseded(self, meta: SnapshotMeta) -> bool:
        newest = self._snapshots.newest()
        return meta.index <= max(self._snapshot.index, newest.index if newest else 0)

    async def begin_snapshot_install(self, meta: SnapshotMeta) -> SnapshotWriter:
        """Start receiving a leader's snapshot; pass the writer to ``finish_snapshot_install``."""
        if meta.index <= self._snapshot.index:
            raise LocalProtocolError(f"stale snapshot {meta.index} <= {self._snapshot.index}")
        return await self._snapshots.begin(meta)

    async def finish_snapshot_install(self, writer: SnapshotWriter) -> None:
        """Make a received snapshot the log's base (Raft figure 13, steps 6-8).

        If the log holds the snapshot's last entry with the same term, the entries after it are
        kept; otherwise the whole log is discarded.
        """
        meta = writer.meta
        await writer.commit()
        retain = meta.index <= self._wal.last_index and (
            meta.index >= self._wal.first_index and self._wal.term(meta.index) == meta.term
        )
        if not retain:
            await self._wal.reset(meta.index + 1)
            self._cache.clear()
        await self._adopt_snapshot(meta)

    async def _adopt_snapshot(self, meta: SnapshotMeta) -> None:
        self._snapshot = meta
        kept = self._snapshots.kept
        await self._wal.compact(kept[0].index if len(kept) > 1 else meta.index)
        while self._cache and self._cache[0].index <= meta.index:
            del self._cache[: meta.index - self._cache[0].index + 1]

    async def snapshot_data(self) -> bytes:
        return await self._snapshots.load(self._snapshot)

    def snapshot_size(self, meta: SnapshotMeta) -> int:
        return self._snapshots.size_of(meta)

    def snapshot_chunk(self, meta: SnapshotMeta, offset: int, length: int) -> bytes:
        return self._snapshots.read_chunk(meta, offset, length)

    async def close(self) -> None:
        try:
            await self._wal.close()
        finally:
            self._lock.release()

    def wal_statistics(self) -> WalStatistics:
        return self._wal.statistics()


async def _reconcile(wal: WriteAheadLog, snapshot: SnapshotMeta) -> None:
    """Make the WAL continue the snapshot, as the interrupted install meant it to."""
    if wal.first_index > snapshot.index + 1:
        raise CorruptionError(
            f"the wal starts at {wal.first_index} but the snapshot ends at {snapshot.index}: "
            "entries in between are missing",
            path=WAL_DIRECTORY,
            offset=0,
        )
    if wal.first_index == snapshot.index + 1:
        return
    if wal.last_index < snapshot.index or wal.term(snapshot.index) != snapshot.term:
        logger.warning(
            "wal does not continue snapshot %d, discarding it wal_first=%d wal_last=%d",
            snapshot.index,
            wal.first_index,
            wal.last_index,
        )
        await wal.reset(snapshot.index + 1)


if TYPE_CHECKING:
    # mypy checks here that DurableLog is the storage the Raft core reads.
    _storage: type[LogStorage] = DurableLog
