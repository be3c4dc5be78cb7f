"""Restart recovery time and resident memory of a node holding many pending jobs.

Run by ``raftq bench`` (or by hand); figures, not a test. One ``python -m raftq.node`` process
(a single-node cluster on a free 127.0.0.1 port, no workers, so every job stays pending) in a
temporary directory:

1. fill: ``--jobs`` noop jobs with ~100-byte payloads (``{"pad": "x" * 80}``), enqueued with
   ``enqueue_many`` in batches of 10,000, ``--snapshot-entries`` chosen so that the node
   snapshots along the way; then tiny commands (pause/resume of an empty queue), a snapshot
   period at a time, until a snapshot begun after the last job is saved (the node's
   ``raftq_snapshot_seconds`` count), so the last snapshot holds every job (before, a snapshot
   still being saved when the fill ended could leave 170,000 of a million jobs in the log).
   ``--fsync off`` while filling: the
   fill is set-up, not measured (a clean SIGTERM stop still writes everything out).
2. restart, snapshots off from here on (``--snapshot-entries 0 --snapshot-bytes 0``); once
   it answers, its RSS (``/proc/PID/status`` VmRSS) is the memory of a node holding
   ``--jobs`` pending jobs. Then ``--entries`` more noop jobs, one per ``enqueue`` call from
   256 concurrent callers, until the commit index has grown by ``--entries``: that many log
   entries after the snapshot. Clean stop; ``raftq inspect`` reports the snapshot index and
   the last log index, the figures' proof.
3. restart again, timed: from the process's spawn until a linearizable read (``get`` of the
   last job enqueued) answers and ``status`` shows the node applied every entry of its log.
   The node's own ``raftq_recovery_seconds`` (open the WAL, read and restore the snapshot)
   is read from its metrics, and the CPU the node process used until then from ``/proc``:
   unlike wall time, a figure that holds when other work shares the machine.

    python benchmarks/bench_recovery.py [--jobs 1000000] [--entries 100000] [--json]

To compare two versions of raftq on the same data (A/B, back to back), fill once and keep the
data directory, then time only the restart, on a fresh copy of it each time (run each
version's restart with ``PYTHONPATH`` pointing at its tree: the node process inherits it):

    python benchmarks/bench_recovery.py --jobs 1000000 --entries 100000 --keep DIR
    python benchmarks/bench_recovery.py --restart-only DIR [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

import raftq
from raftq.client.client import Client
from raftq.local_cluster import LocalCluster, free_ports, rss_bytes

BATCH = 10_000
PAYLOAD = {"pad": "x" * 80}
SNAPSHOTS_WHILE_FILLING = 4
SNAPSHOTS_SAVED = "raftq_snapshot_seconds_count"
SNAPSHOT_ROUNDS_MAX = 120
"""Rounds of one snapshot period of tiny entries each, then a second's pause, waiting for a
snapshot of every job: a million jobs' snapshot takes seconds to encode and save."""


async def serving(client: Client, node: LocalCluster, seconds: float = 600) -> dict[str, Any]:
    """The node's status once it leads its one-node cluster (it then serves reads)."""
    with trio.fail_after(seconds):
        while True:
            node.check_running()
            try:
                status = await client.status()
                if status["cluster"]["leader"]:
                    return status
            except raftq.RaftqError:
                pass
            await trio.sleep(0.01)


async def status_or_none(client: Client) -> dict[str, Any] | None:
    try:
        return await client.status()
    except raftq.RaftqError:
        return None


def metric(address: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise LookupError(f"no metric {name} at {address}")


def inspect(data_dir: Path) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-m", "raftq", "inspect", "--data-dir", str(data_dir), "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(output))


async def fill(client: Client, jobs: int, snapshot_entries: int, metrics_addr: str) -> None:
    for start in range(0, jobs, BATCH):
        count = min(BATCH, jobs - start)
        await client.enqueue_many(
            [{"type": "noop", "payload": PAYLOAD, "key": f"fill-{start + n}"} for n in range(count)]
        )
    # Until a snapshot begun after the last job is saved: the one being saved now (if any)
    # may have begun before, and the node begins the next only once it is saved. Tiny
    # entries (pause/resume of an empty queue) make it due.
    saved = await trio.to_thread.run_sync(metric, metrics_addr, SNAPSHOTS_SAVED)
    for _ in range(SNAPSHOT_ROUNDS_MAX):
        for _ in range(snapshot_entries // 2 + 1):  # one snapshot period of entries, at least
            await client.pause("bench-idle")
            await client.resume("bench-idle")
        if await trio.to_thread.run_sync(metric, metrics_addr, SNAPSHOTS_SAVED) >= saved + 2:
            return
        await trio.sleep(1)
    raise RuntimeError(f"no snapshot of every job after {SNAPSHOT_ROUNDS_MAX} rounds")


async def add_entries(client: Client, entries: int, first_commit: int) -> None:
    """Single-job enqueues until the commit index has grown by ``entries``."""
    counter = iter(range(10**9))
    done = trio.Event()

    async def caller() -> None:
        for n in counter:
            if done.is_set():
                return
            await client.enqueue("noop", PAYLOAD, key=f"entry-{n}")

    async def watch() -> None:
        for _ in range(12_000):  # ten minutes of polls
            status = await status_or_none(client)  # a node this busy may miss a status call
            if status and status["cluster"]["commit_index"] >= first_commit + entries:
                break
            await trio.sleep(0.05)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        for _ in range(256):
            nursery.start_soon(caller)


async def run(
    arguments: argparse.Namespace, root: Path, filled: dict[str, Any] | None
) -> dict[str, Any]:
    """Phases 1 and 2 unless ``filled`` (``--restart-only``: ``root`` holds its copy), then 3."""
    batches = -(-arguments.jobs // BATCH)
    snapshot_entries = max(1, batches // SNAPSHOTS_WHILE_FILLING)
    (metrics_port,) = free_ports(1)
    metrics_addr = f"127.0.0.1:{metrics_port}"

    def node(snapshot_entries: int, fsync: bool) -> LocalCluster:
        """0 entries: no snapshots at all (by count or by bytes), after the fill."""
        snapshot_bytes = [] if snapshot_entries else ["--snapshot-bytes", "0"]
        return LocalCluster(
            root,
            1,
            fsync=fsync,
            extra_flags=[
                "--snapshot-entries", str(snapshot_entries), *snapshot_bytes,
                "--metrics-addr", metrics_addr,
            ],
        )  # fmt: skip

    started: list[LocalCluster] = []
    try:
        if filled is None:
            filled = await fill_and_grow(
                arguments, root, node, started, snapshot_entries, metrics_addr
            )
        restarting = node(0, fsync=True)
        started.append(restarting)
        return await restart(filled, restarting, metrics_addr)
    finally:
        for cluster in started:
            await cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


async def fill_and_grow(
    arguments: argparse.Namespace,
    root: Path,
    node: Callable[..., LocalCluster],
    started: list[LocalCluster],
    snapshot_entries: int,
    metrics_addr: str,
) -> dict[str, Any]:
    """Phases 1 and 2: the data directory, and what the restart needs to know of it."""
    filling = node(snapshot_entries, fsync=False)
    started.append(filling)
    await filling.start("n1")
    async with raftq.connect(filling.client_addresses, timeout=120) as client:
        await serving(client, filling)
        began = time.perf_counter()
        await fill(client, arguments.jobs, snapshot_entries, metrics_addr)
        fill_s = time.perf_counter() - began
    assert await filling.terminate("n1") == 0
    after_fill = inspect(root / "n1")

    growing = node(0, fsync=False)
    started.append(growing)
    growing.addresses = filling.addresses  # same node, same port
    await growing.start("n1")
    async with raftq.connect(growing.client_addresses, timeout=120) as client:
        await serving(client, growing)
        rss = rss_bytes(growing.pid("n1"))
        status = await client.status()
        await add_entries(client, arguments.entries, status["cluster"]["commit_index"])
        last_id = await client.enqueue("noop", PAYLOAD, key="last")
    assert await growing.terminate("n1") == 0
    before_restart = inspect(root / "n1")
    filled = {
        "jobs": arguments.jobs,
        "fill_seconds": fill_s,
        "snapshot_index_after_fill": after_fill["snapshot"]["index"],
        "last_index_after_fill": after_fill["log"]["last_index"],
        "rss_bytes_pending_jobs": rss,
        "rss_bytes_per_job": rss / arguments.jobs,
        "snapshot_index": before_restart["snapshot"]["index"],
        "last_index": before_restart["log"]["last_index"],
        "last_id": last_id,
    }
    if arguments.keep:
        shutil.copytree(root / "n1", Path(arguments.keep) / "n1")
        (Path(arguments.keep) / "filled.json").write_text(json.dumps(filled))
    return filled


async def restart(
    filled: dict[str, Any],
    restarting: LocalCluster,
    metrics_addr: str,
) -> dict[str, Any]:
    """Phase 3: the timed restart of the data directory ``filled`` describes, from the spawn
    of ``restarting`` until it serves a read of the last job and has applied its whole log."""
    last_id, last_index = filled["last_id"], filled["last_index"]
    spawned = time.perf_counter()
    await restarting.start("n1")
    async with raftq.connect(restarting.client_addresses, timeout=600) as client:
        await serving(client, restarting)
        await client.get(last_id)
        with trio.fail_after(600):
            for _ in range(60_000):
                status = await status_or_none(client)
                if status and status["cluster"]["nodes"][0]["applied_index"] >= last_index:
                    break
                await trio.sleep(0.01)
        recovered_s = time.perf_counter() - spawned
        recovered_cpu_s = restarting.cpu_seconds()
        load_s = await trio.to_thread.run_sync(metric, metrics_addr, "raftq_recovery_seconds")
        rss_after = rss_bytes(restarting.pid("n1"))
    await restarting.stop()
    kept = {key: value for key, value in filled.items() if key not in ("last_id", "last_index")}
    return kept | {
        "log_entries_after_snapshot": last_index - filled["snapshot_index"],
        "recovery_seconds": recovered_s,
        "recovery_cpu_seconds": recovered_cpu_s,
        "node_recovery_seconds": load_s,
        "rss_bytes_after_recovery": rss_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", metavar="DIR", help="keep the filled data directory in DIR")
    parser.add_argument(
        "--restart-only", metavar="DIR", help="time only the restart of a copy of --keep's DIR"
    )
    arguments = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="raftq-bench-recovery-"))
    filled = None
    if arguments.restart_only:
        kept = Path(arguments.restart_only)
        filled = json.loads((kept / "filled.json").read_text())
        shutil.copytree(kept / "n1", root / "n1")
    elif arguments.keep and Path(arguments.keep).exists():
        raise SystemExit(f"--keep {arguments.keep}: it exists; give a new directory")
    report = trio.run(run, arguments, root, filled)
    if arguments.json:
        print(json.dumps(report))
        return
    print(
        f"{report['jobs']:,} pending jobs: RSS {report['rss_bytes_pending_jobs'] / 1e6:,.0f} MB; "
        f"restart with a snapshot at index {report['snapshot_index']:,} plus "
        f"{report['log_entries_after_snapshot']:,} log entries: serving in "
        f"{report['recovery_seconds']:.2f} s "
        f"(snapshot load {report['node_recovery_seconds']:.2f} s; "
        f"{report['recovery_cpu_seconds']:.2f} s of CPU)"
    )


if __name__ == "__main__":
    main()
