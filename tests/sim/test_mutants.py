"""The mutation harness (``sim.mutants``, ``make mutants``): its table matches the patches,
every patch still applies, and a few quick mutants are caught by their unit tests and by the
simulator at a seed known to catch them. The full run (every mutant, 200 seeds) is
``make mutants``; its figures are in docs/simulator.md."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from sim import mutants

ROOT = pathlib.Path(__file__).resolve().parents[2]

DURABLE = "acknowledged enqueues are durable on a majority"

QUICK = [
    ("expire_early", 1, "leases end only by report, cancel or expiry", 20),
    ("wal_no_fsync", 1, DURABLE, 10),
    ("commit_minority", 1, DURABLE, 10),
    ("commit_regresses", 1, "commit index never goes back", 20),
    ("read_without_quorum", 16, "linearizable reads", 10),
]
"""(mutant, a seed that catches it, the checker that fires, ``--sim-seconds``): a few
quick ones in every ``make test``. ``wal_no_fsync`` and ``commit_minority`` needed a new
checker (durability on a majority's disks, ``sim.checkers.NodeChecks``), ``commit_regresses``
the commit index watched in every step (``sim.checkers.StepWatch``), ``read_without_quorum``
the ``deposed_read`` schedule and the read checker's judgement of "no such job": they are
also their regression seeds."""

REGRESSIONS = [
    ("send_before_persist", 1, DURABLE, 10),
    ("vote_not_persisted", 7, "liveness", 20),
    ("commit_counts_learners", 24, DURABLE, 20),
    ("commit_figure8", 7, "committed entries never change", 20),
    ("snapshot_install_drops_log", 3, "committed entries are never dropped", 20),
    ("release_stale_fence", 5, "a release ends only the lease its fence names", 10),
    ("compact_past_snapshot", 4, "nodes do not die", 20),
    # found by the oracle's restored twin after the limits operator began moving a rate's
    # window (none of seeds 1-200 found it before)
    ("limit_wake_stale", 94, "a restored state decides as the state it was saved from", 20),
    # found by the fault schedules of session 9: ``rot_remove`` (a voter's disk rots, then
    # another voter is removed) and ``lost_answers`` with the producers' unique keys
    ("reconfig_loses_quorum", 12, "liveness", 20),
    ("reconfig_trusts_new_leader", 32, "liveness", 20),
    ("unique_answer_forgets_key", 151, "idempotency keys dedupe", 20),
    # found only by the ``pause`` schedule (session 10; drawn by default since session 11)
    ("read_confirmed_by_older_round", 16, "linearizable reads", 20),
    ("reconfig_trusts_stalled_rounds", 90, "a schedule slot fires while a leader exists", 20),
]
"""Regression seeds of the mutants that needed a new checker or a new fault to be found:
each the first seed of the full mutation run that finds it (``python -m sim.mutants --seeds
200 --jobs 2``). Every change that moves the simulator's traces moves these seeds; the run of
session 11 (the clock's 1 ms grain, ``pause`` drawn by default) gave all of them, and
docs/simulator.md keeps each mutant's history: which fault or checker it needed, and where
earlier runs found it."""


def test_every_mutant_has_a_patch_and_every_patch_a_mutant() -> None:
    patches = sorted(path.stem for path in (ROOT / mutants.MUTANTS_DIRECTORY).glob("*.patch"))
    assert patches == sorted(mutant.name for mutant in mutants.MUTANTS)
    assert len(patches) >= 15
    for mutant in mutants.MUTANTS:
        assert mutant.unit_tests, mutant.name
        for test in mutant.unit_tests:
            assert (ROOT / test.partition("::")[0]).exists(), test


def test_every_patch_applies_to_head_and_a_stale_one_is_named(tmp_path: pathlib.Path) -> None:
    with mutants.scratch_copy(ROOT) as tree:
        for mutant in mutants.MUTANTS:
            patch = ROOT / mutants.MUTANTS_DIRECTORY / f"{mutant.name}.patch"
            assert mutants.apply_patch(tree, patch) == "", mutant.name
            assert subprocess.run(["git", "-C", str(tree), "diff", "--quiet"]).returncode == 1
            mutants.restore(tree)
        stale = tmp_path / "stale.patch"
        text = (ROOT / mutants.MUTANTS_DIRECTORY / "vote_twice.patch").read_text()
        stale.write_text(text.replace("self.vote == message.sender", "self.vote == 'nobody'"))
        problem = mutants.apply_patch(tree, stale)
        assert problem.startswith("stale.patch no longer applies to HEAD"), problem
    assert not tree.exists()


@pytest.mark.parametrize(
    ("name", "seed", "checker", "sim_seconds"),
    [
        *QUICK,
        *(pytest.param(*regression, marks=pytest.mark.slow) for regression in REGRESSIONS),
    ],
)
def test_a_quick_mutant_is_caught_by_its_unit_tests_and_the_simulator(
    name: str, seed: int, checker: str, sim_seconds: int
) -> None:
    command = [sys.executable, "-m", "sim.mutants", name, "--start", str(seed), "--seeds", "1"]
    command += ["--sim-seconds", str(sim_seconds), "--jobs", "1", "--json"]
    finished = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, check=False, timeout=600
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    (row,) = json.loads(finished.stdout.splitlines()[-1])
    assert row["unit_caught"] is True, row
    assert row["first_failing_seed"] == seed, row
    assert row["checker"] == checker, row
    assert f"| {name} | y | 1 (seed {seed}) | {checker} |" in finished.stdout
