"""What a long sweep (``make sim-sweep SEEDS=10000``) needs besides speed: each failure with a
replay command that reproduces it, a record of every seed as it finishes (``--results``),
progress with the time left, the slowest seeds; and the simulator's speed-ups keep every trace
as it was (docs/simulator.md, "Speed")."""

from __future__ import annotations

import functools
import json
import pathlib
import re
import shlex
import subprocess
import sys
import time

import pytest
import trio
import trio.testing

from sim import cli, runner
from sim.runner import run_seed

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim", *arguments],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        check=False,
    )


def test_a_failing_sweep_prints_each_failure_with_a_replay_that_fails_the_same_way(
    tmp_path: pathlib.Path,
) -> None:
    """A wall budget of 0 s fails every seed at its first check (as a hung or overloaded run
    does): the sweep names each failure with its replay command as it comes and in the summary,
    writes every seed to the results file, exits 1; the replay command fails the same way."""
    results = tmp_path / "results.jsonl"
    finished = run_cli(
        "sweep",
        *("--seeds", "2", "--start", "5", "--sim-seconds", "1", "--jobs", "2"),
        *("--wall-budget", "0", "--results", str(results), "--json"),
    )
    assert finished.returncode == 1, finished.stdout + finished.stderr
    summary = json.loads(finished.stdout.splitlines()[-1])
    assert summary["failed"] == [5, 6]
    assert summary["passed"] == 0
    replays = [failure["replay"] for failure in summary["failures"]]
    assert replays == [
        "python -m sim run --seed 5 --sim-seconds 1 --wall-budget 0",
        "python -m sim run --seed 6 --sim-seconds 1 --wall-budget 0",
    ]
    for failure in summary["failures"]:
        assert failure["violation"].startswith("wall-clock budget"), failure
    assert "FAIL seed 5: wall-clock budget" in finished.stderr
    assert "replay: python -m sim run --seed 6" in finished.stderr
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(line["seed"] for line in lines) == [5, 6]
    assert {line["verdict"] for line in lines} == {"fail"}
    assert sorted(line["replay"] for line in lines) == replays
    command = shlex.split(replays[0])
    assert command[:3] == ["python", "-m", "sim"]
    replayed = run_cli(*command[3:], "--json")
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    report = json.loads(replayed.stdout.splitlines()[-1])
    assert report["violations"][0].startswith("wall-clock budget"), report


def test_a_passing_sweep_appends_every_seed_and_names_its_slowest(tmp_path: pathlib.Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text('{"seed": 1, "from": "an earlier sweep"}\n')
    finished = run_cli(
        "sweep",
        *("--seeds", "2", "--start", "14", "--nodes", "3", "--sim-seconds", "2"),
        *("--jobs", "2", "--results", str(results)),
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    summary = json.loads(finished.stdout.splitlines()[-1])
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert lines[0] == {"seed": 1, "from": "an earlier sweep"}  # appended, not replaced
    reports = sorted(lines[1:], key=lambda line: line["seed"])
    assert [report["seed"] for report in reports] == [14, 15]
    assert {report["verdict"] for report in reports} == {"pass"}
    assert summary["sim_seconds"] == pytest.approx(
        sum(report["sim_seconds"] for report in reports), abs=0.1
    )
    slowest = summary["slowest"]
    assert sorted(slow["seed"] for slow in slowest) == [14, 15]
    cpu = [slow["cpu_seconds"] for slow in slowest]
    assert cpu == sorted(cpu, reverse=True)
    assert "slowest seeds (CPU seconds):" in finished.stdout
    assert "fault coverage (seeds that exercised each kind):" in finished.stdout
    assert re.search(r"^2/2 seeds, [0-9.]+ a minute, about 0 min left$", finished.stderr, re.M)


def test_progress_says_how_long_the_rest_takes() -> None:
    ten_minutes_ago = time.monotonic() - 600
    assert cli._progress(50, 10_000, ten_minutes_ago) == (
        "50/10000 seeds, 5.0 a minute, about 33.2 h left"
    )
    assert (
        cli._progress(50, 100, ten_minutes_ago) == "50/100 seeds, 5.0 a minute, about 10 min left"
    )


def test_the_virtual_clock_gives_the_traces_trios_mock_clock_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``sim.determinism.virtual_clock`` without its grain reads the time and jumps without
    trio's arithmetic from ``perf_counter`` and without ``RunStatistics``: the same values to
    the bit, so the same trace (re-check this when upgrading trio)."""
    monkeypatch.setattr(runner, "virtual_clock", functools.partial(runner.virtual_clock, 0.0))
    fast = run_seed(9, sim_seconds=2.0)

    def mock_clock() -> trio.testing.MockClock:
        return trio.testing.MockClock(autojump_threshold=0)

    monkeypatch.setattr(runner, "virtual_clock", mock_clock)
    plain = run_seed(9, sim_seconds=2.0)
    assert fast.verdict == plain.verdict == "pass"
    assert fast.trace_hash == plain.trace_hash
    assert fast.sim_seconds == plain.sim_seconds


def test_the_virtual_clock_only_jumps() -> None:
    clock = runner.virtual_clock()

    async def main() -> float:
        started = trio.current_time()
        await trio.sleep(5)  # autojump: no real time passes
        return trio.current_time() - started

    assert trio.run(main, clock=clock) == 5.0


def test_the_virtual_clock_jumps_to_its_grain() -> None:
    """Timers due within one grain fire together, at its end; one due on the grain fires on
    time; without a grain each fires at its own deadline."""

    async def woken(sleeps: list[float]) -> list[float]:
        times: list[float] = []

        async def sleeper(seconds: float) -> None:
            await trio.sleep(seconds)
            times.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            for seconds in sleeps:
                nursery.start_soon(sleeper, seconds)
        return sorted(times)

    sleeps = [0.0003, 0.0007, 0.002, 0.0021]
    grained = trio.run(woken, sleeps, clock=runner.virtual_clock(0.001))
    assert grained == pytest.approx([0.001, 0.001, 0.002, 0.003])
    exact = trio.run(woken, sleeps, clock=runner.virtual_clock(0.0))
    assert exact == pytest.approx(sleeps)
