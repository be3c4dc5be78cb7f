"""The rules of ``sim.checkers_claims`` fire on what they forbid and stay quiet on what the job
machine and the worker do (committed entries fed as the simulator feeds them; the worker side
in virtual time). The forbidden logs are made by planting each mutant's bug for one command."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from raftq import codec
from raftq.jobs.commands import (
    Claim,
    Command,
    Enqueue,
    ExpireLeases,
    JobSpec,
    Lease,
    Outcome,
    Release,
)
from raftq.raft.types import Entry, EntryKind
from sim.checkers import JobOracle, Violation
from sim.checkers_claims import ClaimRules


class _Log:
    def __init__(self) -> None:
        self.oracle = JobOracle()
        self.rules = ClaimRules()
        self.index = 0

    def commit(self, command: Command) -> None:
        self.index += 1
        entry = Entry(
            index=self.index, term=1, kind=EntryKind.COMMAND, data=codec.encode(command, Command)
        )
        self.oracle.apply(entry)
        self.rules.observe(entry, self.oracle)


def _job() -> JobSpec:
    return JobSpec(
        id="job-1",
        type="sim",
        payload=b"",
        queue="default",
        priority=0,
        delay_ms=0,
        max_attempts=3,
        timeout_ms=1_000,
        key="",
    )


def _release(fence: int, now_ms: int) -> Release:
    return Release(now_ms=now_ms, job_ids=("job-1",), fences=(fence,))


def test_held_claims_and_releases_by_the_rules_pass() -> None:
    log = _Log()
    log.commit(Enqueue(now_ms=0, jobs=(_job(),)))
    log.commit(Claim(now_ms=10, claimer="w1", hold_ms=500))
    first = log.index
    log.commit(_release(first, 20))
    log.commit(Claim(now_ms=30, claimer="w2", hold_ms=500))
    log.commit(_release(first, 40))  # stale: rejected by the machine, and changes nothing
    assert log.oracle.machine.jobs["job-1"].run.fence == log.index - 1  # type: ignore[union-attr]
    # A release that ends no lease is not even decoded: only the first one was checked.
    assert (log.rules.holds_checked, log.rules.releases_checked) == (2, 1)


def test_a_lease_shorter_than_its_hold_plus_timeout_is_a_violation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ``claim_ignores_hold`` bug: the lease runs for the timeout alone."""
    log = _Log()
    log.commit(Enqueue(now_ms=0, jobs=(_job(),)))
    machine = log.oracle.machine
    lease = machine._lease

    def ignoring_hold(index: int, job: object, claimer: str, hold_ms: int) -> Lease:
        return lease(index, job, claimer, 0)  # type: ignore[arg-type]

    monkeypatch.setattr(machine, "_lease", ignoring_hold)
    with pytest.raises(Violation, match="a lease covers its hold and its timeout"):
        log.commit(Claim(now_ms=10, claimer="w1", hold_ms=500))


def test_a_release_that_ends_another_fences_lease_is_a_violation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ``release_stale_fence`` bug: a release of an expired lease frees its successor."""
    log = _Log()
    log.commit(Enqueue(now_ms=0, jobs=(_job(),)))
    log.commit(Claim(now_ms=10, claimer="w1", hold_ms=500))
    stale = log.index
    log.commit(ExpireLeases(now_ms=2_000))
    log.commit(Claim(now_ms=5_000, claimer="w2"))
    machine = log.oracle.machine
    held = machine._held

    def any_fence(job_id: str, fence: int) -> object:
        run = machine.jobs[job_id].run
        return held(job_id, run.fence if run is not None else fence)

    monkeypatch.setattr(machine, "_held", any_fence)
    with pytest.raises(Violation, match="a release ends only the lease its fence names"):
        log.commit(_release(stale, 5_100))


def test_a_release_that_counts_an_attempt_is_a_violation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = _Log()
    log.commit(Enqueue(now_ms=0, jobs=(_job(),)))
    log.commit(Claim(now_ms=10, claimer="w1", hold_ms=500))
    fence = log.index
    job = log.oracle.machine.jobs["job-1"]
    make_ready = log.oracle.machine._make_ready

    def counting(released: object) -> None:
        job.attempts += 1  # the bug: the attempt stays counted
        make_ready(released)  # type: ignore[arg-type]

    monkeypatch.setattr(log.oracle.machine, "_make_ready", counting)
    with pytest.raises(Violation, match="a released lease counts no attempt"):
        log.commit(_release(fence, 20))


class _Client:
    """Answers a claim with one lease; the rest is never called here."""

    async def claim(
        self, claimer: str, types: Sequence[str], queues: Sequence[str], max_jobs: int, hold_ms: int
    ) -> tuple[Lease, ...]:
        lease = Lease(
            job_id="job-1",
            type="sim",
            queue="default",
            payload=b"",
            attempt=1,
            fence=7,
            expires_ms=0,
            timeout_ms=1_000,
        )
        return (lease,)

    async def report(self, outcomes: Sequence[Outcome]) -> tuple[str | None, ...]:
        raise AssertionError("not called")

    async def extend(
        self, leases: Sequence[tuple[str, int]], until_ms: int
    ) -> tuple[str | None, ...]:
        raise AssertionError("not called")

    async def release(self, leases: Sequence[tuple[str, int]]) -> tuple[str | None, ...]:
        raise AssertionError("not called")


@pytest.mark.parametrize(("waited_s", "violation"), [(0.5, False), (0.5001, True)])
async def test_a_job_started_after_its_hold_is_a_violation(
    autojump_clock: trio.testing.MockClock, waited_s: float, violation: bool
) -> None:
    """The ``prefetch_past_hold`` bug: a worker starts a buffered job after its hold."""
    rules = ClaimRules()
    client = rules.watch(_Client())
    await client.claim("w1", (), (), 2, 500)
    await trio.sleep(waited_s)
    rules.started("job-1", 7)
    assert rules.starts_checked == 1
    if violation:
        with pytest.raises(Violation, match="a prefetched job starts within its hold"):
            rules.check()
    else:
        rules.check()
