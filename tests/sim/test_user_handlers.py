"""Users' own handlers under the simulator (issue 18, item 1; docs/simulator.md, "Your own
handlers"): ``--import MODULE --check MODULE:FUNCTION``, the fakes that record effects, the
handler-level faults, and the tutorial's two handlers (``examples/orders_*.py``)."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import trio

from raftq.errors import ConfigError
from sim import fakes
from sim.handlers import load_user_module
from sim.options import HANDLER_KINDS, Options
from sim.runner import Report, run_seed

ROOT = Path(__file__).resolve().parent.parent.parent
SIM_SECONDS = 5.0
CHECK = "examples.orders_check:each_order_charged_once"
UNSAFE = "examples.orders_unsafe"
SAFE = "examples.orders_safe"
SAFE_SEEDS = range(1, 9)
"""The fixed handler passes these (a sweep of the tutorial); each seed takes about a CPU
second."""
UNSAFE_SEEDS = (1, 2, 3)
"""The unsafe handler is caught on each of these (7 of seeds 1-8 catch it; the tutorial's
command runs seed 1)."""


@functools.cache
def user_report(module: str, seed: int, force: tuple[str, ...] = ()) -> Report:
    disable = tuple(kind for kind in HANDLER_KINDS if force and kind not in force)
    user = load_user_module(module, CHECK)
    return run_seed(
        seed, sim_seconds=SIM_SECONDS, user=user, force=force, disable=disable, keep_trace=True
    )


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("seed", UNSAFE_SEEDS)
def test_a_handler_that_charges_on_every_run_is_caught(seed: int) -> None:
    report = user_report(UNSAFE, seed)
    assert report.verdict == "fail", report.violations
    (violation,) = report.violations
    assert violation.startswith(f"check {CHECK}: AssertionError: order-"), violation
    assert re.search(r"charged [2-9] times", violation), violation


@pytest.mark.parametrize("seed", SAFE_SEEDS)
def test_the_fixed_handler_passes_under_every_fault(seed: int) -> None:
    report = user_report(SAFE, seed)
    assert report.verdict == "pass", report.violations
    assert report.trace_lines is not None
    assert any(f"{CHECK} passed" in line for line in report.trace_lines)
    assert any("endpoint:payments post /charges" in line for line in report.trace_lines)


def test_the_fixed_handler_was_struck_by_every_handler_fault() -> None:
    """Over the sweep of ``SAFE_SEEDS``, each handler-level fault struck some run."""
    struck = {kind: 0 for kind in ("handler_crashes", "lease_expiries", "lost_reports")}
    struck |= {"run_failovers": 0, "clock_jumps": 0}
    for seed in SAFE_SEEDS:
        counts = attrs.asdict(user_report(SAFE, seed).faults)
        for kind in struck:
            struck[kind] += counts[kind]
    assert all(struck.values()), struck


@pytest.mark.parametrize("kind", HANDLER_KINDS)
def test_each_handler_fault_alone_makes_the_unsafe_handler_charge_twice_or_is_survived(
    kind: str,
) -> None:
    """Each kind forced alone strikes runs of the user's handler (counted in the report);
    the three that rerun a run after its effect catch the unsafe handler on their own."""
    report = user_report(UNSAFE, 11, (kind,))
    assert report.options.swarm.count(kind) == 1
    assert [k for k in report.options.swarm if k in HANDLER_KINDS] == [kind]
    counts = attrs.asdict(report.faults)
    counted = {
        "handler_crash": "handler_crashes",
        "lease_expiry": "lease_expiries",
        "lost_report": "lost_reports",
        "run_failover": "run_failovers",
        "clock_jump": "clock_jumps",
    }[kind]
    assert counts[counted] > 0, counts
    if kind in ("handler_crash", "lease_expiry", "lost_report"):
        assert report.verdict == "fail", report.violations
        assert "charged" in report.violations[0]


def test_the_same_seed_gives_the_same_trace_with_user_handlers() -> None:
    user = load_user_module(SAFE, CHECK)
    first = run_seed(4, sim_seconds=SIM_SECONDS, user=user)
    second = run_seed(4, sim_seconds=SIM_SECONDS, user=user)
    assert first.trace_hash == second.trace_hash
    done = run_cli(
        "run", "--seed", "4", "--sim-seconds", "5", "--import", SAFE, "--check-determinism"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deterministic" in done.stdout


def test_a_failing_seed_prints_its_replay_command_with_import_and_check() -> None:
    done = run_cli(
        "run", "--seed", "1", "--sim-seconds", "5", "--import", UNSAFE, "--check", CHECK, "--json"
    )
    assert done.returncode == 1, done.stderr[-2000:]
    replay = [line for line in done.stderr.splitlines() if line.startswith("replay: ")]
    assert replay == [
        f"replay: python -m sim run --seed 1 --nodes 3 --sim-seconds 5 --import {UNSAFE} "
        f"--check {CHECK}"
    ]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["verdict"] == "fail"
    assert report["violations"][0].startswith(f"check {CHECK}: AssertionError: order-")
    assert report["faults"]["lost_reports"] > 0


def test_a_sweep_carries_import_and_check_into_each_seed() -> None:
    done = run_cli(
        "sweep", "--seeds", "2", "--jobs", "1", "--sim-seconds", "5",
        "--import", UNSAFE, "--check", CHECK, "--json",
    )  # fmt: skip
    assert done.returncode == 1
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["failed"] == [1, 2]
    assert all(f"--import {UNSAFE} --check {CHECK}" in f["replay"] for f in summary["failures"])
    assert summary["coverage"]["swarm:lost_report"] == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--import", "no_such_module_here"], "cannot import 'no_such_module_here'"),
        (["--import", "examples.orders_check"], "registers no handlers"),
        (["--import", "examples.handlers"], "defines no simulation_jobs(rng)"),
        (["--check", CHECK], "--check needs --import"),
        (["--import", SAFE, "--check", "examples.orders_check"], "MODULE:FUNCTION"),
        (["--import", SAFE, "--check", "examples.orders_check:nothing"], "has no function"),
    ],
)
def test_a_bad_module_or_check_is_a_clear_error(arguments: list[str], message: str) -> None:
    for command in (["run", "--seed", "1"], ["sweep", "--seeds", "1"]):
        done = run_cli(*command, *arguments)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr, done.stderr


def test_jobs_a_module_cannot_enqueue_are_refused_naming_the_job() -> None:
    user = load_user_module(SAFE, None)
    bad = attrs.evolve(user, jobs=lambda rng: [{"type": "charge", "payload": {}, "queue": 3}])
    with pytest.raises(ConfigError, match=r"orders_safe\.simulation_jobs: .*queue"):
        bad.jobs_for(1)
    other = attrs.evolve(user, jobs=lambda rng: [{"type": "resize", "payload": {}}])
    with pytest.raises(ConfigError, match=r"type 'resize', which examples\.orders_safe has no"):
        other.jobs_for(1)
    empty = attrs.evolve(user, jobs=lambda rng: [])
    with pytest.raises(ConfigError, match="returned 0 jobs"):
        empty.jobs_for(1)


def test_handler_faults_are_off_unless_asked_and_change_nothing_else() -> None:
    for seed in range(1, 201):
        default = Options.draw(seed, None, 20.0)
        assert not set(default.swarm) & set(HANDLER_KINDS)
        assert default.handler_fault_share == 0.0
        with_faults = Options.draw(seed, None, 20.0, handler_faults=True)
        others = tuple(kind for kind in with_faults.swarm if kind not in HANDLER_KINDS)
        assert others == default.swarm
        assert attrs.evolve(with_faults, swarm=others, handler_fault_share=0.0) == default


def test_the_simulators_own_handler_runs_under_handler_faults() -> None:
    report = run_seed(
        6, sim_seconds=SIM_SECONDS, handler_faults=True, force=("lease_expiry", "lost_report")
    )
    assert report.verdict == "pass", report.violations
    assert report.faults.lease_expiries > 0
    assert report.faults.lost_reports > 0


# --- the fakes ------------------------------------------------------------------------------------


@attrs.frozen
class _Job:
    id: str
    attempt: int
    fence: int


async def test_a_fenced_write_older_than_the_keys_newest_fence_is_refused() -> None:
    world = fakes.begin_world()
    store = fakes.kv("orders")
    await store.put("o1", {"v": 1}, job=_Job("j1", 1, 10), fence=10)
    await store.put("o1", {"v": 2}, job=_Job("j1", 2, 12), fence=12)
    with pytest.raises(fakes.StaleFence, match="fence 10 is older than 12"):
        await store.put("o1", {"v": 3}, job=_Job("j1", 1, 10), fence=10)
    await store.put("o1", {"v": 4}, job=_Job("j2", 1, 11))  # unfenced: always lands
    assert world.data("orders") == {"o1": {"v": 4}}
    assert [(e.fence, e.applied) for e in world.effects_on("kv:orders")] == [
        (10, True),
        (12, True),
        (10, False),
        (11, True),
    ]
    assert await store.get("o1", job=_Job("j3", 1, 13)) == {"v": 4}
    assert len(world.effects) == 4  # a read is no effect


async def test_put_if_absent_and_delete() -> None:
    world = fakes.begin_world()
    store = fakes.kv("seen")
    assert await store.put_if_absent("k", 1, job=_Job("j1", 1, 5))
    assert not await store.put_if_absent("k", 2, job=_Job("j1", 2, 6))
    assert await store.delete("k", job=_Job("j1", 2, 6))
    assert not await store.delete("k", job=_Job("j1", 2, 6))
    applied = [(e.operation, e.applied, e.why) for e in world.effects]
    assert applied == [
        ("put_if_absent", True, ""),
        ("put_if_absent", False, "exists"),
        ("delete", True, ""),
        ("delete", False, "absent"),
    ]


async def test_an_idempotency_key_replays_the_first_answer() -> None:
    world = fakes.begin_world()
    payments = fakes.endpoint("payments")
    first = await payments.post("/c", {"o": 1}, job=_Job("j1", 1, 3), idempotency_key="o1")
    again = await payments.post("/c", {"o": 1}, job=_Job("j1", 2, 7), idempotency_key="o1")
    other = await payments.post("/c", {"o": 2}, job=_Job("j2", 1, 8))
    assert first == {"id": 1, "replayed": False}
    assert again == {"id": 1, "replayed": True}
    assert other == {"id": 2, "replayed": False}
    effects = world.effects_on("endpoint:payments")
    assert [(e.job_id, e.attempt, e.fence, e.applied) for e in effects] == [
        ("j1", 1, 3, True),
        ("j1", 2, 7, False),
        ("j2", 1, 8, True),
    ]
    times = [effect.at_ms for effect in effects]
    assert times == sorted(times)
    assert times[-1] <= trio.current_time() * 1000


async def test_values_are_copied_and_must_be_json() -> None:
    world = fakes.begin_world()
    store = fakes.kv("rows")
    value = {"items": [1, 2]}
    await store.put("r", value, job=_Job("j", 1, 1))
    value["items"].append(3)
    assert world.data("rows") == {"r": {"items": [1, 2]}}
    with pytest.raises(ValueError, match="JSON"):
        await store.put("r", {1, 2}, job=_Job("j", 1, 1))
    with pytest.raises(TypeError, match="job= must be the handler's job"):
        await store.put("r", 1, job=None)  # type: ignore[arg-type]


def test_raftq_sim_runs_the_simulator_in_a_child_process() -> None:
    """``raftq sim ...`` is ``python -m sim ...`` (exit codes included) without raftq
    importing sim (tests/test_layering.py)."""
    command = [sys.executable, "-c", "import sys; from raftq.cli import main; sys.exit(main())"]
    passed = subprocess.run(
        [*command, "sim", "run", "--seed", "2", "--sim-seconds", "2", "--import", SAFE, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert passed.returncode == 0, passed.stderr[-2000:]
    assert json.loads(passed.stdout.splitlines()[-1])["verdict"] == "pass"
    refused = subprocess.run(
        [*command, "sim", "sweep", "--seeds", "1", "--check", CHECK],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert refused.returncode == 2
    assert "--check needs --import" in refused.stderr
