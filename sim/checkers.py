"""Safety checkers, run continuously while the simulation runs.

The ``CommittedLog`` collects every entry any node reports as committed, and keeps it for the
whole run, across every crash: a node that later holds something else at a committed index
(committed prefixes differ, or a committed entry disappeared) is a violation. The
``JobOracle`` replays that one committed log through its own ``JobStateMachine`` and checks the
job rules on each command as it applies: no job succeeds twice, a completion or failure with a
stale fence is never accepted, one job's leases never overlap (a new lease only after the
previous one ended, and a lease ends by expiry only once its expiry time has passed).
"""

from __future__ import annotations

import collections

import attrs

from raftq import codec
from raftq.errors import DecodeError
from raftq.jobs.commands import (
    ClaimResult,
    Command,
    Complete,
    Done,
    Enqueue,
    Enqueued,
    EnqueueResult,
    Fail,
    Report,
    ReportResult,
    Result,
)
from raftq.jobs.job import JobState
from raftq.jobs.machine import JobStateMachine
from raftq.raft.types import Entry, EntryKind

DIGESTS_KEPT = 4096
"""Applied index -> state digest, remembered for comparing replicas (oldest forgotten)."""


class Violation(Exception):
    """A safety or liveness property failed; the message names it."""

    def __init__(self, property_name: str, detail: str) -> None:
        super().__init__(f"{property_name}: {detail}")
        self.property_name = property_name
        self.detail = detail


@attrs.define(eq=False)
class _HeldLease:
    fence: int
    expires_ms: int


class CommittedLog:
    """Index -> (term, kind, data) of every entry seen committed anywhere."""

    def __init__(self) -> None:
        self.entries: dict[int, Entry] = {}
        self.forgotten_below = 1
        self.leaders: dict[int, str] = {}
        """Term -> the one node seen leading it."""
        self.digests: collections.OrderedDict[int, tuple[str, str]] = collections.OrderedDict()

    def observe_leader(self, term: int, node: str) -> None:
        known = self.leaders.setdefault(term, node)
        if known != node:
            raise Violation("one leader per term", f"term {term} led by {known} and {node}")

    def observe_committed(self, node: str, entry: Entry) -> None:
        assert entry.index >= self.forgotten_below, (node, entry.index, self.forgotten_below)
        known = self.entries.get(entry.index)
        if known is None:
            self.entries[entry.index] = entry
            return
        if (known.term, known.kind, known.data) != (entry.term, entry.kind, entry.data):
            raise Violation(
                "committed entries never change",
                f"{node} has term {entry.term} at committed index {entry.index}, "
                f"committed earlier with term {known.term}",
            )

    def forget_below(self, index: int) -> None:
        """Drop entries below ``index``: no node's log holds them any more (each starts after
        a snapshot past them) and the oracle has applied them, so nothing can be compared with
        them again. Keeps the record bounded by the nodes' logs, not by the run's length."""
        for old in range(self.forgotten_below, index):
            self.entries.pop(old, None)
        self.forgotten_below = max(self.forgotten_below, index)

    def observe_digest(self, source: str, applied_index: int, digest: str) -> None:
        known = self.digests.get(applied_index)
        if known is None:
            self.digests[applied_index] = (source, digest)
            while len(self.digests) > DIGESTS_KEPT:
                self.digests.popitem(last=False)
        elif known[1] != digest:
            raise Violation(
                "equal state at equal applied index",
                f"{source} and {known[0]} differ at applied index {applied_index}",
            )


class JobOracle:
    """The committed log replayed, with the job rules checked on every command."""

    def __init__(self) -> None:
        self.machine = JobStateMachine()
        self.applied_index = 0
        self.held: dict[str, _HeldLease] = {}
        self.succeeded: dict[str, int] = {}
        """Job id -> the index of the completion that made it succeed."""
        self.enqueued_keys: dict[str, str] = {}
        self.stale_rejected = 0
        self.commands = 0

    def catch_up(self, log: CommittedLog) -> None:
        while (entry := log.entries.get(self.applied_index + 1)) is not None:
            self.apply(entry)

    def apply(self, entry: Entry) -> None:
        assert entry.index == self.applied_index + 1, (entry.index, self.applied_index)
        self.applied_index = entry.index
        if entry.kind is not EntryKind.COMMAND:
            return
        try:
            command: Command = codec.decode(entry.data, Command)
        except DecodeError:
            return  # the nodes skip it too (Applier._apply)
        result = self.machine.apply(entry.index, command, entry.term)
        self.commands += 1
        self._check(entry.index, command, result)

    def _check(self, index: int, command: Command, result: Result) -> None:
        now_ms = self.machine.now_ms
        reports: list[tuple[str, int, Result]] = []
        if isinstance(command, Complete | Fail):
            reports.append((command.job_id, command.fence, result))
        if isinstance(command, Report) and isinstance(result, ReportResult):
            reports += [
                (outcome.job_id, outcome.fence, settled)
                for outcome, settled in zip(command.outcomes, result.outcomes, strict=True)
            ]
        settled_here: set[str] = set()
        for job_id, fence, settled in reports:
            if not isinstance(settled, Done):
                continue
            held = self.held.get(job_id)
            if held is None or held.fence != fence or job_id in settled_here:
                raise Violation(
                    "no stale fence accepted",
                    f"index {index}: {type(command).__name__} of {job_id} with fence "
                    f"{fence} accepted; the lease held is {held.fence if held else 'none'}",
                )
            settled_here.add(job_id)
        touched = list(self.held)
        if isinstance(result, ClaimResult):
            touched += [lease.job_id for lease in result.leases]
        touched += [job_id for job_id, _, _ in reports]
        if isinstance(command, Enqueue) and isinstance(result, EnqueueResult):
            for spec, enqueued in zip(command.jobs, result.jobs, strict=True):
                if isinstance(enqueued, Enqueued) and spec.key:
                    self._check_key(index, spec.key, enqueued.job_id)
        for job_id in dict.fromkeys(touched):
            self._check_job(index, job_id, now_ms, type(command).__name__)

    def _check_key(self, index: int, key: str, job_id: str) -> None:
        known = self.enqueued_keys.setdefault(key, job_id)
        if known != job_id:
            raise Violation(
                "idempotency keys dedupe",
                f"index {index}: key {key} gave job {job_id}, earlier {known}",
            )

    def _check_job(self, index: int, job_id: str, now_ms: int, command: str) -> None:
        job = self.machine.jobs.get(job_id)
        held = self.held.get(job_id)
        running = job is not None and job.state is JobState.RUNNING and job.run is not None
        fence = job.run.fence if running and job is not None and job.run is not None else 0
        if held is not None and held.fence != fence:
            # The lease ended in this command.
            if command in ("ExpireLeases", "Claim") and now_ms < held.expires_ms:
                raise Violation(
                    "leases end only by report, cancel or expiry",
                    f"index {index}: lease {held.fence} of {job_id} ended by {command} at "
                    f"{now_ms} ms, before it expires at {held.expires_ms} ms",
                )
            del self.held[job_id]
            held = None
        if running and job is not None and job.run is not None:
            if held is None:
                self.held[job_id] = _HeldLease(fence=fence, expires_ms=job.run.lease_expires_ms)
            else:
                held.expires_ms = job.run.lease_expires_ms
        if job is not None and job.state is JobState.SUCCEEDED and job_id not in self.succeeded:
            self.succeeded[job_id] = index
        elif job is not None and job_id in self.succeeded and job.state is not JobState.SUCCEEDED:
            raise Violation(
                "no job succeeds twice",
                f"index {index}: {job_id} succeeded at {self.succeeded[job_id]}, "
                f"now {job.state.value} after {command}",
            )

    def final(self, job_id: str) -> bool:
        job = self.machine.jobs.get(job_id)
        return job is not None and job.state in (
            JobState.SUCCEEDED,
            JobState.DEAD,
            JobState.CANCELLED,
        )
