"""``MemoryDisk``: the ``Disk`` in memory, with POSIX crash semantics made explicit.

It keeps two views of everything: what the program sees now, and what would survive a power
cut. File contents reach the durable view at ``fdatasync``; names (create, rename, remove) reach
it at ``fsync_directory`` of their parent. ``crash`` throws the present away and rebuilds it from
the durable view, letting each file's unsynced appended tail survive not at all, in part (a torn
write) or as zeroes, as a real disk may. The simulator builds its ``SimDisk`` on this class.

The async methods never yield: a ``MemoryDisk`` operation is instantaneous. Latency and
scheduling belong to the simulator's wrapper.
"""

from __future__ import annotations

import enum
import errno
import random

import attrs

from raftq.errors import DataDirError
from raftq.storage.disk import parent_of


class TailFate(enum.Enum):
    """What a crash does to the unsynced bytes appended to a file."""

    LOST = "lost"
    """None of them survive."""
    TORN = "torn"
    """A prefix of them survives."""
    ZEROED = "zeroed"
    """A prefix survives, followed by zeroes (the file grew but some blocks never arrived)."""
    KEPT = "kept"
    """All of them survive (the kernel flushed in time)."""


@attrs.define(eq=False)
class _Inode:
    """A file's bytes. Durable: ``content[:synced_length]``, or ``truncated_from`` if set.

    Appends only grow ``content``, so syncing costs nothing per byte; a truncate below the
    synced length first saves the durable bytes in ``truncated_from`` until the next sync.
    """

    content: bytearray = attrs.field(factory=bytearray)
    synced_length: int = 0
    truncated_from: bytes | None = None
    lost: list[tuple[int, int]] = attrs.field(factory=list)
    """Byte ranges whose writeback failed and that no sync will write (``inject_lost_sync``):
    readable now, zeroes on the disk."""

    def durable(self) -> bytes:
        if self.truncated_from is not None:
            return self.truncated_from
        return self.synced()

    def synced(self) -> bytes:
        data = bytearray(self.content[: self.synced_length])
        for start, end in self.lost:
            data[start:end] = bytes(len(data[start:end]))
        return bytes(data)


class MemoryDisk:
    """An in-memory file system whose ``crash`` keeps only what was made durable."""

    def __init__(self) -> None:
        self._files: dict[str, _Inode] = {}
        self._directories: set[str] = {""}
        self._durable_files: dict[str, _Inode] = {}
        self._durable_directories: set[str] = {""}
        self._locks: set[str] = set()
        self._generation = 0
        self._sync_errors: list[tuple[int, bool]] = []
        self.syncs = 0
        """fdatasync calls so far: tests count them (one per WAL append)."""

    # --- faults ---------------------------------------------------------------------------------

    def inject_sync_error(self, code: int = errno.EIO) -> None:
        """Make the next fdatasync fail with ``OSError(code)`` (its data stays unsynced)."""
        self._sync_errors.append((code, False))

    def inject_lost_sync(self, code: int = errno.EIO) -> None:
        """Make the next fdatasync fail as Linux (4.13 and later) fails it: the unsynced pages
        are marked clean, so their bytes stay readable, but they never reach the disk, not even
        with a later fdatasync that succeeds ("fsyncgate"). Only rewriting them does."""
        self._sync_errors.append((code, True))

    def crash(self, rng: random.Random | None = None, fate: TailFate | None = None) -> None:
        """Lose power: keep the durable view; each unsynced tail meets ``fate``.

        With no ``fate``, ``rng`` picks one per file (and the prefix lengths); with neither,
        every unsynced byte is lost. Open files and locks die with the old generation.
        """
        self._generation += 1
        self._locks.clear()
        self._sync_errors.clear()
        files: dict[str, _Inode] = {}
        for path, inode in self._durable_files.items():
            survived = _surviving_content(inode, rng, fate)
            files[path] = _Inode(bytearray(survived), len(survived))
        self._files = files
        self._durable_files = dict(files)
        self._directories = set(self._durable_directories)

    # --- the Disk protocol ----------------------------------------------------------------------

    async def open(self, path: str, *, create: bool = True) -> MemoryFile:
        inode = self._files.get(path)
        if inode is None:
            if not create:
                raise FileNotFoundError(errno.ENOENT, "no such file", path)
            self._require_directory(parent_of(path))
            inode = self._files[path] = _Inode()
        return MemoryFile(self, path, inode, self._generation)

    async def read(self, path: str) -> bytes:
        return bytes(self._inode(path).content)

    def read_at(self, path: str, offset: int, length: int) -> bytes:
        return bytes(self._inode(path).content[offset : offset + length])

    async def size(self, path: str) -> int:
        return len(self._inode(path).content)

    async def exists(self, path: str) -> bool:
        return path in self._files or path in self._directories

    async def list(self, directory: str) -> list[str]:
        self._require_directory(directory)
        names = {p.rpartition("/")[2] for p in self._files if parent_of(p) == directory}
        names |= {
            d.rpartition("/")[2] for d in self._directories if d and parent_of(d) == directory
        }
        return sorted(names)

    async def make_directory(self, path: str) -> None:
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            self._directories.add("/".join(parts[:depth]))

    async def rename(self, source: str, target: str) -> None:
        inode = self._inode(source)
        self._require_directory(parent_of(target))
        del self._files[source]
        self._files[target] = inode

    async def remove(self, path: str) -> None:
        self._inode(path)
        del self._files[path]

    async def fsync_directory(self, directory: str) -> None:
        self._require_directory(directory)
        for path in [p for p in self._durable_files if parent_of(p) == directory]:
            del self._durable_files[path]
        for path, inode in self._files.items():
            if parent_of(path) == directory:
                self._durable_files[path] = inode
        self._durable_directories |= {
            d for d in self._directories if d and parent_of(d) == directory
        }

    def lock(self, path: str) -> MemoryLock:
        if path in self._locks:
            raise DataDirError(f"data directory is in use by another raftq process ({path})")
        self._locks.add(path)
        return MemoryLock(self, path, self._generation)

    # --- for MemoryFile and MemoryLock ----------------------------------------------------------

    def _inode(self, path: str) -> _Inode:
        inode = self._files.get(path)
        if inode is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return inode

    def _require_directory(self, directory: str) -> None:
        if directory not in self._directories:
            raise FileNotFoundError(errno.ENOENT, "no such directory", directory)

    def _check_alive(self, generation: int, path: str) -> None:
        if generation != self._generation:
            raise OSError(errno.EBADF, "file handle from before a crash", path)

    def _take_sync_error(self) -> tuple[int, bool] | None:
        return self._sync_errors.pop(0) if self._sync_errors else None


def _surviving_content(inode: _Inode, rng: random.Random | None, fate: TailFate | None) -> bytes:
    if inode.truncated_from is not None:
        # A truncate that was never synced: the size change reached the disk whole or not at all.
        if fate is TailFate.KEPT or (fate is None and rng is not None and rng.random() < 0.5):
            return bytes(inode.content)
        return inode.truncated_from
    synced = inode.synced()
    tail = bytes(inode.content[inode.synced_length :])
    if not tail:
        return synced
    if fate is None:
        fate = rng.choice(list(TailFate)) if rng is not None else TailFate.LOST
    if fate is TailFate.LOST:
        return synced
    if fate is TailFate.KEPT:
        return synced + tail
    kept = rng.randrange(len(tail)) if rng is not None else len(tail) // 2
    if fate is TailFate.TORN:
        return synced + tail[:kept]
    return synced + tail[:kept] + bytes(len(tail) - kept)


class MemoryFile:
    """A handle on a ``MemoryDisk`` file, valid until the disk crashes."""

    def __init__(self, disk: MemoryDisk, path: str, inode: _Inode, generation: int) -> None:
        self._disk = disk
        self._path = path
        self._inode = inode
        self._generation = generation
        self._closed = False

    @property
    def path(self) -> str:
        return self._path

    @property
    def size(self) -> int:
        return len(self._inode.content)

    def _check(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "file is closed", self._path)
        self._disk._check_alive(self._generation, self._path)

    async def write(self, data: bytes, *, sync: bool) -> None:
        self._check()
        self._inode.content += data
        if sync:
            await self.fdatasync()

    async def fdatasync(self) -> None:
        self._check()
        error = self._disk._take_sync_error()
        if error is not None:
            code, pages_lost = error
            if pages_lost and len(self._inode.content) > self._inode.synced_length:
                self._inode.lost.append((self._inode.synced_length, len(self._inode.content)))
            raise OSError(code, "injected fdatasync failure", self._path)
        self._disk.syncs += 1
        self._inode.synced_length = len(self._inode.content)
        self._inode.truncated_from = None

    async def truncate(self, size: int) -> None:
        self._check()
        inode = self._inode
        assert 0 <= size <= len(inode.content), size
        if size < inode.synced_length and inode.truncated_from is None:
            inode.truncated_from = inode.durable()
        del inode.content[size:]
        inode.synced_length = min(inode.synced_length, size)
        inode.lost = [(start, min(end, size)) for start, end in inode.lost if start < size]

    async def close(self) -> None:
        self._closed = True


class MemoryLock:
    def __init__(self, disk: MemoryDisk, path: str, generation: int) -> None:
        self._disk = disk
        self._path = path
        self._generation = generation

    def release(self) -> None:
        if self._generation == self._disk._generation:
            self._disk._locks.discard(self._path)
