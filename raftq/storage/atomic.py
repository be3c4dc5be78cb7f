"""Replace a file atomically: write ``NAME.tmp``, fdatasync, rename over ``NAME``, fsync the
directory. A crash at any step leaves either the old file or the new one, never a mix."""

from __future__ import annotations

from raftq.storage.disk import Disk, DiskFile, parent_of

TMP_SUFFIX = ".tmp"


class AtomicWriter:
    """Streams a new version of ``path``; it becomes visible (and durable) at ``commit``."""

    def __init__(self, disk: Disk, path: str, file: DiskFile) -> None:
        self._disk = disk
        self._path = path
        self._file = file
        self._finished = False

    @classmethod
    async def begin(cls, disk: Disk, path: str) -> AtomicWriter:
        temporary = path + TMP_SUFFIX
        if await disk.exists(temporary):  # left by a crash: it was never committed
            await disk.remove(temporary)
        return cls(disk, path, await disk.open(temporary))

    @property
    def size(self) -> int:
        return self._file.size

    async def write(self, data: bytes) -> None:
        assert not self._finished
        await self._file.write(data, sync=False)

    async def commit(self) -> None:
        assert not self._finished
        self._finished = True
        try:
            await self._file.fdatasync()
        finally:
            await self._file.close()
        await self._disk.rename(self._path + TMP_SUFFIX, self._path)
        await self._disk.fsync_directory(parent_of(self._path))

    async def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        await self._file.close()
        await self._disk.remove(self._path + TMP_SUFFIX)


async def replace_file(disk: Disk, path: str, data: bytes) -> None:
    """Atomically make ``data`` the whole content of ``path``."""
    writer = await AtomicWriter.begin(disk, path)
    try:
        await writer.write(data)
        await writer.commit()
    except BaseException:
        await writer.abort()
        raise
