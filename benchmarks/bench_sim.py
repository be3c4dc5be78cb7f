"""Simulator speed: simulated seconds per wall second and per CPU second over N seeds.

Run by hand; figures, not a test. Runs the seeds one at a time, each in a fresh interpreter
exactly as ``python -m sim run --seed S --json`` (what a sweep and a replay run), and reports:

- simulated seconds per wall second, over the seeds' own run time (``wall_seconds`` in each
  report: ``trio.run`` and the checks, not the interpreter's start) and over the whole
  processes (imports included);
- simulated seconds per CPU second (the run's ``cpu_seconds``; and the processes' user + sys
  time, imports included): a busy machine inflates wall time, much less CPU time;
- seeds per minute, the load average at start and end (wall figures mean little without it),
  the failures and each seed's trace hash (``--per-seed``), so two trees can be compared seed
  by seed: a change that keeps every trace hash kept every behaviour of those seeds.

    python benchmarks/bench_sim.py [--seeds 50] [--start 90000] [--sim-seconds 20]
                                   [--per-seed] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

SEED_TIMEOUT_S = 900.0
"""A seed that runs longer than this is reported as a failure (the run's own wall budget is
300 s; this only keeps a broken interpreter from hanging the benchmark)."""


def run_one(seed: int, sim_seconds: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "sim", "run", "--seed", str(seed), "--json"]
    command += ["--sim-seconds", f"{sim_seconds:g}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=SEED_TIMEOUT_S, check=False
    )
    wall_s = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    process_cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = completed.stdout.strip().splitlines()
    if not lines or not lines[-1].startswith("{"):
        return {
            "seed": seed,
            "verdict": "broken",
            "process_wall_s": wall_s,
            "stderr": completed.stderr[-2000:],
        }
    report = json.loads(lines[-1])
    report["process_wall_s"] = wall_s
    report["process_cpu_s"] = process_cpu_s
    return report


def summarize(
    reports: list[dict[str, Any]], load: tuple[float, float], elapsed_s: float
) -> dict[str, Any]:
    ran = [report for report in reports if report["verdict"] != "broken"]
    sim_s = sum(report["sim_seconds"] for report in ran)
    run_wall_s = sum(report["wall_seconds"] for report in ran)
    run_cpu_s = sum(report["cpu_seconds"] for report in ran)
    process_wall_s = sum(report["process_wall_s"] for report in ran)
    process_cpu_s = sum(report["process_cpu_s"] for report in ran)
    return {
        "seeds": len(reports),
        "failed": [report["seed"] for report in reports if report["verdict"] != "pass"],
        "sim_seconds": round(sim_s, 1),
        "sim_seconds_per_wall_second": round(sim_s / run_wall_s, 2) if run_wall_s else 0.0,
        "sim_seconds_per_cpu_second": round(sim_s / run_cpu_s, 2) if run_cpu_s else 0.0,
        "sim_seconds_per_process_wall_second": round(sim_s / process_wall_s, 2)
        if process_wall_s
        else 0.0,
        "sim_seconds_per_process_cpu_second": round(sim_s / process_cpu_s, 2)
        if process_cpu_s
        else 0.0,
        "seeds_per_minute": round(60 * len(reports) / elapsed_s, 2),
        "process_cpu_seconds": round(process_cpu_s, 1),
        "load_average_start_end": [round(load[0], 2), round(load[1], 2)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--start", type=int, default=90000)
    parser.add_argument("--sim-seconds", type=float, default=20.0)
    parser.add_argument("--per-seed", action="store_true", help="print each seed's figures")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    options = parser.parse_args()
    if options.seeds < 1:
        parser.error("--seeds must be at least 1")
    load_start = os.getloadavg()[0]
    started = time.monotonic()
    reports = []
    for seed in range(options.start, options.start + options.seeds):
        report = run_one(seed, options.sim_seconds)
        reports.append(report)
        if options.per_seed:
            print(
                f"seed {seed} {report['verdict']} {report.get('trace_hash', '-')} "
                f"sim {report.get('sim_seconds', 0):.1f} s "
                f"cpu {report.get('cpu_seconds', 0):.2f} s "
                f"wall {report.get('wall_seconds', 0):.2f} s",
                flush=True,
            )
    summary = summarize(reports, (load_start, os.getloadavg()[0]), time.monotonic() - started)
    if options.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
