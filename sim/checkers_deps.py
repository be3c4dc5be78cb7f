"""The rules of dependencies and of unique-while-active keys (docs/jobs.md "Dependencies",
"Unique while active"), checked on the committed log as the oracle applies it:

- no dependent job is claimed before every parent succeeded (one that runs anyway: before
  every parent has ended); released jobs are judged as they leave ``waiting``;
- a waiting job is released in the very entry that finishes its last parent, and a job
  whose parent ended dead or cancelled (and that does not run anyway) is cancelled in that
  entry: never left waiting;
- no two active jobs (pending, waiting, running, failed) hold one unique key, and an enqueue
  with a key no active job holds creates its job.

The parents' states are read from the oracle's machine, but the verdicts are the rules
written out here, the slow way (every parent of a job looked at), not the machine's counts.
``observe`` runs right after the oracle applies each entry, ``before`` right before.
"""

from __future__ import annotations

from raftq.ids import derived_job_id
from raftq.jobs.commands import Command, Enqueue, JobSpec, Retry, RetryDead
from raftq.jobs.job import FINISHED, Job, JobState
from raftq.jobs.machine import JobStateMachine
from raftq.raft.types import Entry, EntryKind
from sim.checkers import JobOracle, Violation, command_of

_ENDED_BADLY = (JobState.DEAD, JobState.CANCELLED)


class DependencyRules:
    def __init__(self) -> None:
        self.parents: dict[str, tuple[int, tuple[str, ...], bool]] = {}
        """Job id -> (its enqueue order, its parents, runs anyway) for every dependent job."""
        self.waiting: dict[str, None] = {}
        """The dependent jobs last seen waiting."""
        self.unique: dict[str, str] = {}
        """Job id -> its unique-while-active key."""
        self._free_keys: list[tuple[str, str]] = []
        """(job id, key) of the specs of the entry being applied whose unique key no active job
        held before it, and that nothing else refuses (so each must create its job)."""
        self._command: tuple[int, Command | None] = (0, None)
        """The entry being applied and its command, decoded once for ``before`` and
        ``observe``."""
        self._next_seq = 1
        self._new_unique = False
        """Whether the entry being applied created a job with a unique key."""
        self.released_checked = 0
        self.claims_checked = 0
        self.keys_checked = 0

    def before(self, entry: Entry, oracle: JobOracle) -> None:
        """Call right before ``oracle.apply(entry)``: which unique keys are free."""
        self._free_keys = []
        self._command = (entry.index, _decoded(entry))
        command = self._command[1]
        if not isinstance(command, Enqueue):
            return
        machine = oracle.machine
        taken: set[str] = set()  # ids and keys of the specs before, in this command
        for position, spec in enumerate(command.jobs):
            key = spec.unique_while_active
            job_id = spec.id or derived_job_id(entry.index, position)
            free = (
                key
                and not (spec.key and (spec.key in machine.keys or spec.key in taken))
                and job_id not in machine.jobs
                and all(parent_id in machine.jobs for parent_id in spec.depends_on)
                and not {job_id, key, *spec.depends_on} & taken
                and not self._holders(machine, key)
            )
            if free:
                self._free_keys.append((job_id, key))
            taken |= {job_id, key, spec.key}

    def observe(self, entry: Entry, oracle: JobOracle) -> None:
        """Call right after ``oracle.apply(entry)``."""
        machine = oracle.machine
        if entry.kind is not EntryKind.COMMAND:
            return
        self._new_unique = False
        if machine.next_seq != self._next_seq:
            self._learn_new_jobs(entry, machine)
        self._check_waiting(entry.index, machine)
        self._check_claims(entry.index, oracle)
        self._check_free_keys(entry.index, machine)
        if self._new_unique or isinstance(self._command[1], Retry | RetryDead):
            self._check_unique(entry.index, machine)

    # --- dependencies ---------------------------------------------------------------------------

    def _learn_new_jobs(self, entry: Entry, machine: JobStateMachine) -> None:
        first_new, self._next_seq = self._next_seq, machine.next_seq
        command = self._command[1] if self._command[0] == entry.index else _decoded(entry)
        if not isinstance(command, Enqueue):
            return
        for position, spec in enumerate(command.jobs):
            job = machine.jobs.get(spec.id or derived_job_id(entry.index, position))
            if job is None or job.seq < first_new:
                continue  # refused, or deduplicated to an older job
            self._learn(job, spec)

    def _learn(self, job: Job, spec: JobSpec) -> None:
        if spec.unique_while_active:
            self.unique[job.id] = spec.unique_while_active
            self._new_unique = True
        if spec.depends_on:
            run_anyway = spec.on_parent_failure == "run"
            self.parents[job.id] = (job.seq, spec.depends_on, run_anyway)
            self.waiting[job.id] = None  # judged below: still waiting, pending or cancelled

    def _verdict(self, machine: JobStateMachine, job_id: str) -> tuple[bool, str]:
        """(may it run: every parent succeeded, or ended when it runs anyway; the parent whose
        bad end cancels it, or "")."""
        seq, parent_ids, run_anyway = self.parents[job_id]
        may_run, cancelled_by = True, ""
        for parent_id in parent_ids:
            parent = machine.jobs.get(parent_id)
            if parent is None or parent.seq > seq:
                continue  # purged after it let the child go (a later job may reuse its id)
            if parent.state is JobState.SUCCEEDED:
                continue
            if parent.state in _ENDED_BADLY:
                if not run_anyway and not cancelled_by:
                    cancelled_by = parent_id
                if run_anyway:
                    continue
            may_run = False
        return may_run, cancelled_by

    def _check_waiting(self, index: int, machine: JobStateMachine) -> None:
        for job_id in list(self.waiting):
            job = machine.jobs.get(job_id)
            may_run, cancelled_by = self._verdict(machine, job_id)
            if job is not None and job.state is JobState.WAITING:
                if may_run:
                    raise Violation(
                        "a waiting job is released in the entry that finishes its last parent",
                        f"index {index}: {job_id} still waits; its parents "
                        f"{self._states(machine, job_id)}",
                    )
                if cancelled_by:
                    raise Violation(
                        "a job is cancelled in the entry where a parent ends dead or cancelled",
                        f"index {index}: {job_id} still waits though {cancelled_by} ended "
                        f"{machine.jobs[cancelled_by].state.value}",
                    )
                continue
            del self.waiting[job_id]
            self.released_checked += 1
            if job is not None and job.state is JobState.PENDING and not may_run:
                raise Violation(
                    "no dependent job is released before every parent succeeded",
                    f"index {index}: {job_id} released; its parents "
                    f"{self._states(machine, job_id)}",
                )

    def _check_claims(self, index: int, oracle: JobOracle) -> None:
        machine = oracle.machine
        for job_id, held in oracle.held.items():
            if held.fence != index or job_id not in self.parents:
                continue
            self.claims_checked += 1
            if self.parents[job_id][2]:
                continue  # runs anyway: judged at its release (a dead parent may be retried)
            if not self._verdict(machine, job_id)[0]:
                raise Violation(
                    "no dependent job starts before every parent succeeded",
                    f"index {index}: {job_id} claimed; its parents {self._states(machine, job_id)}",
                )

    def _states(self, machine: JobStateMachine, job_id: str) -> str:
        parent_ids = self.parents[job_id][1]
        return ", ".join(
            f"{parent_id}={machine.jobs[parent_id].state.value}"
            if parent_id in machine.jobs
            else f"{parent_id}=purged"
            for parent_id in parent_ids[:10]
        )

    # --- unique keys ----------------------------------------------------------------------------

    def _holders(self, machine: JobStateMachine, key: str) -> list[str]:
        return [
            job_id
            for job_id, held_key in self.unique.items()
            if held_key == key
            and job_id in machine.jobs
            and machine.jobs[job_id].state not in FINISHED
        ]

    def _check_free_keys(self, index: int, machine: JobStateMachine) -> None:
        for job_id, key in self._free_keys:
            self.keys_checked += 1
            if job_id not in machine.jobs:
                raise Violation(
                    "an enqueue with a unique key no active job holds creates its job",
                    f"index {index}: {job_id} with the free key {key!r} was not created",
                )

    def _check_unique(self, index: int, machine: JobStateMachine) -> None:
        for job_id in [job_id for job_id in self.unique if job_id not in machine.jobs]:
            del self.unique[job_id]  # purged
        for key in set(self.unique.values()):
            holders = self._holders(machine, key)
            if len(holders) > 1:
                raise Violation(
                    "no two active jobs hold one unique key",
                    f"index {index}: {', '.join(holders)} are active with the key {key!r}",
                )


def _decoded(entry: Entry) -> Command | None:
    if entry.kind is not EntryKind.COMMAND:
        return None
    return command_of(entry)
