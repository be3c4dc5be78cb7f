"""The ``Disk`` seam: every byte raftq persists goes through it.

Paths are relative, ``/``-separated, and resolved under the disk's root (the data directory).
The contract follows POSIX durability, which ``MemoryDisk`` models exactly:

- file contents are durable only after ``DiskFile.fdatasync`` (or ``write(..., sync=True)``);
- a created, renamed or removed name is durable only after ``fsync_directory`` of its parent;
- ``rename`` atomically replaces the target.

``RealDisk`` never lets the event loop wait on the device: fdatasync runs in a helper process
(``raftq.storage.sync_helper``; or a worker thread), other blocking calls in worker threads
(``trio.to_thread``). Two kinds of call stay on the loop because they only touch memory: small
appends (copies into the page cache, up to ``limits.INLINE_WRITE_BYTES_MAX``) and ``read_at``,
a ``pread`` of recently written log entries, used only for cold reads by a Raft core that
cannot await.
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Protocol

import trio

from raftq import limits
from raftq.errors import DataDirError
from raftq.storage.sync_helper import SyncChannel


class DiskFile(Protocol):
    """A file open for appending."""

    @property
    def path(self) -> str: ...

    @property
    def size(self) -> int:
        """Bytes in the file, counting writes not yet synced."""
        ...

    async def write(self, data: bytes, *, sync: bool) -> None:
        """Append ``data``; with ``sync``, also ``fdatasync`` before returning (one thread hop)."""
        ...

    async def fdatasync(self) -> None: ...

    async def truncate(self, size: int) -> None:
        """Cut the file to ``size`` bytes; durable after the next ``fdatasync``."""
        ...

    async def close(self) -> None: ...


class DiskLock(Protocol):
    """An exclusive hold on a data directory, released by ``release`` or process exit."""

    def release(self) -> None: ...


class Disk(Protocol):
    """File-system operations raftq needs, and nothing else."""

    async def open(self, path: str, *, create: bool = True) -> DiskFile:
        """Open ``path`` for appending; create it if missing (else ``FileNotFoundError``)."""
        ...

    async def read(self, path: str) -> bytes:
        """The whole file as it is now (synced or not)."""
        ...

    def read_at(self, path: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``, synchronously (see the module docstring)."""
        ...

    async def size(self, path: str) -> int: ...

    async def exists(self, path: str) -> bool: ...

    async def list(self, directory: str) -> list[str]:
        """Names in ``directory`` (not paths), sorted."""
        ...

    async def make_directory(self, path: str) -> None:
        """Create ``path`` if missing; durable after ``fsync_directory`` of its parent."""
        ...

    async def rename(self, source: str, target: str) -> None: ...

    async def remove(self, path: str) -> None: ...

    async def fsync_directory(self, directory: str) -> None: ...

    def lock(self, path: str) -> DiskLock:
        """Take the exclusive lock file ``path`` or raise ``DataDirError`` at once."""
        ...


async def ensure_directory(disk: Disk, path: str) -> None:
    """Create ``path`` if missing and make its name durable (fsync of the parent directory)."""
    if not await disk.exists(path):
        await disk.make_directory(path)
        await disk.fsync_directory(parent_of(path))


def parent_of(path: str) -> str:
    """The directory holding ``path`` (``""`` for the root)."""
    head, _, _ = path.rpartition("/")
    return head


class RealDisk:
    """The ``Disk`` over the operating system's file system, rooted at ``root``."""

    def __init__(self, root: str, *, sync_helper: bool = True) -> None:
        self.root = os.path.abspath(root)
        self._sync_helper = sync_helper
        """fdatasync through ``raftq.storage.sync_helper`` (else in a worker thread)."""

    def _full(self, path: str) -> str:
        assert not path.startswith("/"), path
        assert ".." not in path.split("/"), path
        return os.path.join(self.root, path) if path else self.root

    async def open(self, path: str, *, create: bool = True) -> RealFile:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        full = self._full(path)

        def open_file() -> tuple[int, int]:
            fd = os.open(full, flags, 0o644)
            return fd, os.fstat(fd).st_size

        fd, size = await trio.to_thread.run_sync(open_file)
        return RealFile(path, fd, size, sync_helper=self._sync_helper)

    async def read(self, path: str) -> bytes:
        full = self._full(path)

        def read_file() -> bytes:
            with open(full, "rb") as file:
                return file.read()

        return await trio.to_thread.run_sync(read_file)

    def read_at(self, path: str, offset: int, length: int) -> bytes:
        fd = os.open(self._full(path), os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    async def size(self, path: str) -> int:
        return (await trio.to_thread.run_sync(os.stat, self._full(path))).st_size

    async def exists(self, path: str) -> bool:
        return await trio.to_thread.run_sync(os.path.exists, self._full(path))

    async def list(self, directory: str) -> list[str]:
        return sorted(await trio.to_thread.run_sync(os.listdir, self._full(directory)))

    async def make_directory(self, path: str) -> None:
        full = self._full(path)
        await trio.to_thread.run_sync(lambda: os.makedirs(full, exist_ok=True))

    async def rename(self, source: str, target: str) -> None:
        await trio.to_thread.run_sync(os.replace, self._full(source), self._full(target))

    async def remove(self, path: str) -> None:
        await trio.to_thread.run_sync(os.remove, self._full(path))

    async def fsync_directory(self, directory: str) -> None:
        full = self._full(directory)

        def sync_directory() -> None:
            fd = os.open(full, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        await trio.to_thread.run_sync(sync_directory)

    def lock(self, path: str) -> RealLock:
        full = self._full(path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        fd = os.open(full, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DataDirError(
                    f"data directory {self.root} is in use by another raftq process "
                    f"(pid {holder}); stop it or choose another --data-dir"
                ) from None
            raise DataDirError(f"cannot lock {full}: {error.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return RealLock(fd)


class RealFile:
    """An append-only file descriptor; the size is tracked here, not asked of the kernel."""

    def __init__(self, path: str, fd: int, size: int, *, sync_helper: bool) -> None:
        self._path = path
        self._fd = fd
        self._size = size
        self._sync_helper = sync_helper
        self._channel: SyncChannel | None = None

    @property
    def path(self) -> str:
        return self._path

    @property
    def size(self) -> int:
        return self._size

    async def write(self, data: bytes, *, sync: bool) -> None:
        try:
            if len(data) <= limits.INLINE_WRITE_BYTES_MAX:
                _write_all(self._fd, data)
                if not sync:  # else the sync below is the checkpoint: one task switch fewer
                    await trio.lowlevel.checkpoint()
            else:
                await trio.to_thread.run_sync(_write_all, self._fd, data)
        finally:
            # Even a failed write may have extended the file; ask rather than guess.
            self._size = os.fstat(self._fd).st_size
        if sync:
            await self.fdatasync()

    async def fdatasync(self) -> None:
        if not self._sync_helper:
            await trio.to_thread.run_sync(os.fdatasync, self._fd)
            return
        if self._channel is None:
            self._channel = await SyncChannel.open(self._fd)
        await self._channel.fdatasync()

    async def truncate(self, size: int) -> None:
        assert 0 <= size <= self._size, (size, self._size)
        await trio.to_thread.run_sync(os.ftruncate, self._fd, size)
        self._size = size

    async def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class RealLock:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # closing the descriptor drops the flock
