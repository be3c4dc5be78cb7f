"""``SimDisk``: the node's ``Disk`` seam over ``MemoryDisk``, with latency, slow disks and
fdatasync errors drawn from the seed, and a hook that lets the simulator crash the process at
a chosen operation (say, in the middle of writing a snapshot).

Fault atlas. Every fault here touches only bytes that were never made durable: a crash keeps
each file's synced content and lets the unsynced tail be lost, torn or zeroed
(``MemoryDisk.crash``); an fdatasync error leaves its data unsynced. So synced data is never
corrupted on any node, which is stricter than the rule the simulator needs (never on a
majority): every seed stays recoverable, and a failure is raftq's, never the fault model's.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Callable

import attrs
import trio

from raftq.storage.disk import DiskFile
from raftq.storage.memory_disk import MemoryDisk, MemoryFile, MemoryLock, TailFate


@attrs.frozen(kw_only=True)
class DiskProfile:
    """What this seed's disks do."""

    sync_min_ms: float = 0.05
    sync_max_ms: float = 1.0
    slow_probability: float = 0.0
    """Chance that one fdatasync is slow (a busy device, a firmware hiccup)."""
    slow_max_ms: float = 300.0
    sync_error_probability: float = 0.0
    """Chance that one fdatasync fails with EIO: the node must stop rather than acknowledge."""
    tail_fate: TailFate | None = None
    """What a crash does to unsynced tails (None: a random fate per file)."""

    @classmethod
    def draw(cls, rng: random.Random) -> DiskProfile:
        return cls(
            sync_min_ms=rng.uniform(0.02, 0.5),
            sync_max_ms=rng.uniform(0.5, 8.0),
            slow_probability=rng.choice([0.0, 0.0, 0.002, 0.02]),
            slow_max_ms=rng.uniform(50, 1000),
            sync_error_probability=rng.choice([0.0, 0.0, 0.0, 0.0005, 0.003]),
            tail_fate=rng.choice([None, None, TailFate.LOST, TailFate.TORN, TailFate.ZEROED]),
        )


OperationHook = Callable[[str, str], None]
"""Called as (operation, path) before each mutating disk operation."""


class SimDisk:
    """One node's disk. It outlives the node's process: ``crash`` keeps what was durable."""

    def __init__(self, rng: random.Random, profile: DiskProfile) -> None:
        self.memory = MemoryDisk()
        self.rng = rng
        self.profile = profile
        self.faults_on = True
        self.sync_errors = 0
        self.slow_syncs = 0
        self.hook: OperationHook | None = None
        self.slow_paths: tuple[str, float] | None = None
        """(path prefix, seconds): each fdatasync of a path under the prefix takes that much
        longer (a schedule's slow snapshot save, ``sim.schedules.slow_snapshot``)."""

    def crash(self) -> None:
        self.memory.crash(self.rng, self.profile.tail_fate)

    def rot_synced_record(self) -> str | None:
        """Bit rot in synced data (a crashed node only): flip a byte in the body of a WAL
        record that other records follow, so it is corruption, not a torn tail. The path, or
        None if no segment holds two records yet."""
        for path in sorted(self.memory._files):
            inode = self.memory._files[path]
            if not path.startswith("wal/") or inode.synced_length != len(inode.content):
                continue
            length = int.from_bytes(inode.content[0:4], "little")
            if 8 + length + 8 < inode.synced_length and length > 0:
                inode.content[8] ^= 0x55  # the durable view shares this inode after a crash
                return path
        return None

    async def latency(self, operation: str, path: str) -> None:
        if self.hook is not None:
            self.hook(operation, path)
        profile = self.profile
        delay_ms = self.rng.uniform(profile.sync_min_ms, profile.sync_max_ms)
        if operation != "fdatasync":
            delay_ms /= 10  # a write into the page cache, a rename: cheaper than a flush
        elif self.faults_on and self.rng.random() < profile.slow_probability:
            self.slow_syncs += 1
            delay_ms += self.rng.uniform(0, profile.slow_max_ms)
        if self.slow_paths is not None and operation == "fdatasync":
            prefix, slow_s = self.slow_paths
            if path.startswith(prefix):
                delay_ms += slow_s * 1000
        await trio.sleep(delay_ms / 1000)

    def draw_sync_error(self) -> bool:
        if self.faults_on and self.rng.random() < self.profile.sync_error_probability:
            self.sync_errors += 1
            return True
        return False

    # --- the Disk protocol ----------------------------------------------------------------------

    async def open(self, path: str, *, create: bool = True) -> DiskFile:
        await self.latency("open", path)
        return SimFile(self, await self.memory.open(path, create=create))

    async def read(self, path: str) -> bytes:
        await self.latency("read", path)
        return await self.memory.read(path)

    def read_at(self, path: str, offset: int, length: int) -> bytes:
        return self.memory.read_at(path, offset, length)

    async def size(self, path: str) -> int:
        await trio.lowlevel.checkpoint()
        return await self.memory.size(path)

    async def exists(self, path: str) -> bool:
        await trio.lowlevel.checkpoint()
        return await self.memory.exists(path)

    async def list(self, directory: str) -> list[str]:
        await trio.lowlevel.checkpoint()
        return await self.memory.list(directory)

    async def make_directory(self, path: str) -> None:
        await self.latency("mkdir", path)
        await self.memory.make_directory(path)

    async def rename(self, source: str, target: str) -> None:
        await self.latency("rename", target)
        await self.memory.rename(source, target)

    async def remove(self, path: str) -> None:
        await self.latency("remove", path)
        await self.memory.remove(path)

    async def fsync_directory(self, directory: str) -> None:
        await self.latency("fdatasync", directory)
        await self.memory.fsync_directory(directory)

    def lock(self, path: str) -> MemoryLock:
        return self.memory.lock(path)


class SimFile:
    def __init__(self, disk: SimDisk, file: MemoryFile) -> None:
        self._disk = disk
        self._file = file

    @property
    def path(self) -> str:
        return self._file.path

    @property
    def size(self) -> int:
        return self._file.size

    async def write(self, data: bytes, *, sync: bool) -> None:
        # A write into the page cache takes no time worth simulating (a crash still falls
        # between it and the fdatasync, which does); only the hook sees it.
        if self._disk.hook is not None:
            self._disk.hook("write", self._file.path)
            await trio.lowlevel.checkpoint()  # a crash the hook struck lands before the write
        await self._file.write(data, sync=False)
        if sync:
            await self.fdatasync()
        else:
            await trio.lowlevel.checkpoint()

    async def fdatasync(self) -> None:
        await self._disk.latency("fdatasync", self._file.path)
        if self._disk.draw_sync_error():
            # Its data stays unsynced: a crash may lose it, as after a real EIO.
            raise OSError(errno.EIO, "injected fdatasync failure", self._file.path)
        await self._file.fdatasync()

    async def truncate(self, size: int) -> None:
        await self._disk.latency("truncate", self._file.path)
        await self._file.truncate(size)

    async def close(self) -> None:
        await self._file.close()
