"""Snapshot store and hard state: atomic replacement under a crash at every step."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import pytest

from raftq.errors import CorruptionError
from raftq.raft.types import HardState, Membership, SnapshotMeta
from raftq.storage.disk import RealDisk
from raftq.storage.hard_state import load_hard_state, save_hard_state
from raftq.storage.memory_disk import MemoryDisk, TailFate
from raftq.storage.snapshots import SnapshotStore
from tests.storage_helpers import Crash, CrashingDisk

OLD = SnapshotMeta(index=10, term=2, membership=Membership(voters=("a", "b", "c")))
NEW = SnapshotMeta(index=20, term=3, membership=Membership(voters=("a", "b"), learners=("d",)))
OLD_DATA = b"old state " * 100
NEW_DATA = b"new state " * 300


async def test_save_load_and_keep_the_newest_two() -> None:
    disk = MemoryDisk()
    store = await SnapshotStore.open(disk)
    assert store.newest() is None
    metas = [SnapshotMeta(index=index, term=1) for index in (5, 10, 15)]
    for meta in metas:
        await store.save(meta, f"data {meta.index}".encode())
    assert store.kept == tuple(metas[1:])
    disk.crash()
    store = await SnapshotStore.open(disk)
    assert store.kept == tuple(metas[1:])
    assert await store.load(metas[2]) == b"data 15"
    assert store.read_chunk(metas[2], 5, 2) == b"15"
    assert sorted(await disk.list("snapshots")) == [
        "00000000000000000001-00000000000000000010.snap",
        "00000000000000000001-00000000000000000015.snap",
    ]


async def test_large_snapshot_is_written_in_chunks_and_verified(tmp_path: Path) -> None:
    disk = RealDisk(str(tmp_path))
    store = await SnapshotStore.open(disk)
    data = random.Random(7).randbytes(3 * 1024 * 1024 + 17)
    await store.save(NEW, data)
    store = await SnapshotStore.open(disk)
    assert store.newest() == NEW
    assert await store.load(NEW) == data


@pytest.mark.parametrize("fate", list(TailFate))
async def test_crash_at_every_step_of_a_snapshot_write_leaves_old_or_new(fate: TailFate) -> None:
    steps = 0
    while True:
        steps += 1
        disk = CrashingDisk()
        store = await SnapshotStore.open(disk)
        await store.save(OLD, OLD_DATA)
        disk.crash_at = disk.operations + steps
        try:
            await store.save(NEW, NEW_DATA)
        except Crash:
            crashed = True
        else:
            crashed = False
        disk.crash_at = None
        disk.crash(random.Random(steps), fate)
        store = await SnapshotStore.open(disk)
        newest = store.newest()
        assert newest in (OLD, NEW), steps
        assert await store.load(newest) == (OLD_DATA if newest == OLD else NEW_DATA)
        if not crashed:
            assert newest == NEW
            break
    assert steps > 5  # the write really has that many steps to crash between


async def test_damaged_newest_snapshot_is_set_aside_and_the_older_used() -> None:
    disk = MemoryDisk()
    store = await SnapshotStore.open(disk)
    await store.save(OLD, OLD_DATA)
    await store.save(NEW, NEW_DATA)
    path = store.path_of(NEW)
    data = bytearray(await disk.read(path))
    data[100] ^= 0xFF
    await disk.remove(path)
    file = await disk.open(path)
    await file.write(bytes(data), sync=True)
    store = await SnapshotStore.open(disk)
    assert store.newest() == OLD
    assert await disk.exists(path + ".corrupt")


async def test_leftover_temporary_file_is_removed() -> None:
    disk = MemoryDisk()
    store = await SnapshotStore.open(disk)
    writer = await store.begin(NEW)
    await writer.write(b"half of it")
    disk.crash(fate=TailFate.KEPT)
    await SnapshotStore.open(disk)
    assert await disk.list("snapshots") == []


async def test_stale_snapshot_is_refused() -> None:
    store = await SnapshotStore.open(MemoryDisk())
    await store.save(NEW, NEW_DATA)
    with pytest.raises(Exception, match="older than"):
        await store.begin(OLD)


# --- hard state ---------------------------------------------------------------------------------


async def test_hard_state_round_trip_and_default() -> None:
    disk = MemoryDisk()
    assert await load_hard_state(disk) == HardState()
    state = HardState(term=4, vote="b", commit=17)
    await save_hard_state(disk, state)
    disk.crash()
    assert await load_hard_state(disk) == state


@pytest.mark.parametrize("fate", list(TailFate))
async def test_crash_at_every_step_of_a_hard_state_save_leaves_old_or_new(fate: TailFate) -> None:
    old, new = HardState(term=1, vote="a", commit=3), HardState(term=2, vote=None, commit=5)
    for steps in range(1, 10):
        disk = CrashingDisk()
        await save_hard_state(disk, old)
        disk.crash_at = disk.operations + steps
        with contextlib.suppress(Crash):
            await save_hard_state(disk, new)
        disk.crash_at = None
        disk.crash(random.Random(steps), fate)
        assert await load_hard_state(disk) in (old, new), steps
    assert await load_hard_state(disk) == new  # the last round did not crash


async def test_damaged_hard_state_is_corruption() -> None:
    disk = MemoryDisk()
    await save_hard_state(disk, HardState(term=1, vote="a", commit=1))
    data = bytearray(await disk.read("hardstate"))
    data[-1] ^= 0x01
    await disk.remove("hardstate")
    file = await disk.open("hardstate")
    await file.write(bytes(data), sync=True)
    with pytest.raises(CorruptionError, match="hardstate"):
        await load_hard_state(disk)
