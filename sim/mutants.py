"""The mutation harness: does the safety net catch planted bugs? (``make mutants``)

Each mutant is a small patch kept outside the product code (``tests/mutants/NAME.patch``) with
a row in ``MUTANTS``: what bug it plants and which unit tests must catch it. For each mutant,
one at a time, the harness applies the patch to a scratch copy of the repository (a
``git worktree`` detached at HEAD, in a temporary directory, removed afterwards), then

1. runs the named unit tests against the mutant: they must FAIL;
2. runs simulator seeds ``start, start + 1, ...`` (up to ``--seeds``, several processes at a
   time) until one fails, and reports how many seeds that took and which checker fired.

A table at the end: mutant, unit tests caught it (y/n), seeds to the first violation, checker.
It exits 1 if any mutant escaped either net, 2 if a patch no longer applies (regenerate it:
edit the scratch copy, ``git diff > tests/mutants/NAME.patch``; docs/simulator.md).

The scratch copy is HEAD: commit (or stash) your work before running the harness.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

import attrs

from sim.options import nodes_arguments
from sim.sweep import SeedResult, default_jobs, run_seeds

MUTANTS_DIRECTORY = "tests/mutants"
UNIT_TEST_WALL_LIMIT_S = 600.0
"""A unit-test run against a mutant that takes this long is stopped (a mutant may make a test
hang; the tests' own timeouts use virtual time, which a livelock never advances)."""


@attrs.frozen(kw_only=True)
class Mutant:
    name: str
    area: str
    bug: str
    unit_tests: tuple[str, ...]
    """pytest node ids (or files): at least one must fail against the mutant."""


MUTANTS = (
    Mutant(
        name="vote_twice",
        area="vote granting",
        bug="a voter grants a second vote in the same term while it knows no leader",
        unit_tests=(
            "tests/test_raft_paper.py::test_a_follower_votes_for_at_most_one_candidate_per_term",
        ),
    ),
    Mutant(
        name="vote_stale_log",
        area="vote granting",
        bug="a voter ignores the candidate's last index (5.4.1): a shorter log of the same "
        "last term wins votes",
        unit_tests=(
            "tests/test_raft_paper.py::test_a_voter_denies_a_candidate_whose_log_is_less_up_to_date",
        ),
    ),
    Mutant(
        name="commit_figure8",
        area="commit rule",
        bug="the leader commits an entry of an earlier term by counting replicas (figure 8)",
        unit_tests=(
            "tests/test_raft_paper.py::test_figure_8_an_entry_of_an_earlier_term_on_a_majority_is_not_committed",
        ),
    ),
    Mutant(
        name="commit_minority",
        area="commit rule",
        bug="the leader commits with one replica fewer than a majority",
        unit_tests=("tests/test_raft_paper.py::test_an_entry_is_committed_once_a_majority_has_it",),
    ),
    Mutant(
        name="commit_counts_learners",
        area="membership changes",
        bug="learners count towards the commit quorum",
        unit_tests=(
            "tests/test_raft_scenarios.py::test_learner_receives_the_log_but_never_counts_for_commit",
        ),
    ),
    Mutant(
        name="send_before_persist",
        area="persist / send order",
        bug="a Ready's messages (votes, append acknowledgements) go out before its entries "
        "and hard state are durable",
        unit_tests=(
            "tests/mutants/test_guards.py::test_a_vote_is_sent_only_once_the_vote_is_durable",
        ),
    ),
    Mutant(
        name="vote_not_persisted",
        area="persist / send order",
        bug="a change of term or vote is not saved before the vote is sent",
        unit_tests=(
            "tests/mutants/test_guards.py::test_a_vote_is_sent_only_once_the_vote_is_durable",
        ),
    ),
    Mutant(
        name="wal_no_fsync",
        area="persist / acknowledge order",
        bug="WAL appends are written but never fdatasync'ed, then acknowledged",
        unit_tests=("tests/test_wal.py::test_every_append_is_synced_before_it_returns",),
    ),
    Mutant(
        name="leader_counts_unpersisted",
        area="persist / acknowledge order",
        bug="the leader counts its own entries towards the quorum before they are durable",
        unit_tests=("tests/test_raft_paper.py::test_an_entry_is_committed_once_a_majority_has_it",),
    ),
    Mutant(
        name="snapshot_install_drops_log",
        area="snapshot install",
        bug="installing a snapshot always discards the log, even entries after the snapshot "
        "the leader counted as replicated",
        unit_tests=(
            "tests/test_raft_scenarios.py::test_follower_whose_log_contains_the_snapshot_point_keeps_the_following_entries",
        ),
    ),
    Mutant(
        name="compact_past_snapshot",
        area="compaction",
        bug="WAL compaction deletes a segment that still holds entries after the snapshot",
        unit_tests=(
            "tests/mutants/test_guards.py::test_compaction_keeps_the_segment_that_holds_entries_after_the_index",
        ),
    ),
    Mutant(
        name="dedupe_not_in_snapshot",
        area="dedupe table across snapshots",
        bug="snapshots leave out the idempotency keys: after a restore a retried key "
        "enqueues a second job",
        unit_tests=("tests/test_jobs_model.py::test_snapshot_then_replay_equals_full_replay",),
    ),
    Mutant(
        name="stale_fence_accepted",
        area="fences",
        bug="a completion or failure is accepted whatever its fence",
        unit_tests=(
            "tests/test_jobs_commands.py::test_reports_without_the_lease_are_rejected_and_change_nothing",
        ),
    ),
    Mutant(
        name="expire_early",
        area="leases",
        bug="leases expire half a second before their expiry time",
        unit_tests=(
            "tests/test_jobs_commands.py::test_expire_leases_expires_only_the_expired_ones",
        ),
    ),
    Mutant(
        name="no_extend_on_failover",
        area="lease extension on a new leader",
        bug="a new leader expires leases without first extending them (ExtendAll)",
        unit_tests=(
            "tests/mutants/test_guards.py::test_a_new_leader_extends_every_lease_before_expiring_any",
        ),
    ),
    Mutant(
        name="retry_without_backoff",
        area="retries and backoff",
        bug="a failed attempt is retried at once, without backoff",
        unit_tests=(
            "tests/test_jobs_commands.py::test_a_retried_job_keeps_its_enqueue_order_among_equally_due_jobs",
        ),
    ),
    Mutant(
        name="retry_past_max_attempts",
        area="retries and backoff",
        bug="a job is retried once more than max_attempts allows",
        unit_tests=(
            "tests/test_jobs_commands.py::test_report_settles_each_outcome_in_order_as_its_complete_or_fail_would",
        ),
    ),
    Mutant(
        name="read_without_quorum",
        area="ReadIndex",
        bug="the leader answers a ReadIndex at once, without a quorum confirming it still leads",
        unit_tests=(
            "tests/test_raft_scenarios.py::test_read_index_on_the_leader_after_a_heartbeat_round",
        ),
    ),
    Mutant(
        name="commit_regresses",
        area="commit index",
        bug="a follower takes a heartbeat's lower commit index, so its commit index regresses",
        unit_tests=(
            "tests/mutants/test_guards.py::test_a_heartbeat_with_a_lower_commit_never_lowers_the_followers_commit",
        ),
    ),
    Mutant(
        name="history_names_the_previous_entry",
        area="job history",
        bug="the state machine notes the entry it applies after the command ran, so each "
        "history event names the previous entry's index and term",
        unit_tests=(
            "tests/test_jobs_commands.py::test_a_jobs_history_names_the_log_entry_of_each_event",
        ),
    ),
    Mutant(
        name="retry_dead_past_its_bound",
        area="bulk retry",
        bug="a RetryDead retries one dead job more than its max_jobs",
        unit_tests=(
            "tests/test_jobs_listing.py::test_retry_dead_is_one_command_bounded_in_count_and_filtered",
        ),
    ),
    Mutant(
        name="release_stale_fence",
        area="claims ahead (prefetch)",
        bug="a Release ends the job's current lease whatever fence it carries",
        unit_tests=(
            "tests/test_claims.py::test_a_release_with_a_stale_fence_is_rejected_and_changes_nothing",
        ),
    ),
    Mutant(
        name="claim_ignores_hold",
        area="claims ahead (prefetch)",
        bug="a claim's leases expire after the timeout alone, not the hold plus the timeout",
        unit_tests=(
            "tests/test_claims.py::test_a_claim_with_a_hold_leases_for_the_hold_plus_the_timeout",
        ),
    ),
    Mutant(
        name="prefetch_past_hold",
        area="claims ahead (prefetch)",
        bug="a worker starts a prefetched job whenever a slot frees, past its hold, instead of "
        "releasing it",
        unit_tests=(
            "tests/test_claims.py::test_a_buffered_job_never_starts_after_its_hold_it_is_released",
        ),
    ),
    Mutant(
        name="expire_finished",
        area="job state transitions",
        bug="a lease expiry surfacing after its job finished fails the job again "
        "(the state machine's transition table refuses the move: the node stops)",
        unit_tests=(
            "tests/test_jobs_snapshot.py::test_expiring_leases_leaves_finished_jobs_finished",
        ),
    ),
    Mutant(
        name="limit_expiry_keeps_slot",
        area="concurrency limits",
        bug="a lease that expires does not free its group's slot: the group stays full",
        unit_tests=(
            "tests/test_limits_machine.py::"
            "test_an_expired_lease_frees_its_slot_and_a_stale_report_does_not_free_it_again",
        ),
    ),
    Mutant(
        name="limit_frees_twice",
        area="concurrency limits",
        bug="a failed or expired attempt frees its group's slot twice",
        unit_tests=(
            "tests/test_limits_machine.py::test_a_failed_attempt_frees_its_one_slot_not_two",
        ),
    ),
    Mutant(
        name="limit_rate_window_short",
        area="rate limits",
        bug="the rate window is one millisecond short: a job starts 1 ms before its turn",
        unit_tests=(
            "tests/test_limits_machine.py::test_a_rate_lets_n_jobs_start_in_any_window_of_its_length",
        ),
    ),
    Mutant(
        name="limit_prefetch_uncounted",
        area="concurrency limits",
        bug="a job claimed ahead of a free worker slot (hold_ms) does not count against its "
        "group until it starts",
        unit_tests=(
            "tests/test_limits_machine.py::"
            "test_a_prefetched_job_counts_from_its_claim_and_a_release_frees_its_slot_once",
        ),
    ),
    Mutant(
        name="unique_answer_forgets_key",
        area="unique while active (session 8)",
        bug="an enqueue answered by a unique key's holder does not record its idempotency key: "
        "a retry after the holder finished creates a second job under the same key",
        unit_tests=(
            "tests/test_unique_key_retry.py::"
            "test_a_retried_enqueue_answered_by_a_unique_holder_names_that_holder_again",
        ),
    ),
    Mutant(
        name="reconfig_loses_quorum",
        area="membership changes",
        bug="a voter is removed while another is silent: the voters left cannot form a "
        "majority, and no leader is ever elected again",
        unit_tests=(
            "tests/test_raft_scenarios.py::"
            "test_a_change_that_leaves_a_majority_of_its_voters_silent_is_refused",
        ),
    ),
    Mutant(
        name="reconfig_trusts_new_leader",
        area="membership changes",
        bug="a new leader counts every voter as answering until its first check-quorum round: "
        "right after an election it removes a voter while another is down for good",
        unit_tests=(
            "tests/test_raft_scenarios.py::"
            "test_a_new_leader_counts_as_answering_only_the_voters_it_has_heard_from",
        ),
    ),
    Mutant(
        name="limit_wake_stale",
        area="rate limits",
        bug="a rate-blocked group keeps a wake-up set under an older, longer window: it reopens "
        "with its jobs still parked, and newer ones go first",
        unit_tests=(
            "tests/test_limits_machine.py::"
            "test_a_shorter_rate_window_wakes_the_group_s_parked_jobs_at_its_own_end",
        ),
    ),
    Mutant(
        name="deps_release_after_first_parent",
        area="dependencies",
        bug="a waiting job is released when its first parent succeeds, not its last",
        unit_tests=(
            "tests/test_dependencies.py::test_a_child_waits_and_is_released_in_the_entry_that_finishes_its_last_parent",
        ),
    ),
    Mutant(
        name="deps_dead_parent_leaves_child_waiting",
        area="dependencies",
        bug="a parent that ends dead or cancelled leaves its child waiting forever instead of "
        "cancelling it",
        unit_tests=(
            "tests/test_dependencies.py::test_a_dead_parent_cancels_its_child_and_grandchildren_naming_the_parent",
        ),
    ),
    Mutant(
        name="unique_key_freed_early",
        area="unique while active",
        bug="a job that failed an attempt and awaits its retry gives up its unique key, so a "
        "second active job takes it",
        unit_tests=(
            "tests/test_dependencies.py::test_a_unique_key_refuses_a_duplicate_only_while_its_holder_is_active",
        ),
    ),
    Mutant(
        name="retry_policy_ignored",
        area="retry policy and snooze",
        bug="a failed attempt of a job with its own retry policy waits the default backoff",
        unit_tests=("tests/test_retry_policy.py::test_a_failed_attempt_waits_its_policy_delay",),
    ),
    Mutant(
        name="snooze_counts_an_attempt",
        area="retry policy and snooze",
        bug="a snooze (raftq.Retry) keeps the attempt it ended, as a failure would",
        unit_tests=(
            "tests/test_retry_policy.py::test_a_snooze_gives_the_attempt_back_and_waits_its_delay",
        ),
    ),
    Mutant(
        name="progress_stale_fence",
        area="progress",
        bug="a job's progress is stored whatever the fence it came with (a stale worker's too)",
        unit_tests=(
            "tests/test_progress.py::test_progress_is_stored_under_the_current_fence_only",
        ),
    ),
    Mutant(
        name="reconfig_trusts_stalled_rounds",
        area="membership changes",
        bug="after a stall (a long fsync) the leader takes a membership change at once, its "
        "check-quorum rounds as they stood before the stall and a dead voter's last answers "
        "just taken from its inbox",
        unit_tests=(
            "tests/test_raft_scenarios.py::"
            "test_after_a_stall_a_leader_takes_no_membership_change_until_two_live_rounds",
        ),
    ),
    Mutant(
        name="read_confirmed_by_older_round",
        area="linearizable reads",
        bug="any heartbeat acknowledgement confirms every read the leader holds, also one "
        "that arrived after that heartbeat was sent (a deposed leader's late answers)",
        unit_tests=(
            "tests/test_raft_scenarios.py::"
            "test_a_read_is_not_confirmed_by_a_heartbeat_round_sent_before_it_arrived",
        ),
    ),
    Mutant(
        name="schedule_fires_twice",
        area="schedules",
        bug="the state machine fires a slot without checking the schedule's last fired slot "
        "(only its last change): a slot proposed again fires again",
        unit_tests=(
            "tests/test_schedules.py::test_a_slot_fires_once_and_a_second_firing_of_it_is_refused",
            "tests/test_jobs_model.py::TestJobQueueAgainstModel",
        ),
    ),
    Mutant(
        name="new_leader_forgets_missed_slot",
        area="schedules",
        bug="a new leader's scheduler counts slots from when it took over: the slot missed "
        "while there was no leader never fires",
        unit_tests=(
            "tests/test_schedules.py::test_a_new_leader_fires_the_latest_missed_slot_once",
        ),
    ),
    Mutant(
        name="scheduler_waits_out_old_term",
        area="schedules",
        bug="a scheduler deposed while its firing waits keeps waiting (10 s) though it leads "
        "again: its new reign starts late, and the slots of those seconds fire as one catch-up",
        unit_tests=(
            "tests/test_schedules.py::"
            "test_a_leader_deposed_while_its_firing_waits_fires_every_slot_when_it_leads_again",
        ),
    ),
)


@attrs.define(eq=False)
class Outcome:
    mutant: Mutant
    applies: bool = True
    problem: str = ""
    unit_caught: bool | None = None
    unit_detail: str = ""
    unit_seconds: float = 0.0
    seeds_run: int = 0
    first_failing_seed: int | None = None
    checker: str = ""
    violation: str = ""
    sim_seconds: float = 0.0

    def row(self) -> dict[str, object]:
        return {
            "mutant": self.mutant.name,
            "area": self.mutant.area,
            "applies": self.applies,
            "problem": self.problem,
            "unit_caught": self.unit_caught,
            "unit_detail": self.unit_detail,
            "seeds_to_violation": self.seeds_run if self.first_failing_seed is not None else None,
            "seeds_run": self.seeds_run,
            "first_failing_seed": self.first_failing_seed,
            "checker": self.checker,
            "violation": self.violation[:200],
            "unit_seconds": round(self.unit_seconds, 1),
            "sim_wall_seconds": round(self.sim_seconds, 1),
        }


def repository_root() -> pathlib.Path:
    top = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
    )
    return pathlib.Path(top.stdout.strip())


@contextlib.contextmanager
def scratch_copy(root: pathlib.Path) -> Iterator[pathlib.Path]:
    """A ``git worktree`` of HEAD in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="raftq-mutant-") as directory:
        path = pathlib.Path(directory) / "tree"
        subprocess.run(
            ["git", "-C", str(root), "worktree", "add", "--detach", "--quiet", str(path), "HEAD"],
            check=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "-C", str(root), "worktree", "remove", "--force", str(path)], check=False
            )
            subprocess.run(["git", "-C", str(root), "worktree", "prune"], check=False)


def _git(tree: pathlib.Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(tree), *arguments], capture_output=True, text=True, check=False
    )


def apply_patch(tree: pathlib.Path, patch: pathlib.Path) -> str:
    """Apply ``patch`` to the clean ``tree``; an empty string, or why it does not apply."""
    if not patch.exists():
        return f"{patch} is missing"
    checked = _git(tree, "apply", "--check", str(patch))
    if checked.returncode != 0:
        return f"{patch.name} no longer applies to HEAD: {checked.stderr.strip()[:300]}"
    _git(tree, "apply", str(patch)).check_returncode()
    return ""


def restore(tree: pathlib.Path) -> None:
    _git(tree, "checkout", "--quiet", "--", ".").check_returncode()
    _git(tree, "clean", "-fdq").check_returncode()


def scratch_environment(tree: pathlib.Path) -> dict[str, str]:
    """The scratch copy first on the path: the editable install points at the real tree."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = str(tree)
    environment.pop("PYTHONHASHSEED", None)
    return environment


def run_unit_tests(tree: pathlib.Path, mutant: Mutant) -> tuple[bool, str]:
    """(caught, detail): caught means the tests ran and at least one failed."""
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    command += list(mutant.unit_tests)
    try:
        finished = subprocess.run(
            command,
            cwd=tree,
            env=scratch_environment(tree),
            capture_output=True,
            text=True,
            check=False,
            timeout=UNIT_TEST_WALL_LIMIT_S,
        )
    except subprocess.TimeoutExpired:
        return True, f"timed out after {UNIT_TEST_WALL_LIMIT_S:.0f} s (the mutant hangs a test)"
    failed = [line for line in finished.stdout.splitlines() if line.startswith("FAILED")]
    if finished.returncode == 1 and failed:
        return True, failed[0].removeprefix("FAILED ")[:160]
    if finished.returncode == 0:
        return False, "all passed"
    tail = (finished.stdout + finished.stderr).strip().splitlines()[-3:]
    return False, f"pytest exit {finished.returncode}: {' | '.join(tail)[:200]}"


def run_simulator(
    tree: pathlib.Path, outcome: Outcome, options: argparse.Namespace
) -> list[SeedResult]:
    seeds = range(options.start, options.start + options.seeds)
    arguments = ["--sim-seconds", str(options.sim_seconds), *nodes_arguments(options.nodes)]
    started = time.monotonic()
    results = run_seeds(
        seeds,
        arguments,
        jobs=options.jobs,
        cwd=str(tree),
        env=scratch_environment(tree),
        stop_at_first_failure=True,
    )
    outcome.sim_seconds = time.monotonic() - started
    outcome.seeds_run = len(results)
    failing = [result for result in results if result.failed]
    if failing:
        first = failing[0]
        outcome.first_failing_seed = first.seed
        outcome.checker = first.checker
        outcome.violation = first.violation
    return results


def measure(
    root: pathlib.Path, tree: pathlib.Path, mutant: Mutant, options: argparse.Namespace
) -> Outcome:
    outcome = Outcome(mutant=mutant)
    problem = apply_patch(tree, root / MUTANTS_DIRECTORY / f"{mutant.name}.patch")
    if problem:
        outcome.applies = False
        outcome.problem = problem
        return outcome
    try:
        if not options.skip_unit:
            started = time.monotonic()
            outcome.unit_caught, outcome.unit_detail = run_unit_tests(tree, mutant)
            outcome.unit_seconds = time.monotonic() - started
        if options.seeds > 0:
            run_simulator(tree, outcome, options)
    finally:
        restore(tree)
    return outcome


def print_table(outcomes: Sequence[Outcome], options: argparse.Namespace) -> None:
    print()
    budget = f"seeds to first violation (of {options.seeds})"
    print(f"| mutant | unit tests caught | {budget} | checker |")
    print("| --- | --- | --- | --- |")
    for outcome in outcomes:
        if not outcome.applies:
            print(f"| {outcome.mutant.name} | patch does not apply | | |")
            continue
        unit = {True: "y", False: "NO", None: "(skipped)"}[outcome.unit_caught]
        if outcome.first_failing_seed is not None:
            found = f"{outcome.seeds_run} (seed {outcome.first_failing_seed})"
        elif options.seeds > 0:
            found = f"not found in {outcome.seeds_run}"
        else:
            found = "(skipped)"
        print(f"| {outcome.mutant.name} | {unit} | {found} | {outcome.checker} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.mutants", description=__doc__)
    parser.add_argument(
        "mutants", nargs="*", help="names of mutants to run (default: all); see --list"
    )
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--seeds", type=int, default=200, help="seed budget per mutant")
    parser.add_argument("--start", type=int, default=1, help="first seed")
    parser.add_argument("--sim-seconds", type=float, default=20.0)
    parser.add_argument("--nodes", type=int, choices=(3, 5), help="default: each seed draws")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="processes at once")
    parser.add_argument("--skip-unit", action="store_true", help="do not run the unit tests")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    options = parser.parse_args(argv)
    by_name = {mutant.name: mutant for mutant in MUTANTS}
    if options.list:
        for mutant in MUTANTS:
            print(f"{mutant.name:<28} {mutant.area}: {mutant.bug}")
        return 0
    unknown = [name for name in options.mutants if name not in by_name]
    if unknown:
        parser.error(f"unknown mutants {unknown}; known: {', '.join(by_name)}")
    if options.jobs < 1 or options.seeds < 0:
        parser.error("--jobs must be at least 1 and --seeds at least 0")
    chosen = [by_name[name] for name in options.mutants] or list(MUTANTS)
    root = repository_root()
    outcomes = []
    # A SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so the scratch worktree is removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with scratch_copy(root) as tree:
        for mutant in chosen:
            outcome = measure(root, tree, mutant, options)
            outcomes.append(outcome)
            print(json.dumps(outcome.row()), file=sys.stderr, flush=True)
    print_table(outcomes, options)
    if options.json:
        print(json.dumps([outcome.row() for outcome in outcomes]))
    if not all(outcome.applies for outcome in outcomes):
        return 2
    missed_by_simulator = options.seeds > 0
    escaped = [
        outcome
        for outcome in outcomes
        if outcome.unit_caught is False
        or (missed_by_simulator and outcome.first_failing_seed is None)
    ]
    return 1 if escaped else 0


if __name__ == "__main__":
    sys.exit(main())
