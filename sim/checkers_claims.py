"""The rules of claims ahead of free slots (docs/jobs.md "Claims and prefetch"), checked on the
committed log and on the workers:

- a lease covers its claim's hold and then the job's whole timeout: a job leased by a Claim
  with ``hold_ms`` expires at ``now + hold_ms + timeout_ms``, no sooner (else a prefetched job
  could start on a lease about to expire, and run beside its next attempt);
- a Release ends only the lease whose fence it carries: a stale fence changes nothing;
- a released lease counts no attempt: the job's attempts go back to what they were before
  the claim;
- a worker starts a prefetched job only within its hold: no later than ``hold_ms`` after the
  claim's answer reached it (checked on every worker through ``watch``, in virtual time).

``observe`` runs right after the oracle applies each entry (like ``checkers_more``): it decodes
only Claim and Release entries. ``check`` raises what the workers' side found.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence

import attrs
import trio

from raftq.client.worker import WorkerClient
from raftq.jobs.commands import Claim, Lease, Outcome, Release
from raftq.raft.types import Entry, EntryKind
from sim.checkers import JobOracle, Violation, command_of

RECEIVED_KEPT = 100_000
"""Leases received by workers and not started yet, remembered for the start check (the oldest
forgotten first: those of crashed workers are never started)."""


class ClaimRules:
    def __init__(self) -> None:
        self._fences: dict[str, int] = {}
        """Job id -> the fence of the lease it held after the previous entry."""
        self.received: collections.OrderedDict[tuple[str, int], tuple[float, float]] = (
            collections.OrderedDict()
        )
        """(job id, fence) -> (virtual time its claim's answer reached a worker, hold in s)."""
        self.found: Violation | None = None
        self.on_claimed: Callable[[str, tuple[Lease, ...]], None] | None = None
        """Called with the claimer and its leases as a claim's answer reaches a worker, before
        the worker sees them (the ``late_release`` schedule stops a worker right there)."""
        self.releases_checked = 0
        self.holds_checked = 0
        self.starts_checked = 0

    # --- the committed log ----------------------------------------------------------------------

    def observe(self, entry: Entry, oracle: JobOracle) -> None:
        """Call right after ``oracle.apply(entry)``."""
        before = self._fences
        self._fences = {job_id: held.fence for job_id, held in oracle.held.items()}
        if entry.kind is not EntryKind.COMMAND:
            return
        leased_here = [job_id for job_id, fence in self._fences.items() if fence == entry.index]
        ended = [job_id for job_id in before if self._fences.get(job_id) != before[job_id]]
        if not leased_here and not ended:
            return  # neither a claim nor a release did anything here: nothing to decode
        command = command_of(entry)
        if isinstance(command, Claim):
            self._check_hold(entry.index, command, leased_here, oracle)
        if isinstance(command, Release):
            self._check_release(entry.index, command, before, oracle)

    def _check_hold(self, index: int, claim: Claim, leased: list[str], oracle: JobOracle) -> None:
        machine = oracle.machine
        for job_id in leased:
            job = machine.jobs[job_id]
            assert job.run is not None
            self.holds_checked += 1
            least_ms = machine.now_ms + claim.hold_ms + job.timeout_ms
            if job.run.lease_expires_ms < least_ms:
                raise Violation(
                    "a lease covers its hold and its timeout",
                    f"index {index}: {job_id} leased until {job.run.lease_expires_ms} ms at "
                    f"{machine.now_ms} ms with a hold of {claim.hold_ms} ms and a timeout of "
                    f"{job.timeout_ms} ms",
                )

    def _check_release(
        self, index: int, release: Release, before: dict[str, int], oracle: JobOracle
    ) -> None:
        for job_id, fence in zip(release.job_ids, release.fences, strict=True):
            self.releases_checked += 1
            job = oracle.machine.jobs.get(job_id)
            if job is None or job.run is None:
                continue
            released_here = [
                event
                for event in job.run.history
                if event[5] == index and event[1] == "released" and event[4] == fence
            ]
            if before.get(job_id) != fence:
                if released_here or self._fences.get(job_id) != before.get(job_id):
                    raise Violation(
                        "a release ends only the lease its fence names",
                        f"index {index}: a release of {job_id} with fence {fence} ended the "
                        f"lease {before.get(job_id)}",
                    )
                continue
            for event in released_here:
                if job.attempts != event[2] - 1:
                    raise Violation(
                        "a released lease counts no attempt",
                        f"index {index}: {job_id} released attempt {event[2]} and has "
                        f"{job.attempts} attempts",
                    )

    # --- the workers ----------------------------------------------------------------------------

    def watch(self, client: WorkerClient) -> WorkerClient:
        """``client`` for a worker, with every claim's answer timed."""
        return _WatchedClient(client, self)

    def started(self, job_id: str, fence: int) -> None:
        """A handler starts now (a worker's job, in virtual time)."""
        received = self.received.pop((job_id, fence), None)
        if received is None:
            return  # a lease forgotten (past RECEIVED_KEPT), or not claimed through ``watch``
        self.starts_checked += 1
        at_s, hold_s = received
        now = trio.current_time()
        if now > at_s + hold_s and self.found is None:
            self.found = Violation(
                "a prefetched job starts within its hold",
                f"{job_id} (fence {fence}) started {now - at_s:.3f} s after its claim reached "
                f"the worker; the hold was {hold_s:.3f} s",
            )

    def check(self) -> None:
        if self.found is not None:
            raise self.found


@attrs.define(eq=False)
class _WatchedClient:
    client: WorkerClient
    rules: ClaimRules

    async def claim(
        self,
        claimer: str,
        types: Sequence[str],
        queues: Sequence[str],
        max_jobs: int,
        hold_ms: int,
    ) -> tuple[Lease, ...]:
        leases = await self.client.claim(claimer, types, queues, max_jobs, hold_ms)
        now = trio.current_time()
        received = self.rules.received
        for lease in leases:
            received[(lease.job_id, lease.fence)] = (now, hold_ms / 1000)
        while len(received) > RECEIVED_KEPT:
            received.popitem(last=False)
        if leases and self.rules.on_claimed is not None:
            self.rules.on_claimed(claimer, leases)
        return leases

    async def report(self, outcomes: Sequence[Outcome]) -> tuple[str | None, ...]:
        return await self.client.report(outcomes)

    async def extend(
        self, leases: Sequence[tuple[str, int]], until_ms: int
    ) -> tuple[str | None, ...]:
        return await self.client.extend(leases, until_ms)

    async def release(self, leases: Sequence[tuple[str, int]]) -> tuple[str | None, ...]:
        return await self.client.release(leases)

    async def progress(self, values: Sequence[tuple[str, int, bytes]]) -> tuple[str | None, ...]:
        return await self.client.progress(values)
