"""Storage benchmark: the disk's raw fdatasync rate, then durable WAL appends under group commit.

Run by hand (a component benchmark, not part of ``make bench``); figures, not a test. Every WAL
append here is acknowledged only after its fdatasync, exactly as in production.

    python benchmarks/bench_storage.py [--seconds 3] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from itertools import count
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


async def wal_appends(directory: str, appenders: int, seconds: float) -> dict[str, Any]:
    """``appenders`` tasks, each appending one 100-byte record at a time and awaiting it."""
    wal_directory = tempfile.mkdtemp(dir=directory)
    wal = await WriteAheadLog.open(RealDisk(wal_directory))
    data = b"x" * RECORD_DATA_BYTES
    next_index = count(1)
    latencies: list[float] = []
    stop_at = trio.current_time() + seconds

    async def appender() -> None:
        while trio.current_time() < stop_at:
            index = next(next_index)
            entry = Entry(index=index, term=1, data=data)
            began = time.perf_counter()
            await wal.append([entry])
            latencies.append(time.perf_counter() - began)

    # Indexes are taken in call order and appends are contiguous: each appender takes its
    # index and enters append() without a checkpoint in between, so order always holds.
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(appenders):
            nursery.start_soon(appender)
    elapsed = time.perf_counter() - start
    stats = wal.statistics()
    await wal.close()
    shutil.rmtree(wal_directory)
    latencies.sort()
    return {
        "appenders": appenders,
        "records_per_second": stats.entries / elapsed,
        "records": stats.entries,
        "fdatasyncs": stats.batches,
        "records_per_sync": stats.entries / stats.batches,
        "latency_p50_ms": statistics.median(latencies) * 1000,
        "latency_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument(
        "--dir", default=".", help="where to write (default: here, to measure this disk)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    arguments = parser.parse_args()
    directory = tempfile.mkdtemp(prefix=".bench-storage-", dir=arguments.dir)
    try:
        raw = raw_fdatasync_rate(directory, arguments.seconds)
        runs = [
            trio.run(wal_appends, directory, appenders, arguments.seconds)
            for appenders in (1, 8, 64)
        ]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    single = runs[0]["records_per_second"]
    report = {
        "raw_fdatasync": raw,
        "wal": runs,
        "speedup_64_vs_1": runs[-1]["records_per_second"] / single,
    }
    if arguments.json:
        json.dump(report, sys.stdout)
        print()
        return
    print(f"raw fdatasync: {raw['syncs_per_second']:,.0f}/s ({raw['sync_ms']:.3f} ms per sync)")
    print(f"{'appenders':>9} {'records/s':>11} {'per sync':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for run in runs:
        print(
            f"{run['appenders']:>9} {run['records_per_second']:>11,.0f} "
            f"{run['records_per_sync']:>9.1f} {run['latency_p50_ms']:>8.3f} "
            f"{run['latency_p99_ms']:>8.3f}"
        )
    print(f"64 appenders vs 1: {report['speedup_64_vs_1']:.1f}x")


if __name__ == "__main__":
    main()
