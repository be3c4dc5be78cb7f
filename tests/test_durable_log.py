"""DurableLog: the storage the Raft core reads, recovered from WAL + snapshots + hard state."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import trio

from raftq.errors import (
    CorruptionError,
    DataDirError,
    LocalProtocolError,
    LogCompacted,
    LogUnavailable,
)
from raftq.raft.types import HardState, Membership, SnapshotMeta
from raftq.storage.disk import RealDisk
from raftq.storage.durable_log import DurableLog
from raftq.storage.hard_state import save_hard_state
from raftq.storage.memory_disk import MemoryDisk, TailFate
from raftq.storage.snapshots import SnapshotStore
from tests.storage_helpers import Crash, CrashingDisk, make_entries

MEMBERS = Membership(voters=("n1", "n2", "n3"))


async def append_in_batches(log: DurableLog, low: int, high: int) -> None:
    """Append in small batches: segments roll over only between batches."""
    for start in range(low, high, 10):
        await log.append(make_entries(start, min(start + 10, high), size=40))


async def open_log(disk: MemoryDisk | RealDisk, cache_entries: int = 4) -> DurableLog:
    return await DurableLog.open(disk, segment_bytes=400, cache_entries=cache_entries)


async def test_fresh_log_then_append_and_read_back() -> None:
    disk = MemoryDisk()
    log = await open_log(disk)
    assert (log.first_index(), log.last_index()) == (1, 0)
    assert log.initial_state().hard_state == HardState()
    assert log.term(0) == 0
    entries = make_entries(1, 31)
    await log.append(entries[:10])
    await log.append(entries[10:])
    assert log.entries(1, 31) == entries  # older ones from disk, recent ones from the cache
    assert log.entries(28, 31) == entries[27:]
    assert log.entries(5, 5) == []
    assert log.entries(1, 31, bytes_max=1) == entries[:1]
    assert [log.term(index) for index in (1, 30)] == [1, 1]
    await log.close()
    log = await open_log(disk)
    assert log.entries(1, 31) == entries
    await log.close()


async def test_reads_outside_the_log_say_compacted_or_unavailable() -> None:
    log = await open_log(MemoryDisk())
    await log.append(make_entries(1, 21))
    await log.save_snapshot(SnapshotMeta(index=10, term=1, membership=MEMBERS), b"state")
    with pytest.raises(LogCompacted):
        log.entries(5, 12)
    with pytest.raises(LogCompacted):
        log.term(9)
    assert log.term(10) == 1
    with pytest.raises(LogUnavailable):
        log.entries(11, 22)
    with pytest.raises(LogUnavailable):
        log.term(21)


async def test_conflicting_append_replaces_the_suffix_but_never_committed_entries() -> None:
    disk = MemoryDisk()
    log = await open_log(disk)
    await log.append(make_entries(1, 11))
    await log.save_hard_state(HardState(term=2, vote="n1", commit=5))
    await log.append(make_entries(7, 9, term=2))
    assert log.last_index() == 8
    assert log.entries(1, 9) == make_entries(1, 7) + make_entries(7, 9, term=2)
    with pytest.raises(LocalProtocolError, match="committed"):
        await log.append(make_entries(5, 6, term=3))
    await log.close()
    log = await open_log(disk)
    assert log.entries(1, 9) == make_entries(1, 7) + make_entries(7, 9, term=2)
    assert log.hard_state == HardState(term=2, vote="n1", commit=5)


async def test_snapshots_compact_the_wal_but_keep_the_older_snapshots_tail() -> None:
    disk = MemoryDisk()
    log = await open_log(disk)
    await append_in_batches(log, 1, 201)
    await log.save_snapshot(SnapshotMeta(index=50, term=1, membership=MEMBERS), b"at 50")
    await log.save_snapshot(SnapshotMeta(index=150, term=1, membership=MEMBERS), b"at 150")
    assert log.first_index() == 151
    wal_first = log.wal_statistics().first_index
    assert 1 < wal_first <= 51  # compacted, but only below the older snapshot
    await log.close()
    log = await open_log(disk)
    assert (log.first_index(), log.last_index()) == (151, 200)
    assert log.initial_state().snapshot.index == 150
    assert await log.snapshot_data() == b"at 150"
    assert log.snapshot_chunk(log.snapshot_meta, 3, 3) == b"150"
    assert log.entries(151, 201) == make_entries(151, 201, size=40)


async def test_damaged_newest_snapshot_falls_back_to_the_older_one() -> None:
    disk = MemoryDisk()
    log = await open_log(disk)
    await append_in_batches(log, 1, 201)
    await log.save_snapshot(SnapshotMeta(index=50, term=1), b"at 50")
    newest = SnapshotMeta(index=150, term=1)
    await log.save_snapshot(newest, b"at 150")
    await log.close()
    path = f"snapshots/{'1'.zfill(20)}-{'150'.zfill(20)}.snap"
    damaged = bytearray(await disk.read(path))
    damaged[9] ^= 0xFF
    await disk.remove(path)
    await (await disk.open(path)).write(bytes(damaged), sync=True)
    log = await open_log(disk)
    assert (log.first_index(), log.last_index()) == (51, 200)
    assert await log.snapshot_data() == b"at 50"


async def test_install_snapshot_keeps_a_matching_suffix() -> None:
    log = await open_log(MemoryDisk())
    await log.append(make_entries(1, 31))
    writer = await log.begin_snapshot_install(SnapshotMeta(index=20, term=1))
    await writer.write(b"leader state")
    await log.finish_snapshot_install(writer)
    assert (log.first_index(), log.last_index()) == (21, 30)
    assert log.entries(21, 31) == make_entries(21, 31)
    assert await log.snapshot_data() == b"leader state"


@pytest.mark.parametrize(
    "meta",
    [SnapshotMeta(index=40, term=2), SnapshotMeta(index=20, term=5)],
    ids=["beyond the log", "conflicting term"],
)
async def test_install_snapshot_discards_a_log_it_does_not_continue(meta: SnapshotMeta) -> None:
    disk = MemoryDisk()
    log = await open_log(disk)
    await log.append(make_entries(1, 31))
    writer = await log.begin_snapshot_install(meta)
    await writer.write(b"leader state")
    await log.finish_snapshot_install(writer)
    assert (log.first_index(), log.last_index()) == (meta.index + 1, meta.index)
    await log.append(make_entries(meta.index + 1, meta.index + 3, term=meta.term))
    await log.close()
    log = await open_log(disk)
    assert log.term(meta.index) == meta.term
    assert log.entries(meta.index + 1, meta.index + 3) == make_entries(
        meta.index + 1, meta.index + 3, term=meta.term
    )


async def test_stale_snapshot_install_is_refused() -> None:
    log = await open_log(MemoryDisk())
    await log.append(make_entries(1, 31))
    await log.save_snapshot(SnapshotMeta(index=20, term=1), b"state")
    with pytest.raises(LocalProtocolError, match="stale"):
        await log.begin_snapshot_install(SnapshotMeta(index=15, term=1))


@pytest.mark.parametrize("fate", [TailFate.LOST, TailFate.TORN, TailFate.KEPT])
async def test_crash_at_every_step_of_a_snapshot_install_recovers(fate: TailFate) -> None:
    meta = SnapshotMeta(index=60, term=3, membership=MEMBERS)
    old_entries = make_entries(1, 41, size=40)
    for steps in range(1, 60):
        disk = CrashingDisk()
        log = await open_log(disk)
        await append_in_batches(log, 1, 41)
        await log.save_hard_state(HardState(term=2, vote="n2", commit=30))
        disk.crash_at = disk.operations + steps
        try:
            writer = await log.begin_snapshot_install(meta)
            await writer.write(b"snapshot from the leader")
            await log.finish_snapshot_install(writer)
            await log.append(make_entries(61, 63, term=3))
        except Crash:
            finished = False
        else:
            finished = True
        disk.crash_at = None
        disk.crash(random.Random(steps), fate)
        log = await open_log(disk)
        if log.initial_state().snapshot == meta:
            assert log.first_index() == 61
            assert log.entries(61, log.last_index() + 1) == make_entries(
                61, log.last_index() + 1, term=3
            )
        else:
            assert log.initial_state().snapshot.index == 0
            assert log.entries(1, 41) == old_entries, steps
        if finished:
            assert log.last_index() == 62
            break
    else:
        pytest.fail("the install never finished")


async def test_crash_at_every_step_of_snapshot_and_compaction_recovers() -> None:
    entries = make_entries(1, 121, size=40)
    for steps in range(1, 40):
        disk = CrashingDisk()
        log = await open_log(disk)
        await append_in_batches(log, 1, 121)
        await log.save_snapshot(SnapshotMeta(index=40, term=1), b"at 40")
        disk.crash_at = disk.operations + steps
        try:
            await log.save_snapshot(SnapshotMeta(index=100, term=1), b"at 100")
        except Crash:
            finished = False
        else:
            finished = True
        disk.crash_at = None
        disk.crash(random.Random(steps), TailFate.TORN)
        log = await open_log(disk)
        assert log.initial_state().snapshot.index in (40, 100)
        assert log.last_index() == 120
        assert log.entries(log.first_index(), 121) == entries[log.first_index() - 1 :]
        if finished:
            break
    else:
        pytest.fail("the snapshot never finished")


async def test_commit_past_the_end_of_the_log_is_corruption() -> None:
    disk = MemoryDisk()
    log = await open_log(disk)
    await log.append(make_entries(1, 6))
    await log.close()
    await save_hard_state(disk, HardState(term=1, vote=None, commit=9))
    with pytest.raises(CorruptionError, match="synced are missing") as caught:
        await open_log(disk)
    assert caught.value.path == "hardstate"


async def test_wal_that_starts_after_the_snapshot_is_corruption() -> None:
    disk = MemoryDisk()
    log = await open_log(disk)
    await append_in_batches(log, 1, 101)
    await log.save_snapshot(SnapshotMeta(index=40, term=1), b"x")
    await log.save_snapshot(SnapshotMeta(index=60, term=1), b"x")
    await log.close()
    store = await SnapshotStore.open(disk)
    for meta in store.kept:
        await disk.remove(store.path_of(meta))
    with pytest.raises(CorruptionError, match="missing"):
        await open_log(disk)


async def test_one_process_per_data_directory(tmp_path: Path) -> None:
    log = await open_log(RealDisk(str(tmp_path)))
    with pytest.raises(DataDirError, match="in use by another raftq process"):
        await open_log(RealDisk(str(tmp_path)))
    script = (
        "import sys, trio\n"
        "from raftq.storage.disk import RealDisk\n"
        "from raftq.storage.durable_log import DurableLog\n"
        "from raftq.errors import DataDirError\n"
        "try:\n"
        f"    trio.run(DurableLog.open, RealDisk({str(tmp_path)!r}))\n"
        "except DataDirError as error:\n"
        "    print(error)\n"
        "    sys.exit(3)\n"
    )
    with trio.fail_after(60):
        other = await trio.run_process(
            [sys.executable, "-c", script], capture_stdout=True, capture_stderr=True, check=False
        )
    assert other.returncode == 3, other.stderr
    assert b"in use by another raftq process" in other.stdout
    await log.close()
    log = await open_log(RealDisk(str(tmp_path)))  # free again once closed
    await log.close()
