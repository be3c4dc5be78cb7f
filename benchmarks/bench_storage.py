"""Storage benchmark: the disk's raw fdatasync rate, then durable WAL appends as a node makes them.

Run by hand (a component benchmark, not part of ``make bench``); figures, not a test. Every WAL
append here is acknowledged only after its fdatasync, exactly as in production.

A node has one appender, its Raft peer, which appends a whole round of proposals at once and
waits for it. So the WAL appends here come from one task, ``--batch`` records of 100 bytes at a
time (1, as a lone request makes, and 64, as a round under load makes), each configuration:

- with fdatasync in the helper process (``RealDisk``'s default) or in a worker thread
  (``RealDisk(sync_helper=False)``);
- on an idle event loop, or on a busy one: another task computing in slices of 0.2 ms between
  checkpoints, as a node's loop does while its Raft peer waits (encoding the next round,
  applying, serving clients). A worker thread needs the GIL to hand its result back, which a
  busy loop holds; the helper process answers through a socket the loop polls anyway.

    python benchmarks/bench_storage.py [--seconds 2] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import trio

from raftq.raft.types import Entry
from raftq.storage.disk import RealDisk
from raftq.storage.wal import WriteAheadLog

RECORD_DATA_BYTES = 100


def raw_fdatasync_rate(directory: str, seconds: float) -> dict[str, Any]:
    """Append 100 bytes and fdatasync, in a plain loop: the ceiling for one-at-a-time writes."""
    path = os.path.join(directory, "raw.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    payload = b"x" * RECORD_DATA_BYTES
    syncs = 0
    start = time.perf_counter()
    deadline = start + seconds
    try:
        while time.perf_counter() < deadline:
            os.write(fd, payload)
            os.fdatasync(fd)
            syncs += 1
    finally:
        os.close(fd)
        os.remove(path)
    elapsed = time.perf_counter() - start
    return {"syncs_per_second": syncs / elapsed, "sync_ms": elapsed / syncs * 1000}


BUSY_SLICE_S = 0.0002


async def busy_loop(stop_at: float) -> int:
    """Compute in 0.2 ms slices with a checkpoint between them until ``stop_at``; the slices."""
    slices = 0
    while trio.current_time() < stop_at:
        until = time.perf_counter() + BUSY_SLICE_S
        while time.perf_counter() < until:
            pass
        slices += 1
        await trio.lowlevel.checkpoint()
    return slices


async def wal_appends(
    directory: str, batch: int, seconds: float, *, sync_helper: bool, busy: bool
) -> dict[str, Any]:
    """One appender appending ``batch`` 100-byte records at a time and awaiting each append."""
    wal_directory = tempfile.mkdtemp(dir=directory)
    wal = await WriteAheadLog.open(RealDisk(wal_directory, sync_helper=sync_helper))
    data = b"x" * RECORD_DATA_BYTES
    latencies: list[float] = []
    stop_at = trio.current_time() + seconds
    busy_slices = 0

    async def busy_task() -> None:
        nonlocal busy_slices
        busy_slices = await busy_loop(stop_at)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        if busy:
            nursery.start_soon(busy_task)
        index = 1
        while trio.current_time() < stop_at:
            entries = [Entry(index=index + n, term=1, data=data) for n in range(batch)]
            began = time.perf_counter()
            await wal.append(entries)
            latencies.append(time.perf_counter() - began)
            index += batch
    elapsed = time.perf_counter() - start
    stats = wal.statistics()
    await wal.close()
    shutil.rmtree(wal_directory)
    latencies.sort()
    return {
        "batch": batch,
        "fsync_in": "helper process" if sync_helper else "worker thread",
        "loop": "busy" if busy else "idle",
        "records_per_second": stats.entries / elapsed,
        "appends_per_second": stats.appends / elapsed,
        "latency_p50_ms": statistics.median(latencies) * 1000,
        "latency_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "busy_slices_per_second": busy_slices / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument(
        "--dir", default=".", help="where to write (default: here, to measure this disk)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    arguments = parser.parse_args()
    directory = tempfile.mkdtemp(prefix=".bench-storage-", dir=arguments.dir)
    try:
        raw = raw_fdatasync_rate(directory, arguments.seconds)
        runs = [
            trio.run(
                functools.partial(
                    wal_appends, directory, batch, arguments.seconds, sync_helper=helper, busy=busy
                )
            )
            for batch in (1, 64)
            for busy in (False, True)
            for helper in (True, False)
        ]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    report = {"raw_fdatasync": raw, "wal": runs}
    if arguments.json:
        json.dump(report, sys.stdout)
        print()
        return
    print(f"raw fdatasync: {raw['syncs_per_second']:,.0f}/s ({raw['sync_ms']:.3f} ms per sync)")
    print(
        f"{'batch':>5} {'loop':>5} {'fsync in':>15} {'records/s':>10} {'appends/s':>10} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'busy slices/s':>13}"
    )
    for run in runs:
        print(
            f"{run['batch']:>5} {run['loop']:>5} {run['fsync_in']:>15} "
            f"{run['records_per_second']:>10,.0f} {run['appends_per_second']:>10,.0f} "
            f"{run['latency_p50_ms']:>7.3f} {run['latency_p99_ms']:>7.3f} "
            f"{run['busy_slices_per_second']:>13,.0f}"
        )


if __name__ == "__main__":
    main()
