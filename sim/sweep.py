"""Many seeds in parallel processes: each seed in a fresh interpreter (exactly as its replay
command runs it), ``jobs`` of them at a time. Used by ``python -m sim sweep`` and by the mutation
harness (``sim.mutants``), which runs the seeds in a scratch copy of the code and stops at the
first violation."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import attrs

SEED_WALL_LIMIT_S = 900.0
"""A seed process that runs this long is killed and counted as a failure: a run checks its own
wall budget (``runner.WALL_BUDGET_S``, 300 s), so only a simulator that hangs outside the run
(or a machine overloaded threefold) gets here."""

STDERR_KEPT_CHARS = 6000
"""Of a failing seed's stderr: its report (violation, options, trace tail, replay command)."""


@attrs.frozen(kw_only=True)
class SeedResult:
    seed: int
    report: dict[str, Any]
    """The run's JSON line (CONTRACT.md); a synthetic failing one if the process broke."""
    stderr: str

    @property
    def failed(self) -> bool:
        return bool(self.report["verdict"] != "pass")

    @property
    def violation(self) -> str:
        violations = self.report.get("violations") or ["(no report)"]
        return str(violations[0])

    @property
    def checker(self) -> str:
        """The property that fired (the text before the first colon of the violation)."""
        return self.violation.split(":", 1)[0]


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)))


class _Processes:
    """The seed processes running now, so an interrupted sweep can stop them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, subprocess.Popen[str]] = {}
        self.stopping = False

    def start(
        self, seed: int, command: list[str], cwd: str | None, env: dict[str, str]
    ) -> subprocess.Popen[str] | None:
        with self._lock:
            if self.stopping:
                return None
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=cwd,
                env=env,
            )
            self._running[seed] = process
            return process

    def finished(self, seed: int) -> None:
        with self._lock:
            self._running.pop(seed, None)

    def stop_all(self) -> None:
        with self._lock:
            self.stopping = True
            for process in self._running.values():
                process.kill()


def run_one(
    seed: int,
    arguments: Sequence[str],
    cwd: str | None,
    env: dict[str, str],
    processes: _Processes | None = None,
) -> SeedResult | None:
    """One seed in a fresh interpreter; None if the sweep is stopping."""
    command = [sys.executable, "-m", "sim", "run", "--seed", str(seed), "--json", *arguments]
    processes = processes or _Processes()
    process = processes.start(seed, command, cwd, env)
    if process is None:
        return None
    try:
        stdout, stderr = process.communicate(timeout=SEED_WALL_LIMIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        broken = f"seed process killed after {SEED_WALL_LIMIT_S:.0f} s"
        return SeedResult(seed=seed, report=_broken_report(seed, broken), stderr=broken)
    finally:
        processes.finished(seed)
    if processes.stopping:
        return None
    try:
        report = json.loads(stdout.splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        broken = f"no report (exit {process.returncode}): {stderr[-300:]!r}"
        report = _broken_report(seed, broken)
    return SeedResult(seed=seed, report=report, stderr=stderr[-STDERR_KEPT_CHARS:])


def _broken_report(seed: int, why: str) -> dict[str, Any]:
    return {
        "seed": seed,
        "verdict": "fail",
        "sim_seconds": 0.0,
        "wall_seconds": 0.0,
        "faults": {},
        "swarm": [],
        "violations": [f"simulator process: {why}"],
    }


def run_seeds(
    seeds: Sequence[int],
    arguments: Sequence[str],
    *,
    jobs: int,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    stop_at_first_failure: bool = False,
    on_result: Callable[[SeedResult], None] | None = None,
) -> list[SeedResult]:
    """Run ``seeds`` (``jobs`` processes at a time); results in seed order. With
    ``stop_at_first_failure``, seeds after the lowest failing one are not run (those before it
    still are, so the answer is the first failing seed, however the processes interleave)."""
    assert jobs >= 1, jobs
    environment = dict(env if env is not None else os.environ)
    lowest_failure = [max(seeds, default=0) + 1]
    lock = threading.Lock()
    processes = _Processes()

    def task(seed: int) -> SeedResult | None:
        with lock:
            if stop_at_first_failure and seed > lowest_failure[0]:
                return None
        result = run_one(seed, arguments, cwd, environment, processes)
        if result is None:
            return None
        with lock:
            if result.failed:
                lowest_failure[0] = min(lowest_failure[0], seed)
            if on_result is not None:
                on_result(result)
        return result

    results: list[SeedResult] = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
    try:
        for result in pool.map(task, seeds):
            if result is not None:
                results.append(result)
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM in the mutation harness): no new seed, none left over.
        processes.stop_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if stop_at_first_failure:
        results = [result for result in results if result.seed <= lowest_failure[0]]
    return results


def coverage(results: Sequence[SeedResult]) -> dict[str, int]:
    """Fault kind -> how many seeds exercised it (a nonzero count in the run's ``faults``),
    plus ``swarm:KIND`` -> how many seeds drew it on."""
    counts: dict[str, int] = {}
    for result in results:
        for kind, count in sorted(result.report.get("faults", {}).items()):
            counts.setdefault(kind, 0)
            if count:
                counts[kind] += 1
        for kind in result.report.get("swarm", []):
            counts[f"swarm:{kind}"] = counts.get(f"swarm:{kind}", 0) + 1
    return dict(sorted(counts.items()))
