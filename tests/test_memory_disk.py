"""MemoryDisk's crash model, and the WAL on top of it under random crash sequences."""

from __future__ import annotations

import random

import pytest
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from raftq.errors import DataDirError
from raftq.raft.types import Entry
from raftq.storage.memory_disk import MemoryDisk, TailFate
from raftq.storage.wal import WriteAheadLog

# --- the crash model ----------------------------------------------------------------------------


async def test_synced_bytes_survive_and_unsynced_meet_their_fate() -> None:
    assert await crash_with_unsynced_tail(0, TailFate.LOST) == b"synced"
    assert await crash_with_unsynced_tail(0, TailFate.KEPT) == b"synced0123456789"


async def crash_with_unsynced_tail(seed: int, fate: TailFate) -> bytes:
    """b"synced" made durable, b"0123456789" appended after it; what survives the crash."""
    disk = MemoryDisk()
    file = await disk.open("f")
    await disk.fsync_directory("")
    await file.write(b"synced", sync=True)
    await file.write(b"0123456789", sync=False)
    disk.crash(random.Random(seed), fate)
    return await disk.read("f")


async def test_torn_and_zeroed_tails_keep_a_prefix() -> None:
    for seed in range(50):
        torn = await crash_with_unsynced_tail(seed, TailFate.TORN)
        assert torn.startswith(b"synced")
        assert b"0123456789".startswith(torn[6:])
        assert len(torn) < 16
        zeroed = await crash_with_unsynced_tail(seed, TailFate.ZEROED)
        assert zeroed.startswith(b"synced")
        assert len(zeroed) == 16
        kept = zeroed[6:].rstrip(b"\0")
        assert b"0123456789".startswith(kept)


async def test_a_name_is_durable_only_after_fsync_of_its_directory() -> None:
    disk = MemoryDisk()
    await disk.make_directory("d")
    await disk.fsync_directory("")
    file = await disk.open("d/new")
    await file.write(b"data", sync=True)
    disk.crash()
    assert not await disk.exists("d/new")
    file = await disk.open("d/new")
    await file.write(b"data", sync=True)
    await disk.fsync_directory("d")
    disk.crash()
    assert await disk.read("d/new") == b"data"


async def test_rename_and_remove_are_durable_after_directory_fsync() -> None:
    disk = MemoryDisk()
    for name, content in (("a", b"old"), ("a.tmp", b"new")):
        file = await disk.open(name)
        await file.write(content, sync=True)
    await disk.fsync_directory("")
    await disk.rename("a.tmp", "a")
    disk.crash()
    assert await disk.read("a") == b"old"  # the rename was not made durable
    await disk.rename("a.tmp", "a")
    await disk.fsync_directory("")
    disk.crash()
    assert await disk.read("a") == b"new"
    assert not await disk.exists("a.tmp")
    await disk.remove("a")
    disk.crash()
    assert await disk.exists("a")


async def test_unsynced_truncate_lands_whole_or_not_at_all() -> None:
    outcomes = set()
    for seed in range(40):
        disk = MemoryDisk()
        file = await disk.open("f")
        await disk.fsync_directory("")
        await file.write(b"0123456789", sync=True)
        await file.truncate(4)
        disk.crash(random.Random(seed))
        outcomes.add(await disk.read("f"))
    assert outcomes == {b"0123", b"0123456789"}


async def test_handles_die_with_a_crash_and_locks_are_released() -> None:
    disk = MemoryDisk()
    file = await disk.open("f")
    disk.lock("LOCK")
    with pytest.raises(DataDirError):
        disk.lock("LOCK")
    disk.crash()
    with pytest.raises(OSError, match="before a crash"):
        await file.write(b"x", sync=False)
    disk.lock("LOCK").release()


# --- the WAL under random append / sync / crash / reopen sequences ------------------------------


class WalCrashMachine(RuleBasedStateMachine):
    """Model: ``written`` is every entry the WAL took, ``synced`` how many of them are durable.

    After every crash the log must hold all synced entries, in order, and then at most a prefix
    of the unsynced ones, each whole (never a half-formed record) and never one from before a
    truncation.
    """

    def __init__(self) -> None:
        super().__init__()
        self.disk = MemoryDisk()
        self.written: list[Entry] = []
        self.synced = 0
        self.term = 1

    @initialize()
    def open_log(self) -> None:
        self.wal = self._open()

    def _open(self) -> WriteAheadLog:
        return trio.run(lambda: WriteAheadLog.open(self.disk, segment_bytes=300, fsync=False))

    @rule(count=st.integers(1, 5), size=st.integers(0, 120))
    def append(self, count: int, size: int) -> None:
        first = len(self.written) + 1
        entries = [
            Entry(index=index, term=self.term, data=bytes([index % 251]) * size)
            for index in range(first, first + count)
        ]
        trio.run(self.wal.append, entries)
        self.written.extend(entries)

    @rule()
    def sync(self) -> None:
        trio.run(self.wal.sync)
        self.synced = len(self.written)

    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        if len(self.written) <= self.synced:
            return
        first = data.draw(st.integers(self.synced + 1, len(self.written)), label="truncate at")
        trio.run(self.wal.truncate_suffix, first)
        del self.written[first - 1 :]
        self.term += 1  # what replaces them comes from a later leader

    @rule(seed=st.integers(0, 2**32 - 1), fate=st.none() | st.sampled_from(TailFate))
    def crash_and_reopen(self, seed: int, fate: TailFate | None) -> None:
        self.disk.crash(random.Random(seed), fate)
        self.wal = self._open()
        recovered = trio.run(lambda: _read_all(self.wal))
        assert len(recovered) >= self.synced, "a synced entry was lost"
        assert recovered == self.written[: len(recovered)], "an entry changed or appeared"
        self.written = recovered
        self.synced = len(recovered)  # open() truncates and syncs the surviving tail

    @rule()
    def close_and_reopen(self) -> None:
        trio.run(self.wal.close)
        self.wal = self._open()
        assert trio.run(lambda: _read_all(self.wal)) == self.written

    @invariant()
    def index_matches_model(self) -> None:
        assert self.wal.next_index == len(self.written) + 1


async def _read_all(wal: WriteAheadLog) -> list[Entry]:
    return wal.read(wal.first_index, wal.last_index + 1)


WalCrashMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestWalCrashes = WalCrashMachine.TestCase
