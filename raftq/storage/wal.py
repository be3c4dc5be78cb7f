"""The segmented write-ahead log.

Segments are files ``<first index, 20 digits>.log`` holding consecutive entries as records
(``raftq.storage.record``). Only the last segment is written; it rolls over past
``segment_bytes``. An in-memory index (offset and term of every entry) makes ``term`` O(1) and
a read one ``pread`` per segment touched.

One appender at a time: each ``append`` is one ``write`` and one ``fdatasync``, and a second
append while one is in flight is our bug (``LocalProtocolError``). In a node the Raft peer is
the only appender and batches a whole round of proposals into one append, so sharing syncs
among concurrent appenders (group commit, which this log did until issue #16) never had
anything to share: docs/storage.md gives the figures.

A failed write or fdatasync poisons the log: after an fsync error the kernel may have dropped
the dirty pages, so nothing written since the last good sync can be trusted, and every later
append raises ``StorageError`` until ``recover``. Reopening would not do: since Linux 4.13 a
failed writeback marks the pages clean, so replay reads bytes that never reached the disk, and
no later fsync writes them. ``recover`` instead truncates the active segment back to the size
it had after its last good sync (the only bytes known durable), so whatever is appended next is
written, and synced, afresh.
"""

from __future__ import annotations

import logging
import re
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

import attrs
import cbor2
import trio

from raftq import codec, limits
from raftq.errors import CorruptionError, LocalProtocolError, StorageError
from raftq.raft.types import Entry, EntryKind
from raftq.storage.disk import Disk, DiskFile, ensure_directory
from raftq.storage.record import HEADER, ScanEnd, TailKind, frame, scan

logger = logging.getLogger("raftq.storage")

_SEGMENT_NAME = re.compile(r"(\d{20})\.log")


def segment_name(first_index: int) -> str:
    return f"{first_index:020d}.log"


@attrs.define(eq=False)
class _Segment:
    """One segment file and the position and term of each of its entries."""

    first_index: int
    path: str
    size: int = 0
    offsets: array[int] = attrs.field(factory=lambda: array("Q"))
    terms: array[int] = attrs.field(factory=lambda: array("Q"))

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.offsets) - 1

    def end_of(self, position: int) -> int:
        """Byte offset just past the record at ``position`` (0-based within the segment)."""
        following = position + 1
        return self.offsets[following] if following < len(self.offsets) else self.size


@attrs.frozen(kw_only=True)
class WalStatistics:
    appends: int
    """Appends written, one ``fdatasync`` each (with fsync on)."""
    entries: int
    bytes_written: int
    segments: int
    first_index: int
    last_index: int


class WriteAheadLog:
    """Entries ``first_index..last_index`` on disk; open with ``WriteAheadLog.open``."""

    def __init__(
        self,
        disk: Disk,
        directory: str,
        segments: list[_Segment],
        active: DiskFile,
        *,
        segment_bytes: int,
        fsync: bool,
    ) -> None:
        assert segments
        assert active.path == segments[-1].path
        self._disk = disk
        self._directory = directory
        self._segments = segments
        self._firsts = [segment.first_index for segment in segments]
        self._active = active
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._next_index = segments[-1].last_index + 1
        self._writing = False
        """An append is being written."""
        self._maintenance_lock = trio.Lock()
        """Serializes sync, truncation, compaction and reset among themselves."""
        self._failed: StorageError | None = None
        self._appends = 0
        self._entries = 0
        self._bytes_written = 0

    # --- opening and replay ---------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        disk: Disk,
        directory: str = "wal",
        *,
        start_index: int = 1,
        segment_bytes: int = limits.WAL_SEGMENT_BYTES,
        fsync: bool = True,
    ) -> WriteAheadLog:
        """Replay ``directory``: index every entry, cut a torn tail, refuse corruption.

        An empty directory gets a first segment at ``start_index``.
        """
        assert start_index >= 1, start_index
        assert segment_bytes > HEADER.size, segment_bytes
        await ensure_directory(disk, directory)
        found: list[_Segment] = []
        for name in await disk.list(directory):
            match = _SEGMENT_NAME.fullmatch(name)
            if match is None:
                logger.warning("wal ignoring unknown file path=%s/%s", directory, name)
                continue
            found.append(_Segment(first_index=int(match.group(1)), path=f"{directory}/{name}"))
        segments: list[_Segment] = []
        for segment in found:
            if segments and segment.first_index != segments[-1].last_index + 1:
                raise CorruptionError(
                    f"segment starts at index {segment.first_index} but the previous one ends "
                    f"at {segments[-1].last_index}: entries are missing",
                    path=segment.path,
                    offset=0,
                )
            await _replay_segment(disk, segment, last=segment is found[-1])
            segments.append(segment)
        if segments:
            active = await disk.open(segments[-1].path, create=False)
            assert active.size == segments[-1].size, (active.size, segments[-1].size)
        else:
            segment = _Segment(
                first_index=start_index, path=f"{directory}/{segment_name(start_index)}"
            )
            active = await disk.open(segment.path)
            await disk.fsync_directory(directory)
            segments.append(segment)
        return cls(disk, directory, segments, active, segment_bytes=segment_bytes, fsync=fsync)

    # --- reading --------------------------------------------------------------------------------

    @property
    def first_index(self) -> int:
        return self._segments[0].first_index

    @property
    def last_index(self) -> int:
        """The last durable entry (``first_index - 1`` when empty)."""
        return self._segments[-1].last_index

    def term(self, index: int) -> int:
        segment, position = self._locate(index)
        return segment.terms[position]

    def read(self, low: int, high: int, bytes_max: int | None = None) -> list[Entry]:
        """Entries ``low <= index < high``; past ``bytes_max`` of records, stop (but return one)."""
        assert self.first_index <= low <= high <= self.last_index + 1, (low, high)
        entries: list[Entry] = []
        total_bytes = 0
        index = low
        while index < high:
            segment, position = self._locate(index)
            last_position = min(len(segment.offsets), position + high - index) - 1
            start = segment.offsets[position]
            data = self._disk.read_at(segment.path, start, segment.end_of(last_position) - start)
            wanted = last_position - position + 1
            for relative_offset, body in scan(data, []):
                total_bytes += HEADER.size + len(body)
                if bytes_max is not None and entries and total_bytes > bytes_max:
                    return entries
                entries.append(_decode_entry(body, segment.path, start + relative_offset))
                wanted -= 1
            if wanted != 0:
                raise CorruptionError("entry no longer readable", path=segment.path, offset=start)
            index = last_position + segment.first_index + 1
        return entries

    def _locate(self, index: int) -> tuple[_Segment, int]:
        if not self.first_index <= index <= self.last_index:
            raise IndexError(f"index {index} not in wal [{self.first_index}, {self.last_index}]")
        segment = self._segments[bisect_right(self._firsts, index) - 1]
        return segment, index - segment.first_index

    # --- appending -----------------------------------------------------------------------------

    @property
    def next_index(self) -> int:
        """The index the next ``append`` must start at."""
        return self._next_index

    async def append(self, entries: Sequence[Entry]) -> None:
        """Append consecutive ``entries`` with one write and one fdatasync; return when they are
        durable (or written, without fsync). One append at a time.

        Raises ``StorageError`` if the write or sync failed: none of them may be acknowledged.
        """
        if self._failed is not None:
            raise self._failed
        if not entries:
            return
        self._require_quiet("append")
        if entries[0].index != self._next_index:
            raise LocalProtocolError(
                f"wal append at index {entries[0].index}, expected {self._next_index}"
            )
        frames = []
        for expected, entry in enumerate(entries, start=self._next_index):
            if entry.index != expected:
                raise LocalProtocolError(f"wal append of index {entry.index}, not {expected}")
            frames.append(frame(codec.encode(entry, Entry)))
        self._writing = True
        try:
            # Shielded: a write cut off part-way would leave the in-memory index and the file
            # disagreeing. A cancelled appender still finishes the write (the Raft peer's
            # persist is bounded by the disk, and a failed one poisons the log anyway).
            with trio.CancelScope(shield=True):
                await self._write(entries[0].index, frames, [entry.term for entry in entries])
        finally:
            self._writing = False
        self._next_index = entries[-1].index + 1
        self._appends += 1

    async def _write(self, first_index: int, frames: list[bytes], terms: list[int]) -> None:
        segment = self._segments[-1]
        if segment.size >= self._segment_bytes and segment.offsets:
            await self._roll_over(first_index)
            segment = self._segments[-1]
        assert first_index == segment.last_index + 1, (first_index, segment)
        data = b"".join(frames)
        try:
            await self._active.write(data, sync=self._fsync)
        except OSError as error:
            self._fail(f"wal write to {segment.path} failed: {error}")
        offset = segment.size
        for record in frames:
            segment.offsets.append(offset)
            offset += len(record)
        segment.terms.extend(terms)
        segment.size = offset
        assert offset == self._active.size, (offset, self._active.size)
        self._entries += len(frames)
        self._bytes_written += len(data)

    async def _roll_over(self, first_index: int) -> None:
        """Seal the active segment (synced, so only the last segment can ever be torn)."""
        try:
            await self._active.fdatasync()
            await self._active.close()
            segment = _Segment(
                first_index=first_index, path=f"{self._directory}/{segment_name(first_index)}"
            )
            self._active = await self._disk.open(segment.path)
            await self._disk.fsync_directory(self._directory)
        except OSError as error:
            self._fail(f"wal rollover to index {first_index} failed: {error}")
        self._segments.append(segment)
        self._firsts.append(first_index)

    def _fail(self, message: str) -> None:
        self._failed = StorageError(f"{message}; refusing writes until the log is recovered")
        logger.error("wal failed error=%r", message)
        raise self._failed

    async def sync(self) -> None:
        """fdatasync the active segment (for logs opened with ``fsync=False``)."""
        self._require_quiet("sync")
        async with self._maintenance_lock:
            if self._failed is not None:
                raise self._failed
            try:
                await self._active.fdatasync()
            except OSError as error:
                self._fail(f"wal fdatasync of {self._active.path} failed: {error}")

    @property
    def failure(self) -> StorageError | None:
        """Why the log refuses writes, or None while it is writable."""
        return self._failed

    async def recover(self) -> None:
        """Make a failed log writable again, trusting only what was synced (module docstring).

        Cuts the active segment back to its size after the last good sync, removes segments a
        failed rollover left behind, syncs both, and continues at the entry after the last
        durable one. Raises ``StorageError`` if that fails too (the disk is still broken: call
        again later) or cannot be done in place (a failed reset: restart the node)."""
        self._require_quiet("recover")
        async with self._maintenance_lock:
            if self._failed is None:
                return
            segment = self._segments[-1]
            try:
                await self._active.close()
                for name in await self._disk.list(self._directory):
                    match = _SEGMENT_NAME.fullmatch(name)
                    if match is not None and int(match.group(1)) > segment.first_index:
                        await self._disk.remove(f"{self._directory}/{name}")
                if not await self._disk.exists(segment.path):
                    raise StorageError(
                        f"wal segment {segment.path} is gone (an interrupted reset): restart "
                        "the node, start-up completes the reset"
                    )
                self._active = await self._disk.open(segment.path, create=False)
                if self._active.size < segment.size:
                    raise StorageError(f"wal segment {segment.path} shrank: restart the node")
                await self._active.truncate(segment.size)
                await self._active.fdatasync()
                await self._disk.fsync_directory(self._directory)
            except OSError as error:
                raise StorageError(f"wal recovery failed: {error}") from None
            logger.warning(
                "wal recovered path=%s size=%d last_index=%d after=%r",
                segment.path,
                segment.size,
                segment.last_index,
                str(self._failed),
            )
            self._failed = None
            self._next_index = segment.last_index + 1

    def _require_quiet(self, operation: str) -> None:
        if self._writing:
            raise LocalProtocolError(f"wal {operation} while an append is in flight")

    # --- truncation and compaction --------------------------------------------------------------

    async def truncate_suffix(self, index: int) -> None:
        """Delete entries ``index..last``: a Raft conflict. Not concurrent with ``append``.

        Later segments go first, so a crash part-way leaves a shorter but gap-free log.
        """
        self._require_quiet("truncate_suffix")
        if not self.first_index <= index <= self.last_index + 1:
            raise LocalProtocolError(
                f"wal truncate_suffix({index}) outside [{self.first_index}, {self.last_index + 1}]"
            )
        async with self._maintenance_lock:
            if self._failed is not None:
                raise self._failed
            try:
                await self._truncate_locked(index)
            except OSError as error:
                self._fail(f"wal truncate at index {index} failed: {error}")
        self._next_index = index

    async def _remove_segment(self, segment: _Segment) -> None:
        """Remove one segment durably before the next: POSIX lets any subset of unsynced
        removals survive a crash, and a subset could leave a gap in the middle of the log."""
        await self._disk.remove(segment.path)
        await self._disk.fsync_directory(self._directory)

    async def _truncate_locked(self, index: int) -> None:
        # The in-memory index shrinks with each step that is done, before it is synced, so a
        # failure part-way leaves an index that ``recover`` can trust (a removed segment's file
        # left behind is removed again there).
        while len(self._segments) > 1 and self._segments[-1].first_index >= index:
            await self._active.close()
            doomed = self._segments.pop()
            self._firsts.pop()
            await self._remove_segment(doomed)
            self._active = await self._disk.open(self._segments[-1].path, create=False)
        segment = self._segments[-1]
        if index <= segment.last_index:
            position = index - segment.first_index
            cut = segment.offsets[position]
            await self._active.truncate(cut)
            del segment.offsets[position:]
            del segment.terms[position:]
            segment.size = cut
            await self._active.fdatasync()

    async def compact(self, index: int) -> None:
        """Delete whole segments whose entries are all ``<= index`` (never the active one).

        May run while appends are in flight: it never touches the active segment.
        """
        async with self._maintenance_lock:
            doomed = 0
            while doomed < len(self._segments) - 1 and self._segments[doomed].last_index <= index:
                doomed += 1
            if doomed == 0:
                return
            try:
                for _ in range(doomed):  # forgotten first: a failure leaves no missing file listed
                    segment = self._segments.pop(0)
                    self._firsts.pop(0)
                    await self._remove_segment(segment)
            except OSError as error:
                self._fail(f"wal compaction below index {index} failed: {error}")

    async def reset(self, next_index: int) -> None:
        """Drop every entry and continue at ``next_index`` (after installing a snapshot)."""
        self._require_quiet("reset")
        async with self._maintenance_lock:
            try:
                await self._active.close()
                for segment in reversed(self._segments):
                    await self._remove_segment(segment)
                segment = _Segment(
                    first_index=next_index,
                    path=f"{self._directory}/{segment_name(next_index)}",
                )
                self._active = await self._disk.open(segment.path)
                await self._disk.fsync_directory(self._directory)
            except OSError as error:
                self._fail(f"wal reset to index {next_index} failed: {error}")
            self._segments = [segment]
            self._firsts = [next_index]
            self._next_index = next_index

    async def close(self) -> None:
        await self._active.close()

    def statistics(self) -> WalStatistics:
        return WalStatistics(
            appends=self._appends,
            entries=self._entries,
            bytes_written=self._bytes_written,
            segments=len(self._segments),
            first_index=self.first_index,
            last_index=self.last_index,
        )


def _decode_entry(body: memoryview, path: str, offset: int) -> Entry:
    """A record's entry, checked as strictly as ``codec.decode(body, Entry)`` would (the
    fields' types and ranges, 64-bit integers, a known kind) in a tenth of the time: a
    restart reads every entry after the snapshot, twice (membership, then applying)."""
    index, term, kind, data = _record_fields(body, path, offset)
    entry_kind = _ENTRY_KINDS.get(kind) if type(kind) is int else None
    if type(data) is not bytes or entry_kind is None:
        raise CorruptionError("record is not a log entry", path=path, offset=offset)
    return Entry(index=index, term=term, kind=entry_kind, data=data)


def _record_fields(body: memoryview, path: str, offset: int) -> list[Any]:
    """The record's four fields, the first two (index and term) checked."""
    try:
        raw = cbor2.loads(body, max_depth=limits.NESTING_DEPTH_MAX)
    except Exception as error:  # cbor2 raises several types for bad input
        raise CorruptionError(f"record is not CBOR: {error}", path=path, offset=offset) from None
    if (
        not isinstance(raw, list)
        or len(raw) != _ENTRY_FIELDS
        or type(raw[0]) is not int
        or type(raw[1]) is not int
        or not 0 < raw[0] <= codec.INT_MAX
        or not 0 <= raw[1] <= codec.INT_MAX
    ):
        raise CorruptionError("record is not a log entry", path=path, offset=offset)
    return raw


_ENTRY_KINDS = {kind.value: kind for kind in EntryKind}


def _index_and_term(body: memoryview, path: str, offset: int) -> tuple[int, int]:
    """The index and term of a record, all that replay needs: the plain CBOR array, without
    building an ``Entry``. The whole entry is checked when it is read."""
    index, term, _, _ = _record_fields(body, path, offset)
    return index, term


_ENTRY_FIELDS = len(attrs.fields(Entry))


async def _replay_segment(disk: Disk, segment: _Segment, *, last: bool) -> None:
    data = await disk.read(segment.path)
    ends: list[ScanEnd] = []
    expected = segment.first_index
    for offset, body in scan(data, ends):
        index, term = _index_and_term(body, segment.path, offset)
        if index != expected:
            raise CorruptionError(
                f"record holds index {index}, expected {expected}",
                path=segment.path,
                offset=offset,
            )
        segment.offsets.append(offset)
        segment.terms.append(term)
        expected += 1
    (end,) = ends
    segment.size = end.offset
    if end.kind is TailKind.CLEAN:
        if not last and not segment.offsets:
            raise CorruptionError("empty segment before the last one", path=segment.path, offset=0)
        return
    if end.kind is TailKind.CORRUPT or not last:
        raise CorruptionError(
            f"{end.reason}; the log cannot be trusted past this point. Restore this node "
            "from a healthy peer (wipe its data directory and re-add it)",
            path=segment.path,
            offset=end.offset,
        )
    dropped = len(data) - end.offset
    logger.warning(
        "wal torn tail truncated path=%s offset=%d bytes=%d reason=%r",
        segment.path,
        end.offset,
        dropped,
        end.reason,
    )
    file = await disk.open(segment.path, create=False)
    try:
        await file.truncate(end.offset)
        await file.fdatasync()
    finally:
        await file.close()
