"""Concurrency and rate limits (docs/limits.md), checked on the committed log at every index:

- **concurrency**: whenever an entry hands out a job (a lease whose fence is that entry's
  index), each queue and group of that job with a concurrency limit N has at most N jobs
  handed out and not ended (completed, failed, expired, cancelled, released) afterwards. A
  limit lowered below what runs preempts nothing, so only entries that hand out are judged;
- **rate**: whenever an entry hands out a job of a queue or group with a rate of N per W ms,
  at most N hand-outs of it fall in the window ``(now - W, now]`` ending at that entry's
  stamped time, counting every hand-out since that rate and window were set (set again
  unchanged, they keep their count; as the machine's rule says);
- **nothing is held back that its limits allow** (the other half of exact: a limit that
  never frees a slot would pass the two rules above): after a Claim that hands out fewer jobs
  than it asked for, no due job it would take is left whose queue and group are under their
  limits, counted as above.

The jobs that run are the oracle's leases (``JobOracle.held``: built from claims and
outcomes, not from the machine's counters); the limits in force come from the SetLimit and
RemoveLimit entries, decoded here. Each node applies the same log and the simulator compares
every node's state digest with the oracle's, so what holds at the oracle's index holds at that
index on every node.
"""

from __future__ import annotations

import collections

from raftq import limits
from raftq.jobs.commands import Claim, Command, RemoveLimit, SetLimit
from raftq.jobs.job import JobState
from raftq.raft.types import Entry, EntryKind
from sim.checkers import JobOracle, Violation, command_of

RATE_STARTS_KEPT = 100_000
"""Hand-out times kept per rate-limited scope: far more than a run makes."""

WINDOW_MS_MAX = limits.LIMIT_RATE_WINDOW_MS_MAX
"""Older hand-outs fall out of every window."""


class LimitRules:
    def __init__(self) -> None:
        self.limits: dict[tuple[str, str], tuple[int, int, int]] = {}
        """(scope, name) -> (concurrency, rate, window_ms), as the log set them."""
        self.starts: dict[tuple[str, str], collections.deque[int]] = {}
        self.handouts_checked = 0
        self.limited_handouts = 0
        self.idle_claims_checked = 0

    def observe(self, entry: Entry, oracle: JobOracle) -> None:
        """Call right after ``oracle.apply(entry)``."""
        if entry.kind is not EntryKind.COMMAND:
            return
        if b"SetLimit" in entry.data or b"RemoveLimit" in entry.data:
            self._learn(entry, oracle)
        if not self.limits:
            return
        handed = [job_id for job_id, held in oracle.held.items() if held.fence == entry.index]
        claim = b"Claim" in entry.data and _decoded(entry)
        if not handed and not isinstance(claim, Claim):
            return
        machine = oracle.machine
        running: collections.Counter[tuple[str, str]] = collections.Counter()
        for job_id in oracle.held:
            running.update(_scopes(oracle, job_id))
        now_ms = machine.now_ms
        for job_id in sorted(handed, key=lambda job_id: machine.jobs[job_id].seq):
            self.handouts_checked += 1
            for scope in _scopes(oracle, job_id):
                limit = self.limits.get(scope)
                if limit is None:
                    continue
                self.limited_handouts += 1
                concurrency, rate, window_ms = limit
                if concurrency and running[scope] > concurrency:
                    raise Violation(
                        "a concurrency limit is never exceeded",
                        f"index {entry.index}: {job_id} handed out with {running[scope]} jobs "
                        f"of {scope[0]} {scope[1]} running, limit {concurrency}",
                    )
                if rate:
                    starts = self.starts.setdefault(scope, collections.deque())
                    starts.append(now_ms)
                    while len(starts) > RATE_STARTS_KEPT or starts[0] <= now_ms - WINDOW_MS_MAX:
                        starts.popleft()
                    in_window = sum(1 for at_ms in starts if at_ms > now_ms - window_ms)
                    if in_window > rate:
                        raise Violation(
                            "a rate limit is never exceeded",
                            f"index {entry.index}: {job_id} is the {in_window}th hand-out of "
                            f"{scope[0]} {scope[1]} in the {window_ms} ms up to {now_ms} ms, "
                            f"limit {rate}",
                        )
        if isinstance(claim, Claim) and len(handed) < claim.max_jobs:
            self._check_nothing_held_back(entry.index, claim, oracle, running)

    def _check_nothing_held_back(
        self,
        index: int,
        claim: Claim,
        oracle: JobOracle,
        running: collections.Counter[tuple[str, str]],
    ) -> None:
        machine = oracle.machine
        now_ms = machine.now_ms
        for job in machine.jobs.values():
            if job.state is not JobState.PENDING or job.run_at_ms > now_ms:
                continue
            if machine.is_paused(job.queue):
                continue
            if (claim.types and job.type not in claim.types) or (
                claim.queues and job.queue not in claim.queues
            ):
                continue
            self.idle_claims_checked += 1
            if all(self._allows(scope, running, now_ms) for scope in _scopes(oracle, job.id)):
                raise Violation(
                    "a limit holds back only what it must",
                    f"index {index}: a claim for {claim.max_jobs} left {job.id} pending, "
                    f"due, under the limits of {_scopes(oracle, job.id)}",
                )

    def _allows(
        self, scope: tuple[str, str], running: collections.Counter[tuple[str, str]], now_ms: int
    ) -> bool:
        limit = self.limits.get(scope)
        if limit is None:
            return True
        concurrency, rate, window_ms = limit
        if concurrency and running[scope] >= concurrency:
            return False
        starts = self.starts.get(scope, ())
        return not rate or sum(1 for at_ms in starts if at_ms > now_ms - window_ms) < rate

    def _learn(self, entry: Entry, oracle: JobOracle) -> None:
        command = _decoded(entry)
        if isinstance(command, SetLimit):
            scope = (command.scope, command.name)
            if scope not in oracle.machine.limit_table.limits:
                return  # refused (the table is full): in force is what was before
            old = self.limits.get(scope)
            self.limits[scope] = (command.concurrency, command.rate, command.window_ms)
            if old is None or old[1:] != (command.rate, command.window_ms):
                self.starts.pop(scope, None)
        elif isinstance(command, RemoveLimit):
            scope = (command.scope, command.name)
            self.limits.pop(scope, None)
            self.starts.pop(scope, None)


def _decoded(entry: Entry) -> Command | None:
    return command_of(entry)


def _scopes(oracle: JobOracle, job_id: str) -> list[tuple[str, str]]:
    job = oracle.machine.jobs[job_id]
    scopes = [("queue", job.queue)]
    if job.extra is not None and job.extra.group is not None:
        scopes.append(("group", job.extra.group))
    return scopes
