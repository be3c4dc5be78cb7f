"""RealDisk specifics: the fsync helper process, the thread fallback, large writes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from raftq import limits
from raftq.storage import sync_helper
from raftq.storage.disk import RealDisk, RealFile


@pytest.mark.parametrize("helper", [True, False], ids=["helper process", "worker thread"])
async def test_files_round_trip_through_either_sync_path(tmp_path: Path, helper: bool) -> None:
    disk = RealDisk(str(tmp_path), sync_helper=helper)
    await disk.make_directory("d")
    file = await disk.open("d/f")
    await file.write(b"small", sync=True)
    big = os.urandom(limits.INLINE_WRITE_BYTES_MAX + 1)  # goes through a worker thread
    await file.write(big, sync=False)
    await file.fdatasync()
    assert file.size == 5 + len(big)
    await file.truncate(5)
    await file.fdatasync()
    await file.close()
    await disk.fsync_directory("d")
    assert await disk.read("d/f") == b"small"
    assert disk.read_at("d/f", 1, 3) == b"mal"
    assert await disk.list("d") == ["f"]
    assert await disk.size("d/f") == 5


async def test_a_failed_sync_in_the_helper_raises_its_errno() -> None:
    read_end, write_end = os.pipe()
    try:
        file = RealFile("a pipe", write_end, 0, sync_helper=True)
        with pytest.raises(OSError, match="Invalid argument") as caught:  # a pipe has no data
            await file.fdatasync()
        assert caught.value.errno == errno.EINVAL
        await file.close()
    finally:
        os.close(read_end)


async def test_a_dead_helper_fails_the_sync_and_a_new_one_takes_over(tmp_path: Path) -> None:
    disk = RealDisk(str(tmp_path))
    file = await disk.open("f")
    await file.write(b"x", sync=True)
    sync_helper.stop_helper()
    with pytest.raises(OSError, match="helper process is gone"):
        await file.fdatasync()
    await file.close()
    again = await disk.open("g")
    await again.write(b"y", sync=True)  # a fresh helper was started for it
    await again.close()


async def test_many_files_sync_at_once(tmp_path: Path) -> None:
    disk = RealDisk(str(tmp_path))
    files = [await disk.open(f"f{number}") for number in range(20)]
    for number, file in enumerate(files):
        await file.write(str(number).encode(), sync=True)
    for file in files:
        await file.close()
    assert sorted(await disk.list("")) == sorted(f"f{number}" for number in range(20))
