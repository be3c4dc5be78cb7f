"""``raftq bench [--json] [--quick]``: the benchmark suite, one table.

Runs the end-to-end benchmark scripts of ``benchmarks/`` (in a clone of the repository), each
in its own process with ``--json``, and gathers their figures into one table, each figure with
its workload; ``--json`` prints one JSON object instead. ``--quick`` runs the same suite at
toy sizes (seconds, for a smoke test): its figures say that the suite works, not how fast
raftq is.

The scripts: ``bench_cluster.py`` (end to end and enqueue throughput of 1 or 3 node processes,
fsync on or off), ``bench_node.py`` (end to end at 1, 4, 16 and 64 job slots per node, with
the nodes' CPU per job; enqueue latency and failover of 3 node processes), ``bench_floor.py``
(the machine's latency floor, beside the enqueue latency of the same run),
``bench_recovery.py`` (restart time and memory of a node holding many pending jobs), and
``bench_cluster_restart.py`` (a three-node cluster holding many pending jobs, all killed and
restarted; a follower killed and restarted), and ``bench_snapshot_stall.py`` (event-loop
stalls and heartbeat gaps while a leader snapshots a million jobs). Each says exactly what it
measures in its docstring. Each step's result carries the load average at its end: on a
shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_ARGUMENTS = 2

SLOTS = 64
"""In-process job slots per node for the cluster steps (noop jobs finish at once)."""

SLOT_COUNTS = (1, 4, 16, 64)
"""Job slots per node of the end-to-end steps of ``bench_node.py``: workers claim ahead of their
free slots, so throughput should not depend on this (issue 16)."""

README_WORKERS = 4
"""The ``--workers`` the README and the docs start nodes with: the latency step uses it."""


@attrs.frozen(kw_only=True)
class Step:
    """One benchmark process: a script and its arguments, full size and quick."""

    name: str
    script: str
    arguments: tuple[str, ...]
    quick_arguments: tuple[str, ...]


def cluster_step(name: str, nodes: int, fsync: str) -> Step:
    common = ("--nodes", str(nodes), "--fsync", fsync, "--workers", str(SLOTS))
    return Step(
        name=name,
        script="bench_cluster.py",
        arguments=(*common, "--jobs", "20000", "--single-jobs", "5000", "--concurrency", "64"),
        quick_arguments=(*common, "--jobs", "500", "--single-jobs", "200", "--concurrency", "16"),
    )


def slots_step(slots: int) -> Step:
    common = ("--workers", str(slots), "--samples", "0", "--failovers", "0")
    return Step(
        name=f"slots_{slots}",
        script="bench_node.py",
        arguments=(*common, "--jobs", "20000"),
        quick_arguments=(*common, "--jobs", "300"),
    )


STEPS: tuple[Step, ...] = (
    cluster_step("one_node", 1, "always"),
    cluster_step("three_nodes", 3, "always"),
    cluster_step("three_nodes_fsync_off", 3, "off"),
    *(slots_step(slots) for slots in SLOT_COUNTS),
    Step(
        name="floor",
        script="bench_floor.py",
        arguments=("--samples", "2000"),
        quick_arguments=("--samples", "50"),
    ),
    Step(
        name="node",
        script="bench_node.py",
        arguments=(
            *("--workers", str(README_WORKERS), "--gap-ms", "0"),
            *("--jobs", "20000", "--samples", "1000", "--failovers", "5"),
        ),
        quick_arguments=(
            *("--workers", str(README_WORKERS), "--gap-ms", "0"),
            *("--jobs", "500", "--samples", "20", "--failovers", "1"),
        ),
    ),
    Step(
        name="recovery",
        script="bench_recovery.py",
        arguments=("--jobs", "1000000", "--entries", "100000"),
        quick_arguments=("--jobs", "5000", "--entries", "1000"),
    ),
    Step(
        name="cluster_restart",
        script="bench_cluster_restart.py",
        arguments=("--jobs", "300000", "--rounds", "2"),
        quick_arguments=("--jobs", "5000", "--rounds", "1"),
    ),
)

SNAPSHOT_STALL_STEP = Step(
    name="snapshot_stall",
    script="bench_snapshot_stall.py",
    arguments=("--jobs", "1000000"),
    quick_arguments=("--jobs", "5000", "--settle-seconds", "1"),
)
STEPS += (SNAPSHOT_STALL_STEP,)


class BenchFailed(RuntimeError):
    pass


PR_SET_PDEATHSIG = 1
"""prctl(2): the signal Linux sends a process when the thread that forked it exits."""


def ending_with_this_process() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes a benchmark script end when ``raftq bench`` does, however:
    Linux sends the script SIGTERM, which ends it, and its nodes see their lifeline close
    (``raftq.lifeline``). ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child
    exits, which is why nodes, started from Trio's worker threads, use a pipe instead; here
    the fork happens in this program's main thread (it runs no other), whose exit is the
    program's. None where there is no such call (then a killed bench's script runs to its
    end, and stops its own nodes)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def die_with_parent() -> None:  # in the child, between fork and exec
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent ended before the call took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return die_with_parent


def run_step(step: Step, quick: bool) -> dict[str, Any]:
    arguments = step.quick_arguments if quick else step.arguments
    command = [sys.executable, str(BENCHMARKS / step.script), *arguments, "--json"]
    assert threading.active_count() == 1, "PR_SET_PDEATHSIG: fork from the only thread"
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=ending_with_this_process(),
    )
    if completed.returncode != 0:
        raise BenchFailed(
            f"{step.script} {' '.join(arguments)} exited {completed.returncode}:\n"
            + completed.stderr[-3000:]
        )
    lines = completed.stdout.strip().splitlines()
    if not lines:
        raise BenchFailed(f"{step.script} printed nothing")
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError:  # bench_floor.py prints its JSON indented, alone
        result = json.loads(completed.stdout)
    result["command"] = f"python benchmarks/{step.script} {' '.join(arguments)}"
    result["load_average"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return result


Row = tuple[str, str, str]


def _per_s(value: float) -> str:
    return f"{value:,.0f} jobs/s"


def table_rows(results: dict[str, Any]) -> list[Row]:
    """(figure, result, workload) for every figure the suite reports."""
    one, three, off = results["one_node"], results["three_nodes"], results["three_nodes_fsync_off"]
    node, recovery = results["node"], results["recovery"]

    def e2e(report: dict[str, Any]) -> str:
        return (
            f"{report['end_to_end']['jobs']:,} noop jobs, enqueue_many batches of 100 from 4 "
            f"producers, {report['workers_per_node']} slots/node"
        )

    batches, single = three["enqueue_batches"], three["enqueue_single"]
    failovers = node["failover"]["seconds"]
    latency, floor = node["latency"], results["floor"]["trio"]
    return [
        ("end to end, 1 node, fsync on", _per_s(one["end_to_end"]["jobs_per_second"]), e2e(one)),
        (
            "end to end, 3 nodes, fsync on",
            _per_s(three["end_to_end"]["jobs_per_second"]),
            e2e(three),
        ),
        *(slots_row(results[f"slots_{slots}"]) for slots in SLOT_COUNTS),
        (
            "enqueue, enqueue_many, 3 nodes",
            _per_s(batches["jobs_per_second"]),
            f"{batches['jobs']:,} noop jobs, batches of {batches['batch']}, "
            f"{batches['producers']} producers, queue paused",
        ),
        (
            "enqueue, single calls, 3 nodes",
            _per_s(single["jobs_per_second"]),
            f"{single['jobs']:,} enqueue() calls from {single['concurrency']} concurrent "
            "callers, queue paused",
        ),
        (
            "enqueue commit latency, 3 nodes, vs the floor",
            f"p50 {latency['p50_ms']:.1f} ms ({latency['p50_ms'] / floor['p50_ms']:.1f}x the "
            f"floor's {floor['p50_ms']:.2f} ms), p99 {latency['p99_ms']:.1f} ms (floor "
            f"{floor['p99_ms']:.2f} ms)",
            f"{latency['samples']} enqueues one at a time, back to back, while "
            f"{node['workers_per_node']} workers per node run each job; the floor: "
            "bench_floor.py's 3-process Trio commit, same run",
        ),
        (
            "failover, 3 nodes",
            f"{min(failovers):.2f}-{max(failovers):.2f} s",
            f"kill -9 of the leader to the next acknowledged enqueue, {len(failovers)} runs",
        ),
        (
            "restart recovery, 1 node",
            f"{recovery['recovery_seconds']:.2f} s (snapshot load "
            f"{recovery['node_recovery_seconds']:.2f} s)",
            f"snapshot of {recovery['jobs']:,} pending jobs + "
            f"{recovery['log_entries_after_snapshot']:,} log entries; spawn to serving reads",
        ),
        (
            "RSS per node",
            f"{recovery['rss_bytes_pending_jobs'] / 1e6:,.0f} MB",
            f"{recovery['jobs']:,} pending noop jobs, ~100-byte payloads, after a restart",
        ),
        (
            "fsync on vs off, 3 nodes",
            f"{_per_s(three['end_to_end']['jobs_per_second'])} vs "
            f"{_per_s(off['end_to_end']['jobs_per_second'])} end to end; "
            f"{_per_s(batches['jobs_per_second'])} vs "
            f"{_per_s(off['enqueue_batches']['jobs_per_second'])} enqueue",
            "the same workloads with --fsync always and --fsync off",
        ),
    ]


def slots_row(report: dict[str, Any]) -> Row:
    throughput = report["throughput"]
    load = report.get("load_average")
    return (
        f"end to end, 3 nodes, {report['workers_per_node']} slots/node",
        f"{_per_s(throughput['end_to_end_jobs_per_second'])} at "
        f"{throughput['node_cpu_ms_per_job']:.3f} ms node CPU per job",
        f"{throughput['jobs']:,} noop jobs, enqueue_many batches of 100 from 4 producers, "
        f"--workers {report['workers_per_node']}"
        + (f"; load average {load[0]:.1f} at its end" if load else ""),
    )


def cluster_restart_rows(results: dict[str, Any]) -> list[Row]:
    """A three-node cluster's restart and a follower's catch-up, after the dated table's rows
    (as ``snapshot_stall_rows``): figures the table of docs/performance.md does not hold yet."""
    report = results["cluster_restart"]
    rounds = report["rounds"]
    serving = [each["serving_seconds"] for each in rounds]
    caught_up = [each["caught_up_seconds"] for each in rounds]
    return [
        (
            "cluster restart, 3 nodes",
            f"{min(serving):.2f}-{max(serving):.2f} s",
            f"{report['jobs']:,} pending jobs, all 3 nodes killed with SIGKILL and restarted: "
            f"spawn to a leader serving every job, {len(rounds)} runs",
        ),
        (
            "follower catch-up, 3 nodes",
            f"{min(caught_up):.2f}-{max(caught_up):.2f} s",
            f"the same cluster, a follower killed with SIGKILL while 2,000 jobs are enqueued, "
            f"restarted: spawn to applied up to the leader's commit, {len(rounds)} runs",
        ),
    ]


def snapshot_stall_rows(results: dict[str, Any]) -> list[Row]:
    """The longest event-loop stall and heartbeat gap while a leader snapshots."""
    stall = results["snapshot_stall"]
    tenth_ms = stall["election_timeout_s"] * 100
    silences = stall["follower_leader_silence_max_s"].values()
    return [
        (
            "loop stall while snapshotting, 3 nodes",
            f"{stall['leader_tick_late_max_s'] * 1000:.0f} ms longest tick delay on the leader "
            f"(target under {tenth_ms:.0f} ms)",
            f"leader snapshots {stall['jobs']:,} pending jobs "
            f"({stall['snapshot_bytes'] / 1e6:,.0f} MB, {stall['leader_snapshot_seconds']:.1f} s)",
        ),
        (
            "heartbeat gap while snapshotting, 3 nodes",
            f"{max(silences) * 1000:.0f} ms longest silence on a follower, "
            f"{stall['heartbeat_gap_past_interval_max_s'] * 1000:.0f} ms past the "
            f"{stall['heartbeat_interval_s'] * 1000:.0f} ms heartbeat (target under "
            f"{tenth_ms:.0f} ms)",
            "the same snapshot; elections during it: "
            f"{sum(1 for change in stall['term_changes'].values() if change)}",
        ),
    ]


def format_table(rows: Sequence[Row]) -> str:
    header: Row = ("figure", "result", "workload")
    lines = [f"| {' | '.join(header)} |", "| --- | --- | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def run_suite(
    quick: bool, progress: Callable[[str], None], only: Sequence[str] = ()
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for step in STEPS:
        if only and step.name not in only:
            continue
        progress(f"running {step.script} ({step.name}) ...")
        began = time.monotonic()
        results[step.name] = run_step(step, quick)
        progress(f"  done in {time.monotonic() - began:.1f} s")
    return results


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="raftq bench", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="toy sizes: a smoke test")
    parser.add_argument(
        "--only",
        metavar="STEP,...",
        default="",
        help=f"run only these steps and print their JSON ({', '.join(s.name for s in STEPS)})",
    )
    arguments = parser.parse_args(argv)
    only = [name for name in arguments.only.split(",") if name]
    unknown = set(only) - {step.name for step in STEPS}
    if unknown:
        print(f"raftq bench: no step {', '.join(sorted(unknown))}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    if not BENCHMARKS.is_dir():
        print(f"raftq bench: no {BENCHMARKS}; run it from a clone of raftq", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    began = time.monotonic()
    try:
        results = run_suite(arguments.quick, progress, only)
    except BenchFailed as error:
        print(f"raftq bench: {error}", file=sys.stderr)
        return EXIT_FAILED
    if only:  # a partial suite has no table: its figures as they came
        print(json.dumps({"quick": arguments.quick, "results": results}))
        return EXIT_OK
    rows = table_rows(results) + cluster_restart_rows(results) + snapshot_stall_rows(results)
    report = {
        "quick": arguments.quick,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": time.monotonic() - began,
        "machine": machine(),
        "table": [dict(zip(("figure", "result", "workload"), row, strict=True)) for row in rows],
        "results": results,
    }
    if arguments.json:
        print(json.dumps(report))
        return EXIT_OK
    if arguments.quick:
        print("QUICK MODE: toy sizes; these figures only show that the suite runs.")
    print(format_table(rows))
    info = report["machine"]
    print(
        f"\n{report['date']}, {info['cpus']} CPUs, load average {info['load_average']}, "
        f"Python {info['python']}, {info['platform']}; suite took {report['seconds']:.0f} s"
    )
    return EXIT_OK
