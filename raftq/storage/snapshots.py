"""The snapshot store: ``snapshots/<term>-<index>.snap``, written atomically, newest two kept.

File layout::

    b"RQSNAP1\\n" | data | record(SnapshotFooter) | u32 length of that record

The header fields (index, term, membership, data length, data checksum) sit in a footer so a
snapshot can be streamed to disk chunk by chunk (as it arrives from a leader) with its checksum
computed on the way, never holding the whole of it in memory twice.
"""

from __future__ import annotations

import logging
import re

import attrs
from crc32c import crc32c

from raftq import codec, limits
from raftq.errors import CorruptionError, DecodeError, LocalProtocolError, LogCompacted
from raftq.raft.types import SnapshotMeta
from raftq.storage.atomic import TMP_SUFFIX, AtomicWriter
from raftq.storage.disk import Disk, ensure_directory
from raftq.storage.record import LENGTH, ScanEnd, TailKind, frame, scan

logger = logging.getLogger("raftq.storage")

MAGIC = b"RQSNAP1\n"
DIRECTORY = "snapshots"
_NAME = re.compile(r"(\d{20})-(\d{20})\.snap")


@codec.register
@attrs.frozen(kw_only=True)
class SnapshotFooter:
    meta: SnapshotMeta
    data_bytes: int
    data_crc32c: int


def snapshot_name(meta: SnapshotMeta) -> str:
    return f"{meta.term:020d}-{meta.index:020d}.snap"


class SnapshotWriter:
    """Streams one snapshot to disk; visible only after ``commit``."""

    def __init__(self, store: SnapshotStore, meta: SnapshotMeta, writer: AtomicWriter) -> None:
        self._store = store
        self._meta = meta
        self._writer = writer
        self._data_bytes = 0
        self._crc = 0

    @property
    def meta(self) -> SnapshotMeta:
        return self._meta

    @property
    def data_bytes(self) -> int:
        return self._data_bytes

    async def write(self, chunk: bytes) -> None:
        if self._data_bytes + len(chunk) > limits.SNAPSHOT_BYTES_MAX:
            raise LocalProtocolError(f"snapshot larger than {limits.SNAPSHOT_BYTES_MAX} bytes")
        self._crc = crc32c(chunk, self._crc)
        self._data_bytes += len(chunk)
        await self._writer.write(chunk)

    async def commit(self) -> None:
        footer = frame(
            codec.encode(
                SnapshotFooter(meta=self._meta, data_bytes=self._data_bytes, data_crc32c=self._crc)
            )
        )
        await self._writer.write(footer + LENGTH.pack(len(footer)))
        await self._writer.commit()
        await self._store._committed(self._meta, self._data_bytes)

    async def abort(self) -> None:
        await self._writer.abort()


class SnapshotStore:
    """Knows the valid snapshots on disk, newest last; open with ``SnapshotStore.open``."""

    def __init__(self, disk: Disk, directory: str, kept: dict[SnapshotMeta, int]) -> None:
        self._disk = disk
        self._directory = directory
        self._sizes = kept
        """Data bytes of each kept snapshot."""
        self._kept = sorted(kept, key=lambda meta: (meta.index, meta.term))

    @classmethod
    async def open(cls, disk: Disk, directory: str = DIRECTORY) -> SnapshotStore:
        """Find every valid snapshot; remove unfinished writes; set damaged files aside."""
        await ensure_directory(disk, directory)
        valid: dict[SnapshotMeta, int] = {}
        for name in await disk.list(directory):
            path = f"{directory}/{name}"
            if name.endswith(TMP_SUFFIX):
                logger.info("snapshot removing unfinished write path=%s", path)
                await disk.remove(path)
                continue
            match = _NAME.fullmatch(name)
            if match is None:
                continue
            try:
                meta, data_bytes = _verify(await disk.read(path), path)
            except CorruptionError as error:
                logger.error("snapshot damaged, set aside error=%r", str(error))
                await disk.rename(path, path + ".corrupt")
                continue
            if (meta.term, meta.index) != (int(match.group(1)), int(match.group(2))):
                logger.error("snapshot name does not match its footer, set aside path=%s", path)
                await disk.rename(path, path + ".corrupt")
                continue
            valid[meta] = data_bytes
        await disk.fsync_directory(directory)
        return cls(disk, directory, valid)

    @property
    def kept(self) -> tuple[SnapshotMeta, ...]:
        """Valid snapshots on disk, oldest first."""
        return tuple(self._kept)

    def newest(self) -> SnapshotMeta | None:
        return self._kept[-1] if self._kept else None

    def path_of(self, meta: SnapshotMeta) -> str:
        return f"{self._directory}/{snapshot_name(meta)}"

    async def begin(self, meta: SnapshotMeta) -> SnapshotWriter:
        newest = self.newest()
        if newest is not None and meta.index < newest.index:
            raise LocalProtocolError(f"snapshot at {meta.index} older than {newest.index}")
        writer = await AtomicWriter.begin(self._disk, self.path_of(meta))
        await writer.write(MAGIC)
        return SnapshotWriter(self, meta, writer)

    async def save(self, meta: SnapshotMeta, data: bytes) -> None:
        writer = await self.begin(meta)
        try:
            step = limits.SNAPSHOT_WRITE_CHUNK_BYTES
            for start in range(0, len(data), step):
                await writer.write(data[start : start + step])
            await writer.commit()
        except BaseException:
            await writer.abort()
            raise

    async def load(self, meta: SnapshotMeta) -> bytes:
        """The data of a kept snapshot, checked against its footer."""
        path = self.path_of(meta)
        data = await self._disk.read(path)
        _, data_bytes = _verify(data, path)
        return data[len(MAGIC) : len(MAGIC) + data_bytes]

    def size_of(self, meta: SnapshotMeta) -> int:
        """Data bytes of a kept snapshot; ``LogCompacted`` once it is deleted."""
        size = self._sizes.get(meta)
        if size is None:
            raise LogCompacted(f"snapshot {meta.index} (term {meta.term}) is no longer kept")
        return size

    def read_chunk(self, meta: SnapshotMeta, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of a kept snapshot's data at ``offset`` (for a follower)."""
        size = self.size_of(meta)
        length = max(0, min(length, size - offset))
        return self._disk.read_at(self.path_of(meta), len(MAGIC) + offset, length)

    async def _committed(self, meta: SnapshotMeta, data_bytes: int) -> None:
        """Record a new snapshot and delete all but the newest ``SNAPSHOTS_KEPT``."""
        self._sizes[meta] = data_bytes
        self._kept = [kept for kept in self._kept if kept != meta] + [meta]
        self._kept.sort(key=lambda kept: (kept.index, kept.term))
        doomed, self._kept = (
            self._kept[: -limits.SNAPSHOTS_KEPT],
            self._kept[-limits.SNAPSHOTS_KEPT :],
        )
        for old in doomed:
            del self._sizes[old]
            await self._disk.remove(self.path_of(old))
        if doomed:
            await self._disk.fsync_directory(self._directory)


def _verify(data: bytes, path: str) -> tuple[SnapshotMeta, int]:
    """Check magic, footer and data checksum: the meta and data size, or ``CorruptionError``."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + LENGTH.size:
        raise CorruptionError("not a raftq snapshot", path=path, offset=0)
    (footer_length,) = LENGTH.unpack_from(data, len(data) - LENGTH.size)
    footer_start = len(data) - LENGTH.size - footer_length
    if footer_start < len(MAGIC):
        raise CorruptionError("snapshot footer length is impossible", path=path, offset=len(data))
    ends: list[ScanEnd] = []
    records = list(scan(data[footer_start : len(data) - LENGTH.size], ends))
    if ends[0].kind is not TailKind.CLEAN or len(records) != 1:
        raise CorruptionError("snapshot footer damaged", path=path, offset=footer_start)
    try:
        footer: SnapshotFooter = codec.decode(records[0][1].tobytes(), SnapshotFooter)
    except DecodeError as error:
        raise CorruptionError(str(error), path=path, offset=footer_start) from None
    data_view = memoryview(data)[len(MAGIC) : footer_start]
    if footer.data_bytes != len(data_view) or crc32c(data_view) != footer.data_crc32c:
        raise CorruptionError("snapshot data checksum mismatch", path=path, offset=len(MAGIC))
    return footer.meta, footer.data_bytes
