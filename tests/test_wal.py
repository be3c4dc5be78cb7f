"""The write-ahead log on real files and on MemoryDisk: replay, torn tails, corruption,
truncation, rollover, compaction, group commit and failed syncs."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import cbor2
import pytest
import trio

from raftq import codec
from raftq.errors import CorruptionError, LocalProtocolError, StorageError
from raftq.raft.types import Entry, EntryKind
from raftq.storage.disk import RealDisk
from raftq.storage.memory_disk import MemoryDisk, TailFate
from raftq.storage.record import HEADER, frame, scan
from raftq.storage.wal import WriteAheadLog, segment_name
from tests.storage_helpers import SlowSyncDisk, make_entries


async def open_wal(path: Path, segment_bytes: int = 1 << 20) -> WriteAheadLog:
    return await WriteAheadLog.open(RealDisk(str(path)), segment_bytes=segment_bytes)


async def write_log(path: Path, entries: list[Entry], segment_bytes: int = 1 << 20) -> None:
    wal = await open_wal(path, segment_bytes)
    for entry in entries:
        await wal.append([entry])
    await wal.close()


def segment_files(path: Path) -> list[Path]:
    return sorted((path / "wal").glob("*.log"))


async def test_append_read_and_reopen(tmp_path: Path) -> None:
    entries = make_entries(1, 51)
    await write_log(tmp_path, entries)
    wal = await open_wal(tmp_path)
    assert (wal.first_index, wal.last_index) == (1, 50)
    assert wal.read(1, 51) == entries
    assert wal.read(10, 13) == entries[9:12]
    assert wal.term(50) == 1
    assert wal.next_index == 51
    await wal.close()


async def test_read_stops_after_bytes_max_but_returns_one(tmp_path: Path) -> None:
    entries = make_entries(1, 11, size=100)
    await write_log(tmp_path, entries)
    wal = await open_wal(tmp_path)
    record_bytes = HEADER.size + 100 + 10  # body is the cbor array around 100 data bytes
    assert len(wal.read(1, 11, bytes_max=3 * record_bytes)) == 3
    assert wal.read(1, 11, bytes_max=1) == entries[:1]
    await wal.close()


async def test_empty_directory_starts_at_the_given_index(tmp_path: Path) -> None:
    wal = await WriteAheadLog.open(RealDisk(str(tmp_path)), start_index=41)
    assert (wal.first_index, wal.last_index, wal.next_index) == (41, 40, 41)
    with pytest.raises(LocalProtocolError):
        await wal.append(make_entries(1, 2))
    await wal.append(make_entries(41, 43))
    await wal.close()
    assert [p.name for p in segment_files(tmp_path)] == [segment_name(41)]


async def test_every_truncation_length_of_the_last_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entries = make_entries(1, 4)
    await write_log(tmp_path, entries)
    (segment,) = segment_files(tmp_path)
    full = segment.read_bytes()
    last_start = [offset for offset, _ in scan(full, [])][-1]
    for cut in range(1, len(full) - last_start):
        segment.write_bytes(full[: last_start + cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="raftq.storage"):
            wal = await open_wal(tmp_path)
        assert wal.last_index == 2, cut
        assert wal.read(1, 3) == entries[:2]
        assert segment.stat().st_size == last_start
        assert f"bytes={cut}" in caplog.text
        await wal.append(entries[2:])  # the log goes on where it was cut
        await wal.close()
        wal = await open_wal(tmp_path)
        assert wal.read(1, 4) == entries
        await wal.close()


@pytest.mark.parametrize("zeroes", [1, 8, 13, 512, 4096])
async def test_zero_filled_tail_is_truncated(tmp_path: Path, zeroes: int) -> None:
    entries = make_entries(1, 4)
    await write_log(tmp_path, entries)
    (segment,) = segment_files(tmp_path)
    size = segment.stat().st_size
    with segment.open("ab") as file:
        file.write(bytes(zeroes))
    wal = await open_wal(tmp_path)
    assert wal.read(1, 4) == entries
    assert segment.stat().st_size == size
    await wal.close()


async def test_last_record_partly_zeroed_is_truncated(tmp_path: Path) -> None:
    entries = make_entries(1, 4)
    await write_log(tmp_path, entries)
    (segment,) = segment_files(tmp_path)
    data = bytearray(segment.read_bytes())
    data[-10:] = bytes(10)
    segment.write_bytes(bytes(data))
    wal = await open_wal(tmp_path)
    assert wal.last_index == 2
    await wal.close()


async def test_flipped_bit_in_an_earlier_segment_is_corruption(tmp_path: Path) -> None:
    entries = make_entries(1, 41, size=50)
    await write_log(tmp_path, entries, segment_bytes=600)
    segments = segment_files(tmp_path)
    assert len(segments) >= 3
    victim = segments[1]
    data = bytearray(victim.read_bytes())
    offset = [offset for offset, _ in scan(bytes(data), [])][2]  # the segment's third record
    data[offset + HEADER.size + 20] ^= 0x10
    victim.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as caught:
        await open_wal(tmp_path, segment_bytes=600)
    assert caught.value.path == f"wal/{victim.name}"
    assert caught.value.offset == offset
    assert f"at byte {offset}" in str(caught.value)


async def test_flipped_bit_before_the_tail_of_the_last_segment_is_corruption(
    tmp_path: Path,
) -> None:
    await write_log(tmp_path, make_entries(1, 6))
    (segment,) = segment_files(tmp_path)
    data = bytearray(segment.read_bytes())
    data[HEADER.size + 3] ^= 0x01  # inside the first record's body
    segment.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as caught:
        await open_wal(tmp_path)
    assert caught.value.offset == 0


async def test_missing_segment_is_a_gap(tmp_path: Path) -> None:
    await write_log(tmp_path, make_entries(1, 41, size=50), segment_bytes=600)
    segments = segment_files(tmp_path)
    segments[1].unlink()
    with pytest.raises(CorruptionError, match="entries are missing") as caught:
        await open_wal(tmp_path, segment_bytes=600)
    assert caught.value.path == f"wal/{segments[2].name}"


async def test_record_with_wrong_index_is_corruption(tmp_path: Path) -> None:
    await write_log(tmp_path, make_entries(1, 4))
    (segment,) = segment_files(tmp_path)
    segment.rename(segment.with_name(segment_name(5)))
    with pytest.raises(CorruptionError, match="expected 5"):
        await open_wal(tmp_path)


@pytest.mark.parametrize(
    "body",
    [cbor2.dumps("a string"), cbor2.dumps([7, 1]), cbor2.dumps([0, 1, 0, b""]), b"\xff\xfe"],
)
async def test_a_checksummed_record_that_is_no_entry_is_corruption_named_by_offset(
    tmp_path: Path, body: bytes
) -> None:
    """Replay reads only each record's index and term: a record whose checksum holds but
    whose body is not an entry (bad CBOR, a wrong shape, index 0) is still refused."""
    await write_log(tmp_path, make_entries(1, 4))
    (segment,) = segment_files(tmp_path)
    good = segment.read_bytes()
    segment.write_bytes(good + frame(body) + frame(codec.encode(Entry(index=5, term=1))))
    with pytest.raises(CorruptionError, match="not") as caught:
        await open_wal(tmp_path)
    assert caught.value.offset == len(good)


async def test_entries_of_every_kind_read_back_as_written_and_a_bad_kind_is_corruption(
    tmp_path: Path,
) -> None:
    """The WAL decodes its records itself (not through cattrs): what it reads back is exactly
    the entry written, and a record that replays (index and term fine) but holds an unknown
    kind or non-bytes data is corruption when read, at its offset."""
    entries = [
        Entry(index=1, term=1, kind=EntryKind.NOOP),
        Entry(index=2, term=1, kind=EntryKind.COMMAND, data=b"\x00command"),
        Entry(index=3, term=2**64 - 1, kind=EntryKind.MEMBERSHIP, data=b"m"),
    ]
    await write_log(tmp_path, entries)
    wal = await open_wal(tmp_path)
    assert wal.read(1, 4) == entries
    await wal.close()
    (segment,) = segment_files(tmp_path)
    good = segment.read_bytes()
    for bad in ([4, 1, 9, b""], [4, 1, 0, "text"], [4, 1, True, b""]):
        segment.write_bytes(good + frame(cbor2.dumps(bad)))
        wal = await open_wal(tmp_path)
        with pytest.raises(CorruptionError, match="not a log entry") as caught:
            wal.read(4, 5)
        assert caught.value.offset == len(good)
        await wal.close()


async def test_truncate_suffix_then_append_within_a_segment(tmp_path: Path) -> None:
    await write_log(tmp_path, make_entries(1, 11))
    wal = await open_wal(tmp_path)
    await wal.truncate_suffix(6)
    assert (wal.last_index, wal.next_index) == (5, 6)
    replacement = make_entries(6, 9, term=2)
    await wal.append(replacement)
    await wal.close()
    wal = await open_wal(tmp_path)
    assert wal.read(1, 9) == make_entries(1, 6) + replacement
    assert wal.term(5) == 1
    assert wal.term(6) == 2
    await wal.close()


async def test_truncate_suffix_across_segments(tmp_path: Path) -> None:
    await write_log(tmp_path, make_entries(1, 61, size=50), segment_bytes=600)
    wal = await open_wal(tmp_path, segment_bytes=600)
    before = len(segment_files(tmp_path))
    await wal.truncate_suffix(12)
    assert len(segment_files(tmp_path)) < before
    await wal.append(make_entries(12, 20, term=3))
    await wal.close()
    wal = await open_wal(tmp_path, segment_bytes=600)
    assert wal.read(1, 20) == make_entries(1, 12, size=50) + make_entries(12, 20, term=3)
    assert wal.last_index == 19
    await wal.close()


async def test_truncate_suffix_at_a_segment_start_and_of_everything(tmp_path: Path) -> None:
    await write_log(tmp_path, make_entries(1, 41, size=50), segment_bytes=600)
    second = int(segment_files(tmp_path)[1].stem)
    wal = await open_wal(tmp_path, segment_bytes=600)
    await wal.truncate_suffix(second)
    assert wal.last_index == second - 1
    assert segment_files(tmp_path)[-1].name != segment_name(second)
    await wal.truncate_suffix(1)
    assert (wal.first_index, wal.last_index) == (1, 0)
    await wal.append(make_entries(1, 3, term=9))
    await wal.close()
    wal = await open_wal(tmp_path, segment_bytes=600)
    assert wal.read(1, 3) == make_entries(1, 3, term=9)
    await wal.close()


async def test_truncate_suffix_outside_the_log_is_refused(tmp_path: Path) -> None:
    await write_log(tmp_path, make_entries(1, 4))
    wal = await open_wal(tmp_path)
    with pytest.raises(LocalProtocolError):
        await wal.truncate_suffix(5)
    await wal.close()


async def test_rollover_and_compaction_then_reopen(tmp_path: Path) -> None:
    entries = make_entries(1, 201, size=50)
    await write_log(tmp_path, entries, segment_bytes=1000)
    segments = segment_files(tmp_path)
    assert len(segments) > 5
    for path in segments[:-1]:
        assert path.stat().st_size >= 1000
    wal = await open_wal(tmp_path, segment_bytes=1000)
    assert wal.read(1, 201) == entries  # one read spans every segment
    firsts = [int(path.stem) for path in segments]
    await wal.compact(firsts[3] - 1)  # exactly the first three segments end before this
    assert wal.first_index == firsts[3]
    await wal.compact(10_000)  # never the active segment
    assert wal.first_index == firsts[-1]
    await wal.close()
    assert [int(path.stem) for path in segment_files(tmp_path)] == firsts[-1:]
    wal = await open_wal(tmp_path, segment_bytes=1000)
    assert wal.read(firsts[-1], 201) == entries[firsts[-1] - 1 :]
    await wal.append(make_entries(201, 202, size=50))
    await wal.close()


async def test_reset_discards_everything(tmp_path: Path) -> None:
    await write_log(tmp_path, make_entries(1, 41, size=50), segment_bytes=600)
    wal = await open_wal(tmp_path, segment_bytes=600)
    await wal.reset(500)
    assert (wal.first_index, wal.last_index, wal.next_index) == (500, 499, 500)
    await wal.append(make_entries(500, 502))
    await wal.close()
    assert [p.name for p in segment_files(tmp_path)] == [segment_name(500)]
    wal = await open_wal(tmp_path, segment_bytes=600)
    assert wal.read(500, 502) == make_entries(500, 502)
    await wal.close()


async def test_unknown_files_are_ignored(tmp_path: Path) -> None:
    await write_log(tmp_path, make_entries(1, 3))
    (tmp_path / "wal" / "notes.txt").write_text("operator was here")
    wal = await open_wal(tmp_path)
    assert wal.last_index == 2
    await wal.close()


async def test_every_append_is_synced_before_it_returns() -> None:
    """An append is acknowledged only once durable: one write and one fdatasync each, done
    before ``append`` returns (the WAL's half of "acknowledged means on disk")."""
    disk = MemoryDisk()
    wal = await WriteAheadLog.open(disk)
    syncs_before = disk.syncs
    for index in range(1, 6):
        await wal.append(make_entries(index, index + 1))
        assert disk.syncs - syncs_before == index
    assert wal.statistics().appends == 5
    disk.crash(fate=TailFate.LOST)  # power lost: every append that returned survives
    reopened = await WriteAheadLog.open(disk)
    assert reopened.read(1, 6) == make_entries(1, 6)


async def test_a_second_append_while_one_is_in_flight_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One appender at a time (the Raft peer): a concurrent append is our bug, refused before
    it touches the log, and the append in flight completes."""
    wal = await WriteAheadLog.open(SlowSyncDisk())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wal.append, make_entries(1, 2))
        # Until the first append waits in its slow sync: one checkpoint was not enough (Trio
        # runs a batch of tasks in random order, so the appender had not always started).
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(LocalProtocolError, match="append while an append is in flight"):
            await wal.append(make_entries(2, 3))
    assert wal.last_index == 1
    await wal.append(make_entries(2, 3))
    assert wal.read(1, 3) == make_entries(1, 3)


async def test_a_cancelled_append_is_still_written_whole() -> None:
    """The write is shielded: cancelling the appender cannot leave the index and the file
    disagreeing."""
    disk = MemoryDisk()
    wal = await WriteAheadLog.open(disk)
    with trio.CancelScope() as scope:
        scope.cancel()
        await wal.append(make_entries(1, 3))
    assert wal.last_index == 2
    assert wal.next_index == 3
    await wal.append(make_entries(3, 4))
    assert wal.read(1, 4) == make_entries(1, 4)


async def test_failed_fdatasync_poisons_the_log() -> None:
    disk = MemoryDisk()
    wal = await WriteAheadLog.open(disk)
    await wal.append(make_entries(1, 3))
    disk.inject_sync_error(errno.EIO)
    with pytest.raises(StorageError, match="until the log is recovered"):
        await wal.append(make_entries(3, 4))
    with pytest.raises(StorageError):  # every later append hears of it too
        await wal.append(make_entries(3, 4))
    assert wal.last_index == 2  # nothing unsynced is reported durable
    disk.crash(fate=TailFate.LOST)
    wal = await WriteAheadLog.open(disk)
    assert wal.read(1, 3) == make_entries(1, 3)


async def test_recover_rewrites_what_a_failed_fdatasync_may_have_lost() -> None:
    """fsyncgate: after a failed fdatasync the kernel marks the pages clean, so the bytes read
    back but never reach the disk. ``recover`` cuts them off, so they are written again."""
    disk = MemoryDisk()
    wal = await WriteAheadLog.open(disk)
    await wal.append(make_entries(1, 3))
    disk.inject_lost_sync()
    with pytest.raises(StorageError):
        await wal.append(make_entries(3, 5))
    await wal.recover()
    assert wal.failure is None
    assert wal.next_index == 3  # the failed batch counts for nothing
    await wal.append(make_entries(3, 6))  # ... and is written again, with what follows
    await wal.close()
    disk.crash(fate=TailFate.LOST)
    wal = await WriteAheadLog.open(disk)
    assert wal.read(1, 6) == make_entries(1, 6)


async def test_reopening_after_a_lost_fdatasync_would_lose_synced_entries() -> None:
    """Why ``recover`` does not simply reopen the log: replay reads the lost pages from the
    cache, the next sync succeeds without writing them, and a crash loses entries that were
    acknowledged as durable."""
    disk = MemoryDisk()
    wal = await WriteAheadLog.open(disk)
    await wal.append(make_entries(1, 3))
    disk.inject_lost_sync()
    with pytest.raises(StorageError):
        await wal.append(make_entries(3, 5))
    await wal.close()
    reopened = await WriteAheadLog.open(disk)  # what a restart on the same kernel would see
    assert reopened.last_index == 4
    await reopened.append(make_entries(5, 6))  # "durable" on return: entries 3-5 acknowledged
    await reopened.close()
    disk.crash(fate=TailFate.LOST)
    with pytest.raises(CorruptionError):
        await WriteAheadLog.open(disk)


async def test_recover_after_a_failed_rollover_rolls_over_again() -> None:
    disk = MemoryDisk()
    wal = await WriteAheadLog.open(disk, segment_bytes=64)
    await wal.append(make_entries(1, 3))  # past 64 bytes: the next batch rolls over
    disk.inject_sync_error()  # the sealing sync of the old segment fails
    with pytest.raises(StorageError):
        await wal.append(make_entries(3, 4))
    await wal.recover()
    await wal.append(make_entries(3, 5))
    await wal.close()
    disk.crash(fate=TailFate.LOST)
    wal = await WriteAheadLog.open(disk, segment_bytes=64)
    assert wal.read(1, 5) == make_entries(1, 5)


async def test_fsync_off_writes_without_syncing_until_sync() -> None:
    disk = MemoryDisk()
    wal = await WriteAheadLog.open(disk, fsync=False)
    syncs = disk.syncs
    await wal.append(make_entries(1, 4))
    assert disk.syncs == syncs
    await wal.sync()
    await wal.append(make_entries(4, 6))
    disk.crash(fate=TailFate.LOST)
    wal = await WriteAheadLog.open(disk, fsync=False)
    assert wal.read(1, 4) == make_entries(1, 4)
    assert wal.last_index == 3


async def test_real_disk_reports_missing_file(tmp_path: Path) -> None:
    disk = RealDisk(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        await disk.open("absent.log", create=False)
    assert not os.path.exists(tmp_path / "absent.log")
