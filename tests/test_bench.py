"""``raftq bench`` (issue 7): the suite runs end to end (at toy sizes, ``--quick``), and its
table states every figure the issue asks for, each with its workload."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from raftq.bench import cluster_restart_rows, format_table, snapshot_stall_rows, table_rows
from raftq.local_cluster import process_alive

ROOT = Path(__file__).resolve().parent.parent


def bench(*flags: str) -> dict[str, Any]:
    """``raftq bench`` in its own process group, killed whole however the test ends: the
    benchmark script it runs with it (whose nodes then see their lifeline close)."""
    with subprocess.Popen(
        [sys.executable, "-m", "raftq", "bench", "--quick", "--json", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, stderr[-3000:]
    return dict(json.loads(stdout.strip().splitlines()[-1]))


def cluster_result(nodes: int, fsync: str, rate: float) -> dict[str, Any]:
    return {
        "nodes": nodes,
        "fsync": fsync,
        "workers_per_node": 64,
        "end_to_end": {"jobs": 1000, "jobs_per_second": rate},
        "enqueue_batches": {
            "jobs": 1000,
            "batch": 100,
            "producers": 4,
            "jobs_per_second": 2 * rate,
        },
        "enqueue_single": {"jobs": 200, "concurrency": 16, "jobs_per_second": rate / 2},
    }


SAMPLE = {
    "one_node": cluster_result(1, "always", 3000),
    "three_nodes": cluster_result(3, "always", 1000),
    "three_nodes_fsync_off": cluster_result(3, "off", 2000),
    "node": {
        "workers_per_node": 4,
        "latency": {"samples": 20, "p50_ms": 4.25, "p99_ms": 9.5},
        "failover": {"seconds": [0.5, 0.75]},
    },
    "floor": {"trio": {"p50_ms": 1.0625, "p99_ms": 3.5}},
    **{
        f"slots_{slots}": {
            "workers_per_node": slots,
            "throughput": {
                "jobs": 20_000,
                "end_to_end_jobs_per_second": 1000.0 * slots,
                "node_cpu_ms_per_job": 0.5 / slots,
            },
            "load_average": [2.5, 2.0, 1.0],
        }
        for slots in (1, 4, 16, 64)
    },
    "recovery": {
        "jobs": 1_000_000,
        "log_entries_after_snapshot": 100_000,
        "recovery_seconds": 12.5,
        "node_recovery_seconds": 3.25,
        "rss_bytes_pending_jobs": 600_000_000,
    },
    "cluster_restart": {
        "jobs": 300_000,
        "rounds": [
            {"serving_seconds": 2.5, "caught_up_seconds": 1.25},
            {"serving_seconds": 2.75, "caught_up_seconds": 1.5},
        ],
    },
}


def test_the_table_has_every_figure_of_the_issue_with_its_workload() -> None:
    table = format_table(table_rows(SAMPLE) + cluster_restart_rows(SAMPLE))
    for expected in (
        "| end to end, 1 node, fsync on | 3,000 jobs/s |",
        "| end to end, 3 nodes, fsync on | 1,000 jobs/s |",
        "| enqueue, enqueue_many, 3 nodes | 2,000 jobs/s | 1,000 noop jobs, batches of 100",
        "| enqueue, single calls, 3 nodes | 500 jobs/s | 200 enqueue() calls from 16",
        "| enqueue commit latency, 3 nodes, vs the floor | p50 4.2 ms (4.0x the floor's 1.06 "
        "ms), p99 9.5 ms (floor 3.50 ms) | 20 enqueues one at a time, back to back, while 4 "
        "workers per node run each job",
        "| end to end, 3 nodes, 1 slots/node | 1,000 jobs/s at 0.500 ms node CPU per job | "
        "20,000 noop jobs",
        "| end to end, 3 nodes, 64 slots/node | 64,000 jobs/s at 0.008 ms node CPU per job |",
        "--workers 16; load average 2.5 at its end |",
        "| failover, 3 nodes | 0.50-0.75 s | kill -9 of the leader",
        "| restart recovery, 1 node | 12.50 s (snapshot load 3.25 s) | snapshot of 1,000,000 "
        "pending jobs + 100,000 log entries",
        "| RSS per node | 600 MB | 1,000,000 pending",
        "| fsync on vs off, 3 nodes | 1,000 jobs/s vs 2,000 jobs/s end to end",
        "| cluster restart, 3 nodes | 2.50-2.75 s | 300,000 pending jobs, all 3 nodes killed",
        "| follower catch-up, 3 nodes | 1.25-1.50 s | the same cluster, a follower killed",
    ):
        assert expected in table
    assert all(row[2] for row in table_rows(SAMPLE))  # every figure states its workload


STALL_SAMPLE = {
    "snapshot_stall": {
        "jobs": 1_000_000,
        "snapshot_bytes": 142_000_000,
        "election_timeout_s": 0.3,
        "heartbeat_interval_s": 0.06,
        "leader_snapshot_seconds": 2.5,
        "leader_tick_late_max_s": 0.012,
        "follower_leader_silence_max_s": {"n2": 0.07, "n3": 0.081},
        "heartbeat_gap_past_interval_max_s": 0.021,
        "term_changes": {"n1": 0, "n2": 0, "n3": 1},
    }
}


def test_the_table_has_the_snapshot_stall_figures() -> None:
    table = format_table(snapshot_stall_rows(STALL_SAMPLE))
    for expected in (
        "| loop stall while snapshotting, 3 nodes | 12 ms longest tick delay on the leader "
        "(target under 30 ms) | leader snapshots 1,000,000 pending jobs (142 MB, 2.5 s) |",
        "| heartbeat gap while snapshotting, 3 nodes | 81 ms longest silence on a follower, 21 ms "
        "past the 60 ms heartbeat (target under 30 ms) | the same snapshot; elections during "
        "it: 1 |",
    ):
        assert expected in table


@pytest.mark.slow
def test_the_quick_suite_measures_snapshot_stalls() -> None:
    stall = bench("--only", "snapshot_stall")["results"]["snapshot_stall"]
    assert stall["jobs"] == 5_000
    assert stall["leader_snapshot_seconds"] > 0
    assert stall["leader_tick_late_max_s"] > 0
    assert set(stall["follower_leader_silence_max_s"]) == {"n1", "n2", "n3"} - {stall["leader"]}
    assert set(stall["term_changes"]) == {"n1", "n2", "n3"}  # elections: counted, not assumed


def test_an_unknown_step_is_refused() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "raftq", "bench", "--only", "nonsense"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert completed.returncode == 2
    assert "no step nonsense" in completed.stderr


@pytest.mark.slow
def test_the_quick_suite_measures_the_clusters() -> None:
    """The three cluster steps are one script with other flags: one of them, and the fsync-off
    one at that, stands for all three (the table test covers how they are reported)."""
    results = bench("--only", "three_nodes_fsync_off,node,slots_4,floor")["results"]
    assert set(results) == {"three_nodes_fsync_off", "node", "slots_4", "floor"}
    slots = results["slots_4"]
    assert slots["workers_per_node"] == 4
    assert slots["throughput"]["end_to_end_jobs_per_second"] > 0
    assert slots["throughput"]["node_cpu_ms_per_job"] > 0
    assert 0 < results["floor"]["trio"]["p50_ms"] <= results["floor"]["trio"]["p99_ms"]
    cluster = results["three_nodes_fsync_off"]
    for figure in ("end_to_end", "enqueue_batches", "enqueue_single"):
        assert cluster[figure]["jobs_per_second"] > 0, figure
    assert (cluster["nodes"], cluster["fsync"]) == (3, "off")
    latency = results["node"]["latency"]
    assert 0 < latency["p50_ms"] <= latency["p99_ms"]
    assert len(results["node"]["failover"]["seconds"]) == 1
    assert 0 < results["node"]["failover"]["seconds"][0] < 10


@pytest.mark.slow
def test_the_quick_suite_measures_recovery_and_memory() -> None:
    recovery = bench("--only", "recovery")["results"]["recovery"]
    assert recovery["jobs"] == 5_000
    assert recovery["log_entries_after_snapshot"] >= 1_000
    assert recovery["snapshot_index"] > 0
    assert 0 < recovery["node_recovery_seconds"] < recovery["recovery_seconds"]
    assert recovery["rss_bytes_pending_jobs"] > 0


@pytest.mark.slow
def test_the_quick_suite_measures_a_cluster_restart_and_a_follower_catch_up() -> None:
    report = bench("--only", "cluster_restart")["results"]["cluster_restart"]
    assert report["jobs"] == 5_000
    (round_,) = report["rounds"]
    assert 0 < round_["serving_seconds"] <= round_["all_applied_seconds"]
    assert round_["caught_up_seconds"] > 0
    assert round_["rss_bytes"] > 0


def processes_whose_command_has(text: str) -> dict[int, str]:
    """Live processes (pid -> command line) whose command line contains ``text``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command_line and process_alive(int(entry.name)):
            found[int(entry.name)] = command_line
    return found


@pytest.mark.slow
def test_sigkill_of_raftq_bench_ends_its_script_and_the_script_s_nodes() -> None:
    """The full-size node step runs for minutes: killed once its nodes are up, nothing of it
    may outlive ``raftq bench`` (the script by PR_SET_PDEATHSIG, its nodes by their lifeline)."""
    with subprocess.Popen(
        [sys.executable, "-m", "raftq", "bench", "--only", "node"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    ) as bench_process:
        started: dict[int, str] = {}
        try:
            deadline = time.monotonic() + 60
            while len(started) < 4 and time.monotonic() < deadline:  # the script, 3 nodes
                started = processes_whose_command_has("bench_node.py") | {
                    pid: line
                    for pid, line in processes_whose_command_has("raftq-bench-node-").items()
                    if "raftq.node" in line
                }
                time.sleep(0.1)
            assert len(started) == 4, started
        finally:
            bench_process.kill()
            bench_process.wait()
        try:
            deadline = time.monotonic() + 30
            while any(process_alive(pid) for pid in started) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [pid for pid in started if process_alive(pid)] == []
        finally:
            for pid in started:
                if process_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            for line in started.values():  # the script's data directory, left by SIGTERM
                match = re.search(r"(/\S*raftq-bench-node-[^/\s]+)", line)
                if match:
                    shutil.rmtree(match[1], ignore_errors=True)
