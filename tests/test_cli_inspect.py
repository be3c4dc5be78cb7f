"""``raftq inspect`` as a user runs it: a subprocess, its output and its exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import trio

from raftq.raft.types import HardState, SnapshotMeta
from raftq.storage.disk import RealDisk
from raftq.storage.durable_log import DurableLog
from tests.storage_helpers import make_entries


async def run_raftq(*arguments: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "raftq", *arguments],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def make_data_dir(path: Path) -> None:
    log = await DurableLog.open(RealDisk(str(path)))
    await log.append(make_entries(1, 21))
    await log.save_hard_state(HardState(term=3, vote="n1", commit=15))
    await log.save_snapshot(SnapshotMeta(index=10, term=1), b"state")
    await log.close()


async def test_inspect_reports_a_healthy_data_directory(tmp_path: Path) -> None:
    await make_data_dir(tmp_path)
    result = await run_raftq("inspect", "--data-dir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["hard_state"] == {"term": 3, "vote": "n1", "commit": 15}
    assert report["log"] == {"first_index": 11, "last_index": 20}
    assert report["snapshot"]["index"] == 10


async def test_inspect_names_file_and_offset_of_corruption(tmp_path: Path) -> None:
    await make_data_dir(tmp_path)
    (segment,) = sorted((tmp_path / "wal").glob("*.log"))
    data = bytearray(segment.read_bytes())
    data[20] ^= 0x04
    segment.write_bytes(bytes(data))
    result = await run_raftq("inspect", "--data-dir", str(tmp_path))
    assert result.returncode == 3
    assert f"wal/{segment.name} at byte 0" in result.stderr.decode()


async def test_inspect_refuses_a_directory_in_use(tmp_path: Path) -> None:
    await make_data_dir(tmp_path)
    log = await DurableLog.open(RealDisk(str(tmp_path)))
    try:
        result = await run_raftq("inspect", "--data-dir", str(tmp_path))
    finally:
        await log.close()
    assert result.returncode == 3
    assert b"in use by another raftq process" in result.stderr


async def test_inspect_refuses_what_is_not_a_data_directory(tmp_path: Path) -> None:
    result = await run_raftq("inspect", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert list(tmp_path.iterdir()) == []  # and created nothing there
