"""``python -m sim run|sweep`` (CONTRACT.md, "Simulator")."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from raftq.errors import ConfigError
from sim.handlers import UserModule, load_user_module
from sim.options import ALL_KINDS, nodes_arguments
from sim.runner import WALL_BUDGET_S, Report, run_seed
from sim.sweep import SeedResult, coverage, default_jobs, run_seeds

DEFAULT_SIM_SECONDS = 20.0
SLOWEST_REPORTED = 5
"""A sweep's summary names its slowest seeds (CPU seconds): the ones to profile."""
NODES_HELP = "3 or 5 (default: each seed draws; five for some that change membership)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one seed")
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--nodes", type=int, choices=(3, 5), help=NODES_HELP)
    run.add_argument("--sim-seconds", type=float, default=DEFAULT_SIM_SECONDS)
    run.add_argument("--json", action="store_true", help="end with one JSON line")
    run.add_argument(
        "--check-determinism",
        action="store_true",
        help="run the seed twice in fresh processes (different PYTHONHASHSEED) and compare",
    )
    run.add_argument("--trace-out", help=argparse.SUPPRESS)
    _add_wall_budget_argument(run)
    _add_seed_arguments(run)
    sweep = commands.add_parser("sweep", help="run many seeds, each in a fresh process")
    sweep.add_argument("--seeds", type=int, required=True)
    sweep.add_argument("--start", type=int, default=1)
    sweep.add_argument("--nodes", type=int, choices=(3, 5), help=NODES_HELP)
    sweep.add_argument("--sim-seconds", type=float, default=DEFAULT_SIM_SECONDS)
    sweep.add_argument(
        "--jobs", type=int, default=default_jobs(), help="processes at once (default: cores)"
    )
    sweep.add_argument("--json", action="store_true")
    sweep.add_argument(
        "--results",
        metavar="FILE",
        help="append each seed's report to FILE as one JSON line, as it finishes (a long "
        "sweep leaves a record even if stopped)",
    )
    _add_wall_budget_argument(sweep)
    _add_seed_arguments(sweep)
    options = parser.parse_args(argv)
    if options.command == "sweep" and (options.jobs < 1 or options.seeds < 1):
        parser.error("--jobs and --seeds must be at least 1")
    if options.command == "sweep":
        # A SIGTERM unwinds like Ctrl-C, so the seed processes running are stopped too.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        return _sweep(options)
    if options.check_determinism:
        return _check_determinism(options)
    return _run(options)


def _add_wall_budget_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wall-budget",
        type=float,
        default=WALL_BUDGET_S,
        metavar="SECONDS",
        help=f"a run that takes longer (wall clock) fails (default {WALL_BUDGET_S:g})",
    )


def _add_seed_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, verb in (("--force", "turn on"), ("--disable", "turn off")):
        parser.add_argument(
            flag,
            action="append",
            default=[],
            choices=ALL_KINDS,
            metavar="KIND",
            help=f"{verb} this fault kind whatever the seed draws (repeatable; one of: "
            f"{', '.join(ALL_KINDS)})",
        )
    parser.add_argument(
        "--import",
        dest="user_module",
        metavar="MODULE",
        help="run this module's raftq handlers in the cluster's workers, under faults and "
        "handler faults, with the jobs its simulation_jobs(rng) returns (docs/simulator.md)",
    )
    parser.add_argument(
        "--check",
        metavar="MODULE:FUNCTION",
        help="with --import: call FUNCTION(world) once every job is final; an exception it "
        "raises (an assert) fails the seed",
    )
    parser.add_argument(
        "--handler-faults",
        action="store_true",
        help="draw the handler-level faults for the simulator's own handler too",
    )


def _seed_arguments(options: argparse.Namespace) -> list[str]:
    """The options a seed's process and its replay command carry besides seed and length:
    the swarm overrides, and a wall budget other than the default."""
    arguments = []
    if options.wall_budget != WALL_BUDGET_S:
        arguments += ["--wall-budget", f"{options.wall_budget:g}"]
    for kind in options.force:
        arguments += ["--force", kind]
    for kind in options.disable:
        arguments += ["--disable", kind]
    if options.user_module:
        arguments += ["--import", options.user_module]
    if options.check:
        arguments += ["--check", options.check]
    if options.handler_faults:
        arguments += ["--handler-faults"]
    return arguments


def _user_module(options: argparse.Namespace) -> UserModule | None:
    """The ``--import``ed module and its ``--check``; ``ConfigError`` if unusable."""
    if options.check and not options.user_module:
        raise ConfigError("--check needs --import MODULE (the module whose handlers run)")
    if not options.user_module:
        return None
    user = load_user_module(options.user_module, options.check)
    user.jobs_for(options.seed if "seed" in options else options.start)  # its jobs, checked
    return user


def _replay_command(seed: int, nodes: int | None, sim_seconds: float, swarm: list[str]) -> str:
    command = ["python -m sim run --seed", str(seed), *nodes_arguments(nodes)]
    return " ".join([*command, f"--sim-seconds {sim_seconds:g}", *swarm])


def _run(options: argparse.Namespace) -> int:
    try:
        user = _user_module(options)
    except ConfigError as error:
        print(f"python -m sim: error: {error}", file=sys.stderr)
        return 2
    report = run_seed(
        options.seed,
        nodes=options.nodes,
        sim_seconds=options.sim_seconds,
        keep_trace=bool(options.trace_out),
        wall_budget_s=options.wall_budget,
        force=tuple(options.force),
        disable=tuple(options.disable),
        user=user,
        handler_faults=options.handler_faults,
    )
    if options.trace_out:
        with open(options.trace_out, "w") as out:
            out.write("\n".join(report.trace_lines or []) + "\n")
    if report.verdict == "fail":
        _print_failure(report, _seed_arguments(options))
    elif not options.json:
        print(
            f"seed {report.seed}: pass, {report.sim_seconds:.1f} simulated s in "
            f"{report.wall_seconds:.1f} s, {report.jobs_acked} jobs acknowledged, "
            f"trace {report.trace_hash}"
        )
    if options.json:
        print(json.dumps(report.to_json()))
    return 0 if report.verdict == "pass" else 1


def _print_failure(report: Report, swarm_arguments: list[str]) -> None:
    options = report.options
    print(f"FAIL seed {report.seed}: {report.violations[0]}", file=sys.stderr)
    print(f"swarm: {' '.join(options.swarm) or '(no faults)'}", file=sys.stderr)
    print(f"options: {json.dumps(options.summary(), sort_keys=True)}", file=sys.stderr)
    print("last trace lines:", file=sys.stderr)
    for line in report.trace_tail:
        print(f"  {line}", file=sys.stderr)
    replay = _replay_command(report.seed, options.nodes, options.sim_seconds, swarm_arguments)
    print(f"replay: {replay}", file=sys.stderr)


def _sweep(options: argparse.Namespace) -> int:
    """Seeds ``start .. start + seeds - 1``, ``jobs`` processes at a time. Prints each failure
    (its report and replay command) as it comes, progress now and then (seeds per minute, time
    left), and a summary: seeds per minute, fault coverage (how many seeds exercised each fault
    kind), the slowest seeds, the failures. With ``--results FILE``, each seed's report is
    appended to FILE as it finishes."""
    try:
        _user_module(options)  # a bad module is said once, not by every seed's process
    except ConfigError as error:
        print(f"python -m sim: error: {error}", file=sys.stderr)
        return 2
    passed_on = _seed_arguments(options)
    arguments = [
        *nodes_arguments(options.nodes),
        "--sim-seconds",
        str(options.sim_seconds),
        *passed_on,
    ]
    seeds = range(options.start, options.start + options.seeds)
    started = time.monotonic()
    done = [0]
    progress_every = max(1, options.seeds // 20)
    with contextlib.ExitStack() as stack:
        results_file = None
        if options.results:
            results_file = stack.enter_context(open(options.results, "a"))

        def on_result(result: SeedResult) -> None:
            done[0] += 1
            replay = _replay_command(result.seed, options.nodes, options.sim_seconds, passed_on)
            if result.failed:
                print(result.stderr or result.violation, file=sys.stderr, flush=True)
                if "replay:" not in result.stderr:  # a process that broke printed none
                    print(f"replay: {replay}", file=sys.stderr, flush=True)
            elif not options.json:
                wall_s = result.report["wall_seconds"]
                print(f"seed {result.seed}: pass ({wall_s:.1f} s)", flush=True)
            if results_file is not None:
                line = dict(result.report, replay=replay) if result.failed else result.report
                results_file.write(json.dumps(line) + "\n")
                results_file.flush()
            if done[0] % progress_every == 0:
                print(_progress(done[0], options.seeds, started), file=sys.stderr, flush=True)

        results = run_seeds(seeds, arguments, jobs=options.jobs, on_result=on_result)
    summary = _summary(options, results, passed_on, time.monotonic() - started)
    if not options.json:
        _print_summary(summary)
    print(json.dumps(summary))
    return 1 if summary["failed"] else 0


def _progress(done: int, total: int, started: float) -> str:
    minutes = (time.monotonic() - started) / 60
    per_minute = done / max(minutes, 1e-9)
    left_minutes = (total - done) / max(per_minute, 1e-9)
    left = f"{left_minutes / 60:.1f} h" if left_minutes >= 90 else f"{left_minutes:.0f} min"
    return f"{done}/{total} seeds, {per_minute:.1f} a minute, about {left} left"


def _summary(
    options: argparse.Namespace,
    results: list[SeedResult],
    passed_on: list[str],
    elapsed: float,
) -> dict[str, Any]:
    failed = [result for result in results if result.failed]
    sim_seconds = sum(result.report["sim_seconds"] for result in results)
    wall_seconds = sum(result.report["wall_seconds"] for result in results)
    cpu_seconds = sum(result.report.get("cpu_seconds", 0.0) for result in results)
    slowest = sorted(results, key=lambda result: -result.report.get("cpu_seconds", 0.0))
    return {
        "seeds": options.seeds,
        "passed": options.seeds - len(failed),
        "failed": [result.seed for result in failed],
        "sim_seconds_per_wall_second": round(sim_seconds / max(wall_seconds, 1e-9), 2),
        "sim_seconds_per_cpu_second": round(sim_seconds / max(cpu_seconds, 1e-9), 2),
        "sim_seconds": round(sim_seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "jobs": options.jobs,
        "wall_seconds": round(elapsed, 1),
        "seeds_per_minute": round(options.seeds / max(elapsed / 60, 1e-9), 1),
        "coverage": coverage(results),
        "slowest": [
            {
                "seed": result.seed,
                "cpu_seconds": result.report.get("cpu_seconds", 0.0),
                "sim_seconds": result.report["sim_seconds"],
            }
            for result in slowest[:SLOWEST_REPORTED]
        ],
        "failures": [
            {
                "seed": result.seed,
                "violation": result.violation,
                "replay": _replay_command(
                    result.seed, options.nodes, options.sim_seconds, passed_on
                ),
            }
            for result in failed
        ],
    }


def _print_summary(summary: dict[str, Any]) -> None:
    print(
        f"{summary['seeds']} seeds in {summary['wall_seconds']:.0f} s "
        f"({summary['seeds_per_minute']} a minute, {summary['jobs']} processes), "
        f"{len(summary['failed'])} failed; "
        f"{summary['sim_seconds_per_wall_second']} simulated seconds per wall second "
        f"({summary['sim_seconds_per_cpu_second']} per CPU second)"
    )
    print("fault coverage (seeds that exercised each kind):")
    for kind, count in summary["coverage"].items():
        print(f"  {kind:<28} {count}")
    print("slowest seeds (CPU seconds):")
    for slow in summary["slowest"]:
        print(
            f"  seed {slow['seed']}: {slow['cpu_seconds']:.1f} s "
            f"for {slow['sim_seconds']:.0f} simulated s"
        )
    for failure in summary["failures"]:
        print(f"FAILED seed {failure['seed']}: {failure['violation']}")
        print(f"  replay: {failure['replay']}")


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
            command += nodes_arguments(options.nodes)
            command += ["--sim-seconds", str(options.sim_seconds)]
            command += ["--json", "--trace-out", path, *_seed_arguments(options)]
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
