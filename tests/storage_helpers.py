"""Small builders shared by the storage tests."""

from __future__ import annotations

import errno

import trio

from raftq.raft.types import Entry
from raftq.storage.memory_disk import MemoryDisk, MemoryFile


def make_entries(low: int, high: int, term: int = 1, size: int = 20) -> list[Entry]:
    """Entries ``low <= index < high`` whose data names their index (so mix-ups show)."""
    return [
        Entry(index=index, term=term, data=f"{index}:{term}:".encode().ljust(size, b"."))
        for index in range(low, high)
    ]


class SlowSyncDisk(MemoryDisk):
    """A MemoryDisk whose fdatasync takes ``sync_seconds`` (of Trio time: use a MockClock);
    a change of ``sync_seconds`` holds for the syncs after it, on files already open too."""

    def __init__(self, sync_seconds: float = 0.001) -> None:
        super().__init__()
        self.sync_seconds = sync_seconds

    async def open(self, path: str, *, create: bool = True) -> MemoryFile:
        return _SlowFile(self, await super().open(path, create=create))


class _SlowFile(MemoryFile):
    def __init__(self, disk: SlowSyncDisk, file: MemoryFile) -> None:
        super().__init__(disk, file._path, file._inode, file._generation)
        self._slow_disk = disk

    async def fdatasync(self) -> None:
        await trio.sleep(self._slow_disk.sync_seconds)
        await super().fdatasync()


class Crash(Exception):
    """Raised by ``CrashingDisk`` in place of the operation at which power is lost."""


class CrashingDisk(MemoryDisk):
    """A MemoryDisk that counts mutating operations and can fail at the N-th one.

    With ``crash_at = operations + k`` the k-th following write, fdatasync, truncate, open
    (create), rename, remove, mkdir or directory fsync raises ``Crash`` instead of happening:
    a test then calls ``crash()`` and reopens, once per k, to cover every step of a procedure.
    """

    def __init__(self) -> None:
        super().__init__()
        self.operations = 0
        self.crash_at: int | None = None

    def step(self) -> None:
        self.operations += 1
        if self.crash_at is not None and self.operations >= self.crash_at:
            self.crash_at = None
            raise Crash(f"power lost at operation {self.operations}")

    async def open(self, path: str, *, create: bool = True) -> MemoryFile:
        if create and not await self.exists(path):
            self.step()
        return _CountingFile(self, await super().open(path, create=create))

    async def make_directory(self, path: str) -> None:
        if not await self.exists(path):
            self.step()
        await super().make_directory(path)

    async def rename(self, source: str, target: str) -> None:
        self.step()
        await super().rename(source, target)

    async def remove(self, path: str) -> None:
        self.step()
        await super().remove(path)

    async def fsync_directory(self, directory: str) -> None:
        self.step()
        await super().fsync_directory(directory)


class _CountingFile(MemoryFile):
    def __init__(self, disk: CrashingDisk, file: MemoryFile) -> None:
        super().__init__(disk, file._path, file._inode, file._generation)
        self._counter = disk

    async def write(self, data: bytes, *, sync: bool) -> None:
        self._counter.step()
        await super().write(data, sync=False)
        if sync:
            await self.fdatasync()

    async def fdatasync(self) -> None:
        self._counter.step()
        await super().fdatasync()

    async def truncate(self, size: int) -> None:
        self._counter.step()
        await super().truncate(size)


class FullDisk(MemoryDisk):
    """A MemoryDisk that can run out of space: while ``full``, every write fails with
    ENOSPC (part of it may land, as on a real file system)."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False

    async def open(self, path: str, *, create: bool = True) -> MemoryFile:
        return _FullableFile(self, await super().open(path, create=create))


class _FullableFile(MemoryFile):
    def __init__(self, disk: FullDisk, file: MemoryFile) -> None:
        super().__init__(disk, file._path, file._inode, file._generation)
        self._full_disk = disk

    async def write(self, data: bytes, *, sync: bool) -> None:
        if self._full_disk.full:
            await super().write(data[: len(data) // 2], sync=False)
            raise OSError(errno.ENOSPC, "No space left on device", self._path)
        await super().write(data, sync=sync)
