"""Claims ahead of free slots (docs/jobs.md "Claims and prefetch"): the replicated rules and the
worker that uses them.

The state machine: a claim's ``hold_ms`` lengthens every lease it hands out by that much (the
time the job may wait in the worker's buffer), a claim hands out at most
``limits.CLAIM_PAYLOAD_BYTES_MAX`` payload bytes (always one job), and ``Release`` gives back
only the lease its fence names, returning the job to pending in its old place with no attempt
counted.

The worker (``raftq.client.worker``), against a client that applies each command to a real
``JobStateMachine`` at the Trio clock's time (``MachineClient``; ``autojump_clock``, no real
sleeps): it claims ahead of its free slots once jobs run fast, never starts a buffered job
after its hold (it releases it instead), gives a buffered job its whole timeout from its start,
and releases what it holds when stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest
import trio

from raftq import limits
from raftq.app import App, JobContext
from raftq.client.worker import Worker
from raftq.errors import ConfigError
from raftq.jobs.commands import (
    Cancel,
    Claim,
    ClaimResult,
    Command,
    Done,
    Enqueue,
    ExpireLeases,
    Extend,
    ExtendResult,
    Lease,
    Outcome,
    Rejected,
    Release,
    ReleaseResult,
    Report,
    ReportResult,
    Result,
)
from raftq.jobs.job import JobState
from raftq.jobs.machine import JobStateMachine
from raftq.node.waiters import Waiter
from raftq.transport.wire import CommandReply, SubmitCommand
from tests.node_helpers import RawClient, running_cluster, wait_for_leader
from tests.test_jobs_commands import Log, done, rejected, spec

# --- the state machine ----------------------------------------------------------------------------


def release(log: Log, *leases: Lease, now_ms: int = 0) -> tuple[Done | Rejected, ...]:
    result = log.apply(
        Release(
            now_ms=now_ms,
            job_ids=tuple(lease.job_id for lease in leases),
            fences=tuple(lease.fence for lease in leases),
        )
    )
    assert isinstance(result, ReleaseResult)
    return result.outcomes


def test_a_claim_with_a_hold_leases_for_the_hold_plus_the_timeout() -> None:
    log = Log()
    log.enqueue(spec(id="a", timeout_ms=4_000), spec(id="b", timeout_ms=9_000))
    held = log.claim(now_ms=1_000, max_jobs=1, hold_ms=2_500)
    assert [(lease.job_id, lease.expires_ms) for lease in held] == [("a", 7_500)]
    assert log.view("a").lease_expires_ms == 7_500
    unheld = log.claim_one(now_ms=1_000)
    assert (unheld.job_id, unheld.expires_ms) == ("b", 10_000)
    # The lease holds through the hold and the whole timeout, and not a millisecond longer.
    assert log.count(_expire(7_499)) == 0
    assert log.state("a") == "running"
    assert log.count(_expire(7_500)) == 1
    assert log.state("a") == "failed"


def _expire(now_ms: int) -> Command:
    return ExpireLeases(now_ms=now_ms)


def test_a_hold_past_its_bound_is_refused_when_the_claim_is_built() -> None:
    with pytest.raises(ValueError, match="hold_ms"):
        Claim(now_ms=0, claimer="w", hold_ms=limits.CLAIM_HOLD_MS_MAX + 1)
    with pytest.raises(ValueError, match="hold_ms"):
        Claim(now_ms=0, claimer="w", hold_ms=-1)


def test_a_claim_hands_out_at_most_its_payload_bytes_but_always_one_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits, "CLAIM_PAYLOAD_BYTES_MAX", 10)
    log = Log()
    log.enqueue(*(spec(id=f"j{n}", payload=b"1234") for n in range(4)))
    log.enqueue(spec(id="big", payload=b"x" * 50))
    assert [lease.job_id for lease in log.claim(max_jobs=10)] == ["j0", "j1"]  # 8 bytes; 12 > 10
    assert [lease.job_id for lease in log.claim(max_jobs=10)] == ["j2", "j3"]
    assert [lease.job_id for lease in log.claim(max_jobs=10)] == ["big"]  # alone past the bound


def test_release_returns_the_job_to_pending_in_its_old_place_with_no_attempt_counted() -> None:
    log = Log()
    log.enqueue(spec(id="a"), spec(id="b"), spec(id="c"))
    first, second = log.claim(now_ms=100, max_jobs=2, hold_ms=1_000)
    log.enqueue(spec(id="d"), now_ms=200)
    [outcome] = release(log, second, now_ms=300)
    done(outcome, "pending")
    view = log.view("b")
    assert (view.state, view.attempts) == ("pending", 0)
    assert view.history[-1].event == "released"
    assert view.history[-1].attempt == 1  # the attempt undone
    # b is back before c and d: its run_at and enqueue order are those of its enqueue.
    assert log.claimed_ids(now_ms=400, max_jobs=3) == ["b", "c", "d"]
    assert log.view("b").attempts == 1
    assert log.view("a").state == "running"  # the other lease of the same claim is untouched
    assert first.job_id == "a"


def test_a_release_with_a_stale_fence_is_rejected_and_changes_nothing() -> None:
    log = Log()
    [job_id] = log.enqueue(spec(timeout_ms=1_000))
    stale = log.claim_one(now_ms=0, hold_ms=1_000)
    assert log.count(_expire(2_000)) == 1  # the lease expired: a failed attempt
    current = log.claim_one(now_ms=log.view(job_id).run_at_ms)
    assert current.fence > stale.fence
    before = log.view(job_id)
    [outcome] = release(log, stale, now_ms=before.run_at_ms)
    rejected(outcome, "lease_lost")
    after = log.view(job_id)
    assert (after.state, after.attempts, after.fence) == ("running", 2, current.fence)
    assert after.history == before.history
    # Nor can a lease that was already released be released twice.
    [again] = release(log, current)
    done(again, "pending")
    [twice] = release(log, current)
    rejected(twice, "lease_lost")
    assert log.view(job_id).attempts == 1


def test_release_of_a_job_with_a_cancel_waiting_cancels_it() -> None:
    log = Log()
    [job_id] = log.enqueue(spec())
    lease = log.claim_one(hold_ms=1_000)
    done(log.single(Cancel(now_ms=0, job_id=job_id)), "running")
    [outcome] = release(log, lease)
    done(outcome, "cancelled")
    assert log.state(job_id) == "cancelled"


def test_a_snapshot_after_a_release_restores_to_the_same_claims() -> None:
    log = Log()
    log.enqueue(*(spec(id=f"j{n}", priority=n % 2) for n in range(6)))
    leases = log.claim(now_ms=10, max_jobs=4, hold_ms=500)
    release(log, leases[1], leases[3], now_ms=20)
    restored = Log(JobStateMachine.restore(log.machine.snapshot()), index=log.index)
    assert restored.machine.digest() == log.machine.digest()
    assert restored.claimed_ids(now_ms=30, max_jobs=6) == log.claimed_ids(now_ms=30, max_jobs=6)
    assert restored.machine.digest() == log.machine.digest()


# --- the worker -----------------------------------------------------------------------------------


@attrs.define(eq=False)
class MachineClient:
    """What a ``Worker`` needs of a ``Client``, served by a real ``JobStateMachine`` at the Trio
    clock's time (one log index per command), ``round_trip_s`` per request."""

    machine: JobStateMachine = attrs.field(factory=JobStateMachine)
    round_trip_s: float = 0.005
    index: int = 0
    claims: list[Claim] = attrs.field(factory=list)
    releases: list[Release] = attrs.field(factory=list)

    def now_ms(self) -> int:
        return int(trio.current_time() * 1000)

    def apply(self, command: Command) -> Result:
        self.index += 1
        return self.machine.apply(self.index, command)

    def enqueue(self, count: int, **fields: object) -> None:
        specs = tuple(spec(type="work", **fields) for _ in range(count))  # type: ignore[arg-type]
        self.apply(Enqueue(now_ms=self.now_ms(), jobs=specs))

    async def claim(
        self,
        claimer: str,
        types: Sequence[str],
        queues: Sequence[str],
        max_jobs: int,
        hold_ms: int,
    ) -> tuple[Lease, ...]:
        await trio.sleep(self.round_trip_s / 2)
        command = Claim(
            now_ms=self.now_ms(),
            claimer=claimer,
            types=tuple(types),
            queues=tuple(queues),
            max_jobs=max_jobs,
            hold_ms=hold_ms,
        )
        self.claims.append(command)
        result = self.apply(command)
        assert isinstance(result, ClaimResult)
        await trio.sleep(self.round_trip_s / 2)
        return result.leases

    async def report(self, outcomes: Sequence[Outcome]) -> tuple[str | None, ...]:
        await trio.sleep(self.round_trip_s)
        result = self.apply(Report(now_ms=self.now_ms(), outcomes=tuple(outcomes)))
        assert isinstance(result, ReportResult)
        return tuple(each.state if isinstance(each, Done) else None for each in result.outcomes)

    async def extend(
        self, leases: Sequence[tuple[str, int]], until_ms: int
    ) -> tuple[str | None, ...]:
        await trio.sleep(self.round_trip_s)
        command = Extend(
            now_ms=self.now_ms(),
            job_ids=tuple(job_id for job_id, _ in leases),
            fences=tuple(fence for _, fence in leases),
            until_ms=until_ms,
        )
        result = self.apply(command)
        assert isinstance(result, ExtendResult)
        return tuple(each.state if isinstance(each, Done) else None for each in result.outcomes)

    async def release(self, leases: Sequence[tuple[str, int]]) -> tuple[str | None, ...]:
        await trio.sleep(self.round_trip_s)
        command = Release(
            now_ms=self.now_ms(),
            job_ids=tuple(job_id for job_id, _ in leases),
            fences=tuple(fence for _, fence in leases),
        )
        self.releases.append(command)
        result = self.apply(command)
        assert isinstance(result, ReleaseResult)
        return tuple(each.state if isinstance(each, Done) else None for each in result.outcomes)

    def count(self, state: JobState) -> int:
        return sum(1 for job in self.machine.jobs.values() if job.state is state)


@attrs.define(eq=False)
class Starts:
    """When each job's handler started (Trio time), and with what lease left."""

    at: dict[str, float] = attrs.field(factory=dict)
    lease_left_ms: dict[str, int] = attrs.field(factory=dict)


def work_app(client: MachineClient, starts: Starts, run_s: float | dict[str, float]) -> App:
    app = App(builtins=False)

    @app.handler("work")
    async def work(job: JobContext) -> object:
        starts.at[job.id] = trio.current_time()
        run = client.machine.jobs[job.id].run
        assert run is not None
        starts.lease_left_ms[job.id] = run.lease_expires_ms - client.now_ms()
        await trio.sleep(run_s if isinstance(run_s, float) else run_s.get(job.id, 0.0))
        return None

    return app


async def run_until(worker: Worker, done_when: object, seconds: float) -> None:
    """Run ``worker`` until ``done_when()`` (checked every 10 ms of virtual time), then stop it
    and wait for it; fail after ``seconds`` of virtual time."""
    assert callable(done_when)
    with trio.fail_after(seconds):
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            for _ in range(round(seconds / 0.01)):
                if done_when():
                    break
                await trio.sleep(0.01)
            worker.stop()


async def test_the_worker_claims_ahead_of_its_free_slots_once_jobs_run_fast(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = MachineClient()
    client.enqueue(2_000)
    starts = Starts()
    worker = Worker(client, work_app(client, starts, 0.0), concurrency=2, poll_max_s=0.02)
    await run_until(worker, lambda: client.count(JobState.SUCCEEDED) == 2_000, 60)
    assert len(starts.at) == 2_000
    sizes = [claim.max_jobs for claim in client.claims]
    assert sizes[0] == 2  # nothing known yet: the free slots only, no hold asked
    assert client.claims[0].hold_ms == 0
    assert max(sizes) > 2  # then ahead of them, with a hold
    assert all(
        claim.hold_ms == limits.WORKER_HOLD_MS for claim in client.claims if claim.max_jobs > 2
    )
    assert max(sizes) <= 2 + limits.WORKER_PREFETCH_JOBS_MAX
    # One claim served many jobs: far fewer claims than jobs.
    assert len(client.claims) < 2_000 / 20
    assert worker.statistics.released == 0


async def test_a_buffered_job_never_starts_after_its_hold_it_is_released(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Fast jobs make the worker claim ahead; then two long ones take both slots, and what is
    buffered behind them must not wait for them: each is released at its hold, and runs once
    a slot frees (here: by the same worker, claimed again), under a new lease."""
    client = MachineClient()
    client.enqueue(200)
    client.enqueue(2, id="", priority=0)
    starts = Starts()
    long_s = 3 * limits.WORKER_HOLD_MS / 1000
    run_s: dict[str, float] = {}
    app = work_app(client, starts, run_s)
    worker = Worker(app=app, client=client, concurrency=2, poll_max_s=0.02)

    def make_some_long() -> bool:
        # Once the worker claims ahead, the next two jobs to start take 3 holds each.
        if len(starts.at) >= 100 and not run_s:
            pending = [
                job.id
                for job in client.machine.jobs.values()
                if job.state is JobState.RUNNING and job.id not in starts.at
            ]
            run_s.update(dict.fromkeys(pending[:2], long_s))
        return client.count(JobState.SUCCEEDED) == 202

    await run_until(worker, make_some_long, 120)
    assert worker.statistics.released > 0
    assert client.releases
    for job_id, started_at in starts.at.items():
        history = client.machine.jobs[job_id].run.history  # type: ignore[union-attr]
        claimed = [event for event in history if event[1] == "claimed"]
        # Started under its last lease, within the hold of the claim that handed it out.
        last_claim_ms = claimed[-1][0]
        assert started_at * 1000 - last_claim_ms <= limits.WORKER_HOLD_MS + 10, job_id
        # And no attempt was counted for the released leases.
        assert client.machine.jobs[job_id].attempts == 1, job_id


async def test_a_buffered_job_has_its_whole_timeout_from_its_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = MachineClient()
    client.enqueue(400, timeout_ms=2_000)
    starts = Starts()
    worker = Worker(client, work_app(client, starts, 0.002), concurrency=1, poll_max_s=0.02)
    await run_until(worker, lambda: client.count(JobState.SUCCEEDED) == 400, 120)
    assert worker.statistics.timed_out == 0
    held = [claim for claim in client.claims if claim.hold_ms]
    assert held, "the worker never claimed ahead"
    # Every job started with at least its timeout left on its lease (minus one round trip).
    assert min(starts.lease_left_ms.values()) >= 2_000 - 10


async def test_a_stopped_worker_releases_what_it_holds_unstarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = MachineClient()
    client.enqueue(1_000)
    starts = Starts()
    gate = trio.Event()
    app = App(builtins=False)

    @app.handler("work")
    async def work(job: JobContext) -> object:
        starts.at[job.id] = trio.current_time()
        if len(starts.at) >= 300:
            await gate.wait()  # the slots stay busy: what was claimed ahead stays buffered
        return None

    worker = Worker(client, app, concurrency=2, poll_max_s=0.02, grace_s=1.0)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            for _ in range(60_000):
                if len(starts.at) >= 301:
                    break
                await trio.sleep(0.001)
            assert worker.statistics.buffered > 0
            worker.stop()
            gate.set()
    assert client.releases
    released = {job_id for command in client.releases for job_id in command.job_ids}
    assert not released & set(starts.at)  # only jobs that never started
    assert worker.statistics.buffered == 0
    running = client.count(JobState.RUNNING)
    assert running == 0, "a job the worker held was neither run, reported nor released"
    for job_id in released:
        job = client.machine.jobs[job_id]
        assert (job.state, job.attempts) == (JobState.PENDING, 0)


async def test_a_worker_with_prefetch_zero_claims_only_for_free_slots(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = MachineClient()
    client.enqueue(100)
    starts = Starts()
    worker = Worker(
        client, work_app(client, starts, 0.0), concurrency=4, poll_max_s=0.02, prefetch=0
    )
    await run_until(worker, lambda: client.count(JobState.SUCCEEDED) == 100, 60)
    assert all(claim.max_jobs <= 4 and claim.hold_ms == 0 for claim in client.claims)


def test_worker_prefetch_and_hold_are_bounded() -> None:
    client = MachineClient()
    app = App()
    with pytest.raises(ConfigError, match="prefetch"):
        Worker(client, app, prefetch=limits.WORKER_PREFETCH_JOBS_MAX + 1)
    with pytest.raises(ConfigError, match="hold_ms"):
        Worker(client, app, hold_ms=0)
    with pytest.raises(ConfigError, match="hold_ms"):
        Worker(client, app, hold_ms=limits.CLAIM_HOLD_MS_MAX + 1)


# --- the leader: a waiting claim rides with the enqueue that feeds it ----------------------------


async def test_an_enqueue_proposes_the_waiting_claim_in_its_own_round(tmp_path: Path) -> None:
    """A claim waiting on the leader (long poll) for work is proposed right behind the enqueue
    of a job it takes, before that enqueue is even committed: both in one Raft round, so the
    claim costs no round of its own. An enqueue of jobs the claim would not take (another type,
    a delay) leaves it waiting."""
    async with running_cluster(tmp_path, 1, expire_interval_ms=600_000) as nodes:
        (node,) = nodes.values()
        await wait_for_leader(nodes)
        proposals: list[tuple[str, int]] = []
        propose = node.raft.propose

        def recording(command: Command) -> Waiter:
            proposals.append((type(command).__name__, node.applier.applied_index))
            return propose(command)

        node.raft.propose = recording  # type: ignore[method-assign]
        answer: list[object] = []

        async def idle_worker() -> None:
            async with RawClient.connect(node.config.address) as client:
                claim = Claim(now_ms=0, claimer="w", types=("work",), max_jobs=5)
                answer.append(await client.call(SubmitCommand(command=claim)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(idle_worker)
            await trio.sleep(0.2)  # waiting
            async with RawClient.connect(node.config.address) as client:
                for other in (spec(type="other"), spec(type="work", delay_ms=60_000)):
                    await client.call(SubmitCommand(command=Enqueue(now_ms=0, jobs=(other,))))
                assert not answer  # still waiting: neither job is one it takes now
                proposals.clear()
                await client.call(
                    SubmitCommand(command=Enqueue(now_ms=0, jobs=(spec(type="work"),)))
                )
        [(first, applied_then), (second, applied_also)] = proposals
        assert (first, second) == ("Enqueue", "Claim")
        assert applied_then == applied_also  # nothing applied in between: the same round
        [reply] = answer
        assert isinstance(reply, CommandReply)
        assert isinstance(reply.result, ClaimResult)
        assert len(reply.result.leases) == 1


async def test_a_report_on_the_leader_rides_with_the_next_proposal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's report waits on the leader (``limits.REPORT_RIDE_MS`` at most) for the next
    proposal and goes in its Raft round; alone, it is proposed when the wait ends."""
    async with running_cluster(tmp_path, 1, expire_interval_ms=600_000) as nodes:
        (node,) = nodes.values()
        await wait_for_leader(nodes)
        proposals: list[tuple[str, int]] = []
        propose = node.raft.propose

        def recording(command: Command) -> Waiter:
            proposals.append((type(command).__name__, node.applier.applied_index))
            return propose(command)

        async with (
            RawClient.connect(node.config.address) as worker,
            RawClient.connect(node.config.address) as producer,
        ):
            jobs = (spec(type="work"), spec(type="work"))
            await producer.call(SubmitCommand(command=Enqueue(now_ms=0, jobs=jobs)))
            claim = Claim(now_ms=0, claimer="w", max_jobs=2)
            reply = await worker.call(SubmitCommand(command=claim))
            assert isinstance(reply, CommandReply)
            assert isinstance(reply.result, ClaimResult)
            first, second = reply.result.leases
            node.raft.propose = recording  # type: ignore[method-assign]

            def report(lease: Lease) -> SubmitCommand:
                outcome = Outcome(job_id=lease.job_id, fence=lease.fence, succeeded=True)
                return SubmitCommand(command=Report(now_ms=0, outcomes=(outcome,)))

            monkeypatch.setattr(limits, "REPORT_RIDE_MS", 60_000)  # waits for the enqueue
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker.call, report(first))
                for _ in range(1_000):  # until the report waits on the leader (10 s at most)
                    if node.client_service._riders:
                        break
                    await trio.sleep(0.01)
                assert proposals == []
                other = Enqueue(now_ms=0, jobs=(spec(type="other"),))
                await producer.call(SubmitCommand(command=other))
            [(enqueue, applied_then), (riding, applied_also)] = proposals
            assert (enqueue, riding) == ("Enqueue", "Report")
            assert applied_then == applied_also  # the same round
            proposals.clear()
            monkeypatch.setattr(limits, "REPORT_RIDE_MS", 50)
            began = trio.current_time()
            await worker.call(report(second))  # alone: proposed once the wait is over
            assert [name for name, _ in proposals] == ["Report"]
            assert trio.current_time() - began >= 0.05
        assert node.applier.machine.jobs[second.job_id].state is JobState.SUCCEEDED
        assert node.applier.machine.jobs[first.job_id].state is JobState.SUCCEEDED
