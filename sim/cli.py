"""``python -m sim run|sweep`` (CONTRACT.md, "Simulator")."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from sim.runner import Report, run_seed

DEFAULT_SIM_SECONDS = 20.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one seed")
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--nodes", type=int, choices=(3, 5), default=3)
    run.add_argument("--sim-seconds", type=float, default=DEFAULT_SIM_SECONDS)
    run.add_argument("--json", action="store_true", help="end with one JSON line")
    run.add_argument(
        "--check-determinism",
        action="store_true",
        help="run the seed twice in fresh processes (different PYTHONHASHSEED) and compare",
    )
    run.add_argument("--trace-out", help=argparse.SUPPRESS)
    sweep = commands.add_parser("sweep", help="run many seeds")
    sweep.add_argument("--seeds", type=int, required=True)
    sweep.add_argument("--start", type=int, default=1)
    sweep.add_argument("--nodes", type=int, choices=(3, 5), default=3)
    sweep.add_argument("--sim-seconds", type=float, default=DEFAULT_SIM_SECONDS)
    sweep.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    if options.command == "sweep":
        return _sweep(options)
    if options.check_determinism:
        return _check_determinism(options)
    return _run(options)


def _replay_command(seed: int, nodes: int, sim_seconds: float) -> str:
    return f"python -m sim run --seed {seed} --nodes {nodes} --sim-seconds {sim_seconds:g}"


def _run(options: argparse.Namespace) -> int:
    report = run_seed(
        options.seed,
        nodes=options.nodes,
        sim_seconds=options.sim_seconds,
        keep_trace=bool(options.trace_out),
    )
    if options.trace_out:
        with open(options.trace_out, "w") as out:
            out.write("\n".join(report.trace_lines or []) + "\n")
    if report.verdict == "fail":
        _print_failure(report)
    elif not options.json:
        print(
            f"seed {report.seed}: pass, {report.sim_seconds:.1f} simulated s in "
            f"{report.wall_seconds:.1f} s, {report.jobs_acked} jobs acknowledged, "
            f"trace {report.trace_hash}"
        )
    if options.json:
        print(json.dumps(report.to_json()))
    return 0 if report.verdict == "pass" else 1


def _print_failure(report: Report) -> None:
    options = report.options
    print(f"FAIL seed {report.seed}: {report.violations[0]}", file=sys.stderr)
    print(f"options: {json.dumps(options.summary(), sort_keys=True)}", file=sys.stderr)
    print("last trace lines:", file=sys.stderr)
    for line in report.trace_tail:
        print(f"  {line}", file=sys.stderr)
    replay = _replay_command(report.seed, options.nodes, options.sim_seconds)
    print(f"replay: {replay}", file=sys.stderr)


def _sweep(options: argparse.Namespace) -> int:
    failed: list[int] = []
    sim_seconds = wall_seconds = 0.0
    started = time.monotonic()
    for seed in range(options.start, options.start + options.seeds):
        # Each seed in a fresh interpreter, exactly as its replay command will run it.
        command = [sys.executable, "-m", "sim", "run", "--seed", str(seed), "--json"]
        command += ["--nodes", str(options.nodes), "--sim-seconds", str(options.sim_seconds)]
        finished = subprocess.run(command, capture_output=True, text=True, check=False)
        try:
            report = json.loads(finished.stdout.splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            report = {"verdict": "fail", "sim_seconds": 0.0, "wall_seconds": 0.0}
        sim_seconds += report["sim_seconds"]
        wall_seconds += report["wall_seconds"]
        if report["verdict"] == "fail":
            failed.append(seed)
            print(finished.stderr[-6000:], file=sys.stderr, flush=True)
        elif not options.json:
            print(f"seed {seed}: pass ({report['wall_seconds']:.1f} s)", flush=True)
    summary = {
        "seeds": options.seeds,
        "passed": options.seeds - len(failed),
        "failed": failed,
        "sim_seconds_per_wall_second": round(sim_seconds / max(wall_seconds, 1e-9), 2),
    }
    if not options.json:
        elapsed = time.monotonic() - started
        print(f"{options.seeds} seeds in {elapsed:.0f} s, {len(failed)} failed")
    print(json.dumps(summary))
    return 1 if failed else 0


def _check_determinism(options: argparse.Namespace) -> int:
    """The same seed twice, each in a fresh interpreter with its own PYTHONHASHSEED: the traces
    must match line for line (and so must the hash)."""
    traces = []
    hashes = []
    with tempfile.TemporaryDirectory(prefix="raftq-sim-") as directory:
        for hash_seed in ("1", "2"):
            path = os.path.join(directory, f"trace-{hash_seed}.txt")
            environment = dict(os.environ, PYTHONHASHSEED=hash_seed)
            command = [sys.executable, "-m", "sim", "run", "--seed", str(options.seed)]
            command += ["--nodes", str(options.nodes), "--sim-seconds", str(options.sim_seconds)]
            command += ["--json", "--trace-out", path]
            finished = subprocess.run(
                command, env=environment, capture_output=True, text=True, check=False
            )
            if not os.path.exists(path):
                print(finished.stderr[-2000:], file=sys.stderr)
                print(f"seed {options.seed}: the run did not finish", file=sys.stderr)
                return 1
            with open(path) as trace:
                traces.append(trace.read().splitlines())
            hashes.append(json.loads(finished.stdout.splitlines()[-1])["trace_hash"])
    first, second = traces
    for number, (one, other) in enumerate(zip(first, second, strict=False), start=1):
        if one != other:
            print(
                f"seed {options.seed}: NOT deterministic; first divergence at trace line {number}"
            )
            print(f"  PYTHONHASHSEED=1: {one}")
            print(f"  PYTHONHASHSEED=2: {other}")
            return 1
    if len(first) != len(second) or hashes[0] != hashes[1]:
        print(
            f"seed {options.seed}: NOT deterministic; traces of {len(first)} and {len(second)} "
            f"lines, hashes {hashes[0]} and {hashes[1]}"
        )
        return 1
    print(
        f"seed {options.seed}: deterministic ({len(first)} trace lines identical, hash {hashes[0]})"
    )
    return 0
