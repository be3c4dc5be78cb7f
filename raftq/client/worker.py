"""A worker: claims jobs, runs their handlers, reports the outcomes.

Prefetch (docs/jobs.md "Claims"): a worker claims ahead of its free slots, as many jobs as it
started in the last quarter of ``limits.WORKER_HOLD_MS`` (at most
``limits.WORKER_PREFETCH_JOBS_MAX``), so one Claim entry serves many jobs and the next claim is
in flight while the buffer drains; a worker whose jobs are slow claims only for free slots. A
prefetched lease covers the time the job may wait in the buffer (``Claim.hold_ms``) plus its
timeout, so a job has its whole timeout when it starts; a job not started within the hold is
released (``Release``: back to pending, no attempt counted), and so is every buffered job on
``stop()``. Claims, releases and the buffer are the worker's alone: a node's in-process
workers are one ``Worker`` with ``--workers`` slots, so one claim serves all of them.

Leases (DESIGN.md "Job semantics"): a claim leases each job for its ``timeout_ms``. A handler
may run that long without a heartbeat; ``await job.heartbeat()`` renews the lease (one
``Extend``) and pushes the handler's own deadline along with it. A handler that passes its
deadline is cancelled and the attempt reported failed, a little before the lease would expire
on the cluster, so the report still counts. Leases are never renewed behind a handler's back:
a hung handler must not hold a job forever.

Outcomes go to one reporter task, which sends them as ``Report``s, one in flight at a time:
what finishes while a report travels rides in the next, so under load one log entry settles
many jobs. A job's slot is free once its outcome is queued (the queue holds ``concurrency``
outcomes; when reports back up, finishing jobs wait and claiming stops). Every outcome carries
the lease's fence; one refused means the lease expired and the job went to another worker:
that is the protocol working (at-least-once), not a crash. A report that cannot reach the
cluster is dropped with a log line: the leases then expire and the jobs run again.

Snoozes and progress (docs/handlers.md): ``raise raftq.Retry(delay_s=...)`` is reported like
any outcome, as a snooze (``Outcome.snooze_ms``), in the same batched reports, under the
lease's fence. ``await job.progress(value)`` only stores the job's latest value here; one task
sends every job's latest value in one ``Progress`` command, at once when it has none in flight,
then at most every ``limits.PROGRESS_INTERVAL_MS``: values in between are replaced, and the
value not yet sent when its attempt ends rides in the outcome's report.

Time comes from the event loop only. The cluster's clock appears only as the lease's
``expires_ms``, and renewals are computed relative to it (see ``_LeaseClock``).

The worker is AnyIO code: a remote worker runs its async handlers on the loop it was started
under (``raftq worker --loop asyncio|trio``), and a node's in-process workers on the node's
Trio loop. Sync handlers run in worker threads either way.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import math
import os
import random
import secrets
import socket
import time
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, Protocol

import anyio
import anyio.abc
import attrs
import trio
from anyio.streams.memory import MemoryObjectReceiveStream

from raftq import limits, tracing
from raftq.app import App, JobContext, JobFailed, Retry
from raftq.backoff import Backoff
from raftq.client.jobfile import decode_json, encode_json
from raftq.errors import ConfigError, LeaseLost, RaftqError
from raftq.jobs.commands import NOT_SNOOZED, Lease, Outcome

logger = logging.getLogger("raftq.worker")

POLL_MIN_S = 0.01
POLL_MAX_S = 0.1
"""With nothing to claim, the worker claims again after a doubling pause between these (with
jitter of 50-150%, ``raftq.backoff``). The pause can be short: the leader holds an empty claim
for up to ``limits.CLAIM_LONG_POLL_MS`` before answering, and answers it without a log entry,
so an idle worker costs about one request a second and a new job is picked up at once."""

GRACE_S = 30.0
"""On ``stop()``, running jobs get this long to finish before they are cancelled (and reported
failed, so they are retried at once instead of after their lease expires)."""

STOP_REPORT_S = 2.0
"""How long a cancelled job may spend reporting its failure while the worker shuts down."""

DEADLINE_MARGIN_MS_MAX = 1_000
"""The handler's deadline falls this much (or a tenth of the timeout, if less) before the
lease's, so that its failure report reaches the cluster while the lease still holds."""


class WorkerClient(Protocol):
    """What a worker needs from a ``Client``; a node's in-process workers can pass their own."""

    async def claim(
        self,
        claimer: str,
        types: Sequence[str],
        queues: Sequence[str],
        max_jobs: int,
        hold_ms: int,
    ) -> tuple[Lease, ...]: ...

    async def release(self, leases: Sequence[tuple[str, int]]) -> tuple[str | None, ...]: ...

    async def report(self, outcomes: Sequence[Outcome]) -> tuple[str | None, ...]: ...

    async def extend(
        self, leases: Sequence[tuple[str, int]], until_ms: int
    ) -> tuple[str | None, ...]: ...

    async def progress(
        self, values: Sequence[tuple[str, int, bytes]]
    ) -> tuple[str | None, ...]: ...


@attrs.define
class WorkerStatistics:
    claimed: int = 0
    claims: int = 0
    buffered: int = 0
    """Claimed and not started yet (prefetched)."""
    released: int = 0
    """Prefetched jobs given back unstarted (held past the hold, or on stop)."""
    succeeded: int = 0
    failed: int = 0
    snoozed: int = 0
    progress_sent: int = 0
    """Progress values sent (each job's latest when the ``Progress`` went out)."""
    timed_out: int = 0
    lease_lost: int = 0
    reports_lost: int = 0
    running: int = 0


class _LeaseClock:
    """One job's lease in the event loop's time. The cluster's now is estimated as the lease's
    start (``expires_ms - hold_ms - timeout_ms``) plus the time elapsed since the claim
    answered: a slight underestimate (by the round trip), so renewals never overshoot. The
    handler's deadline counts from when it starts (``started``), which is within the hold."""

    def __init__(
        self, lease: Lease, claimed_at: float, hold_ms: int, scope: _DeadlineScope
    ) -> None:
        self.lease = lease
        self.claimed_at = claimed_at
        self.hold_ms = hold_ms
        self.start_by = claimed_at + hold_ms / 1000
        """The job must start by then, or be released: later, its lease would not cover
        its whole timeout."""
        margin_ms = min(DEADLINE_MARGIN_MS_MAX, lease.timeout_ms // 10)
        self.run_s = max(lease.timeout_ms - margin_ms, 1) / 1000
        self.scope = scope

    def started(self, now: float) -> None:
        assert now <= self.start_by, (now, self.start_by)
        self.scope.deadline = now + self.run_s

    def renewal_until_ms(self) -> int:
        elapsed_ms = round((anyio.current_time() - self.claimed_at) * 1000)
        return self.lease.expires_ms - self.hold_ms + elapsed_ms

    def renewed(self) -> None:
        self.scope.deadline = anyio.current_time() + self.run_s


def default_claimer_id() -> str:
    """host-pid-random: unique per process, and says where the job ran (job history)."""
    name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    return name[-limits.NAME_CHARS_MAX :]


class Worker:
    """Runs ``app``'s handlers for jobs it claims through ``client``, ``concurrency`` at a
    time, from ``queues`` (empty: all). ``run`` until ``stop()``."""

    def __init__(
        self,
        client: WorkerClient,
        app: App,
        *,
        concurrency: int = 8,
        queues: Sequence[str] = (),
        claimer_id: str | None = None,
        grace_s: float = GRACE_S,
        poll_max_s: float = POLL_MAX_S,
        rng: random.Random | None = None,
        prefetch: int = limits.WORKER_PREFETCH_JOBS_MAX,
        hold_ms: int = limits.WORKER_HOLD_MS,
    ) -> None:
        if isinstance(concurrency, bool) or not 0 < concurrency <= limits.CLAIM_JOBS_MAX:
            raise ConfigError(f"concurrency must be from 1 to {limits.CLAIM_JOBS_MAX}")
        if isinstance(prefetch, bool) or not 0 <= prefetch <= limits.WORKER_PREFETCH_JOBS_MAX:
            raise ConfigError(f"prefetch must be from 0 to {limits.WORKER_PREFETCH_JOBS_MAX}")
        if isinstance(hold_ms, bool) or not 0 < hold_ms <= limits.CLAIM_HOLD_MS_MAX:
            raise ConfigError(f"hold_ms must be from 1 to {limits.CLAIM_HOLD_MS_MAX}")
        if not app.types:
            raise ConfigError("the app has no handlers: a worker would claim every type")
        self.claimer_id = claimer_id or default_claimer_id()
        self.statistics = WorkerStatistics()
        self._client = client
        self._app = app
        self._concurrency = concurrency
        self._prefetch = prefetch
        self._hold_ms = hold_ms
        self._buffer: collections.deque[_LeaseClock] = collections.deque()
        self._jobs: _JobTasks | None = None
        # Jobs started in the current and the previous window of ``hold_ms``: the pace that
        # sizes how far ahead to claim.
        self._window_end = 0.0
        self._started_now = 0
        self._started_before = 0
        self._queues = tuple(queues)
        self._grace_s = grace_s
        self._poll_backoff = Backoff(min_s=min(POLL_MIN_S, poll_max_s), max_s=poll_max_s)
        self._threads = anyio.CapacityLimiter(concurrency)
        self._stopping = False
        self._wake = anyio.Event()
        self._all_done = anyio.Event()
        self._rng = rng or random.Random(secrets.randbits(64))  # poll jitter only
        # Finished jobs' outcomes wait here for the reporter; full, a finishing job waits too.
        # Room for every job the worker may hold: while one report travels, a whole claim's
        # worth of jobs can finish and ride in the next.
        self._outcomes, self._to_report = anyio.create_memory_object_stream[Outcome](
            concurrency + prefetch
        )
        # Each running job's latest unsent progress, (fence, JSON): at most one per job held.
        self._progress: dict[str, tuple[int, bytes]] = {}
        # Each traced job whose outcome is not reported yet: its lease and its run span's
        # context, which the report's span joins (raftq.tracing; empty without OpenTelemetry).
        self._traced: dict[str, tuple[Lease, Any]] = {}
        self._progress_wake = anyio.Event()
        self._progress_closing = anyio.Event()
        self._reporting: anyio.abc.TaskGroup | None = None
        self._progress_sender = False
        """Started at the first progress value only: a worker whose handlers report none runs
        exactly the tasks it ran before progress existed (the simulator's seeds replay)."""

    def _ahead(self) -> int:
        """How many jobs to hold beyond the free slots: those that start within a quarter of
        the hold at the pace of the last hold window (none while jobs are slow), capped."""
        now = anyio.current_time()
        window_s = self._hold_ms / 1000
        if now >= self._window_end:
            recent = now < self._window_end + window_s
            self._started_before = self._started_now if recent else 0
            self._started_now = 0
            self._window_end = now + window_s
        return min(self._prefetch, max(self._started_now, self._started_before) // 4)

    def _claim_size(self) -> tuple[int, int]:
        """(jobs to claim now, hold_ms to ask for), or (0, 0) while enough are held. A claim
        waits until a quarter of what the worker holds at most is missing (one job if idle):
        every claim is a log entry."""
        running, buffered = self.statistics.running, len(self._buffer)
        free = self._concurrency - running
        ahead = self._ahead()
        wanted = min(free + ahead - buffered, limits.CLAIM_JOBS_MAX)
        least = 1 if running + buffered == 0 else max(1, (self._concurrency + ahead) // 4)
        if wanted < least:
            return 0, 0
        # Only jobs beyond the free slots wait in the buffer: only then does the lease need
        # to cover a wait.
        return wanted, self._hold_ms if wanted > free else 0

    def stop(self) -> None:
        """Stop claiming; running jobs get ``grace_s`` to finish. ``run`` then returns."""
        self._stopping = True
        self._wake.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as reporting:
            reporting.start_soon(self._report_outcomes, self._to_report)
            self._reporting = reporting  # the progress sender starts there at the first value
            async with self._outcomes, _open_job_tasks() as jobs:
                self._jobs = jobs
                task_status.started()
                logger.info("worker started claimer=%s types=%s", self.claimer_id, self._app.types)
                await self._claim_until_stopped()
                # Stopped: what never started goes back at once, not when its lease expires.
                with anyio.move_on_after(STOP_REPORT_S):
                    await self._release(self._take_buffered(everything=True))
                if self.statistics.running:
                    logger.info("worker stopping running=%d", self.statistics.running)
                    with anyio.move_on_after(self._grace_s):
                        await self._all_done.wait()
                jobs.cancel()  # past the grace period: cancel what still runs
            self._progress_closing.set()
            self._progress_wake.set()
            # ``outcomes`` is closed: the reporter sends what is left, then returns.
        logger.info("worker stopped claimer=%s", self.claimer_id)

    async def _claim_until_stopped(self) -> None:
        polls = self._poll_backoff.delays(self._rng)
        jobs = self._jobs
        assert jobs is not None
        while not self._stopping:
            self._wake = anyio.Event()
            self._start_buffered(anyio.current_time())
            overdue = self._take_buffered(everything=False)
            if overdue:
                await self._release(overdue)
                continue
            wanted, hold_ms = self._claim_size()
            if not wanted:
                wake_at = self._buffer[0].start_by if self._buffer else math.inf
                with anyio.move_on_at(wake_at):
                    await self._wake.wait()  # a job finished, one came due for release, stop()
                continue
            leases = await self._claim(wanted, hold_ms)
            claimed_at = anyio.current_time()
            new_scope = jobs.new_scope
            self._buffer.extend(
                _LeaseClock(lease, claimed_at, hold_ms, new_scope()) for lease in leases
            )
            self.statistics.buffered = len(self._buffer)
            self._start_buffered(claimed_at)  # those claimed for free slots, at once
            if leases:
                polls.reset()
                continue
            with anyio.move_on_after(polls.next_s()):
                await self._wake.wait()

    def _start_buffered(self, now: float) -> None:
        """Start buffered jobs, oldest first, while slots are free, up to the end of their
        hold (then ``_take_buffered`` releases them)."""
        buffer, jobs = self._buffer, self._jobs
        assert jobs is not None
        while buffer and self.statistics.running < self._concurrency and not self._stopping:
            if buffer[0].start_by < now:
                break
            clock = buffer.popleft()
            self.statistics.running += 1
            self._started_now += 1
            if self._all_done.is_set():
                self._all_done = anyio.Event()
            clock.started(now)
            jobs.start_soon(self._run_job, clock)
        self.statistics.buffered = len(buffer)

    def _take_buffered(self, *, everything: bool) -> list[_LeaseClock]:
        """Remove and return the buffered jobs past their hold (all of them: ``everything``)."""
        now = anyio.current_time()
        taken = [clock for clock in self._buffer if everything or clock.start_by <= now]
        if taken:
            self._buffer = collections.deque(
                clock for clock in self._buffer if not everything and clock.start_by > now
            )
            self.statistics.buffered = len(self._buffer)
        return taken

    async def _claim(self, wanted: int, hold_ms: int) -> tuple[Lease, ...]:
        asked_ns = time.time_ns()
        try:
            leases = await self._client.claim(
                self.claimer_id, self._app.types, self._queues, wanted, hold_ms
            )
        except ConfigError:
            raise  # our own misconfiguration: no retry fixes it
        except RaftqError as error:  # unreachable, busy: poll again after the backoff
            logger.warning("claim failed error=%r", str(error))
            return ()
        assert len(leases) <= wanted, (len(leases), wanted)
        tracing.claimed(leases, asked_ns, time.time_ns())
        self.statistics.claims += 1
        self.statistics.claimed += len(leases)
        return leases

    async def _release(self, held: list[_LeaseClock]) -> None:
        """Give back jobs that never started. If the cluster cannot be reached, their leases
        expire (hold + timeout after the claim) and they run elsewhere: nothing is lost."""
        for start in range(0, len(held), limits.CLAIM_JOBS_MAX):
            chunk = [
                (c.lease.job_id, c.lease.fence) for c in held[start : start + limits.CLAIM_JOBS_MAX]
            ]
            try:
                await self._client.release(chunk)
            except ConfigError:
                raise
            except RaftqError as error:
                logger.warning(
                    "release failed jobs=%d error=%r (their leases will expire and they will "
                    "run elsewhere)",
                    len(chunk),
                    str(error),
                )
                continue
            self.statistics.released += len(chunk)

    async def _run_job(self, clock: _LeaseClock) -> None:
        lease = clock.lease
        try:
            try:
                outcome = await self._execute(clock)
            except anyio.get_cancelled_exc_class():
                stopped = _failure(lease, "the worker stopped mid-job")
                with anyio.move_on_after(STOP_REPORT_S, shield=True):
                    await self._report([stopped])
                raise
            if outcome is not None:
                last = self._progress.pop(lease.job_id, None)  # rides with the outcome
                if last is not None:
                    outcome = attrs.evolve(outcome, progress=last[1])
                await self._outcomes.send(outcome)  # waits only while reports back up
        finally:
            self._progress.pop(lease.job_id, None)  # its attempt is over
            self.statistics.running -= 1
            jobs = self._jobs
            assert jobs is not None
            if jobs.current_effective_deadline() != -math.inf:  # not being cancelled
                self._start_buffered(jobs.current_time())  # the slot's next job, even mid-claim
            self._wake.set()
            if not self.statistics.running:
                self._all_done.set()

    async def _execute(self, clock: _LeaseClock) -> Outcome | None:
        """Run the handler; the outcome to report, or None if the lease is gone."""
        lease = clock.lease
        registered = self._app.lookup(lease.type)
        if registered is None:  # claims name only our types: a bug, but say it on the job
            return _failure(lease, f"no handler for type {lease.type!r} on {self.claimer_id}")
        context = JobContext(
            id=lease.job_id,
            type=lease.type,
            queue=lease.queue,
            payload=decode_json(lease.payload),
            attempt=lease.attempt,
            fence=lease.fence,
            timeout_ms=lease.timeout_ms,
            heartbeat=functools.partial(self._heartbeat, clock),
            progress=functools.partial(self._keep_progress, lease),
        )
        # Most jobs are not traced: no span's context manager for them (a generator per job).
        traced_run = tracing.running(lease) if lease.traceparent else contextlib.nullcontext()
        with clock.scope, traced_run as traced:
            if traced is not None:
                self._traced[lease.job_id] = (lease, traced)  # for its report's span
            try:
                if registered.is_async:
                    result = await registered.function(context)
                else:
                    result = await anyio.to_thread.run_sync(
                        registered.function, context, limiter=self._threads, abandon_on_cancel=True
                    )
                encoded = encode_json(result, limits.JOB_RESULT_BYTES_MAX)
                return Outcome(
                    job_id=lease.job_id, fence=lease.fence, succeeded=True, result=encoded
                )
            except LeaseLost as error:
                self.statistics.lease_lost += 1
                logger.info("lease lost while running job=%s error=%r", lease.job_id, str(error))
                self._traced.pop(lease.job_id, None)
                return None
            except Retry as snooze:
                return _snooze(lease, snooze.delay_ms)
            except JobFailed as error:
                tracing.failed(str(error))
                return _failure(lease, str(error), retryable=error.retryable)
            except Exception as error:  # the handler's own failure: reported on the job
                tracing.failed(repr(error))
                return _failure(lease, "".join(traceback.format_exception(error)))
        self.statistics.timed_out += 1
        return _failure(lease, f"timed out: ran past its {lease.timeout_ms} ms without heartbeat")

    async def _heartbeat(self, clock: _LeaseClock) -> None:
        lease = clock.lease
        (state,) = await self._client.extend(
            [(lease.job_id, lease.fence)], clock.renewal_until_ms()
        )
        if state != "running":  # gone to another worker, or cancelled meanwhile
            raise LeaseLost(f"job {lease.job_id} is no longer leased to fence {lease.fence}")
        clock.renewed()

    def _keep_progress(self, lease: Lease, value: object) -> None:
        """``job.progress(value)``: keep it as the job's latest, for ``_send_progress``."""
        try:
            encoded = encode_json(value, limits.JOB_PROGRESS_BYTES_MAX)
        except ValueError as error:
            raise ConfigError(f"progress of job {lease.job_id}: {error}") from None
        self._progress[lease.job_id] = (lease.fence, encoded)
        self._progress_wake.set()
        if not self._progress_sender and self._reporting is not None:
            self._progress_sender = True
            self._reporting.start_soon(self._send_progress)

    async def _send_progress(self) -> None:
        """Send the jobs' latest progress in one command, then wait out the interval (or the
        worker's stop) before the next: at most one ``Progress`` entry per interval."""
        interval_s = limits.PROGRESS_INTERVAL_MS / 1000
        while True:
            await self._progress_wake.wait()
            if self._progress_closing.is_set():
                return
            self._progress_wake = anyio.Event()
            held = [(job_id, fence, value) for job_id, (fence, value) in self._progress.items()]
            self._progress.clear()
            for start in range(0, len(held), limits.PROGRESS_JOBS_MAX):
                chunk = held[start : start + limits.PROGRESS_JOBS_MAX]
                try:
                    await self._client.progress(chunk)
                except ConfigError:
                    raise
                except RaftqError as error:  # progress is best effort: the next value follows
                    logger.info("progress not sent jobs=%d error=%r", len(chunk), str(error))
                    continue
                self.statistics.progress_sent += len(chunk)
            with anyio.move_on_after(interval_s):
                await self._progress_closing.wait()

    async def _report_outcomes(self, outcomes: MemoryObjectReceiveStream[Outcome]) -> None:
        """Send outcomes as they come, one report in flight at a time: whatever finishes while
        a report travels goes in the next, so reports grow with the load (one log entry for
        many jobs) without making a lone job wait."""
        async with outcomes:
            held: Outcome | None = None
            while True:
                if held is None:
                    try:
                        held = await outcomes.receive()
                    except anyio.EndOfStream:
                        return
                batch, size, held = [held], _outcome_bytes(held), None
                while len(batch) < limits.REPORT_OUTCOMES_MAX:
                    try:
                        outcome = outcomes.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    if size + _outcome_bytes(outcome) > limits.REPORT_BYTES_MAX:
                        held = outcome  # starts the next report
                        break
                    batch.append(outcome)
                    size += _outcome_bytes(outcome)
                await self._report(batch)

    async def _report(self, outcomes: list[Outcome]) -> None:
        started_ns = time.time_ns()
        traced = [held for outcome in outcomes if (held := self._traced.pop(outcome.job_id, None))]
        try:
            states = await self._client.report(outcomes)
        except ConfigError:
            raise  # a report we built wrong: a bug, not a condition to wait out
        except RaftqError as error:
            tracing.reported(traced, started_ns, error=f"report lost: {error}")
            self.statistics.reports_lost += len(outcomes)
            logger.warning(
                "report lost jobs=%d first=%s error=%r (their leases will expire and they "
                "will run again)",
                len(outcomes),
                outcomes[0].job_id,
                str(error),
            )
            return
        tracing.reported(traced, started_ns)
        for outcome, state in zip(outcomes, states, strict=True):
            if state is None:
                self.statistics.lease_lost += 1
                logger.info("report refused job=%s: its lease was lost", outcome.job_id)
            elif outcome.succeeded:
                self.statistics.succeeded += 1
            elif outcome.snooze_ms != NOT_SNOOZED:
                self.statistics.snoozed += 1
            else:
                self.statistics.failed += 1


class _DeadlineScope(Protocol):
    """A job's cancel scope: the handler's deadline (AnyIO's or Trio's ``CancelScope``)."""

    deadline: float

    def __enter__(self) -> object: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        exc_traceback: TracebackType | None,
    ) -> bool: ...


class _JobTasks(Protocol):
    """Where the worker's job tasks run: one task per job, all cancelled together; each job
    under a cancel scope of ``new_scope()``; the loop's clock and the calling task's
    deadline as the job tasks' event loop tells them, without AnyIO's lookup of it per call."""

    @property
    def new_scope(self) -> Callable[[], _DeadlineScope]: ...

    @property
    def current_time(self) -> Callable[[], float]: ...

    @property
    def current_effective_deadline(self) -> Callable[[], float]: ...

    def start_soon(
        self, function: Callable[[_LeaseClock], Coroutine[Any, Any, None]], clock: _LeaseClock, /
    ) -> None: ...

    def cancel(self) -> None: ...


@attrs.frozen
class _TrioJobTasks:
    nursery: trio.Nursery
    new_scope: Callable[[], _DeadlineScope] = trio.CancelScope
    current_time: Callable[[], float] = trio.current_time
    current_effective_deadline: Callable[[], float] = trio.current_effective_deadline

    def start_soon(
        self, function: Callable[[_LeaseClock], Coroutine[Any, Any, None]], clock: _LeaseClock, /
    ) -> None:
        self.nursery.start_soon(function, clock)

    def cancel(self) -> None:
        self.nursery.cancel_scope.cancel()


@attrs.frozen
class _AnyioJobTasks:
    group: anyio.abc.TaskGroup
    new_scope: Callable[[], _DeadlineScope] = anyio.CancelScope
    current_time: Callable[[], float] = anyio.current_time
    current_effective_deadline: Callable[[], float] = anyio.current_effective_deadline

    def start_soon(
        self, function: Callable[[_LeaseClock], Coroutine[Any, Any, None]], clock: _LeaseClock, /
    ) -> None:
        self.group.start_soon(function, clock)

    def cancel(self) -> None:
        self.group.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def _open_job_tasks() -> AsyncIterator[_JobTasks]:
    """The job tasks' group. Under Trio (a node's in-process workers, ``raftq worker --loop
    trio``) a Trio nursery and Trio cancel scopes: AnyIO's task group gives every task a
    handle, an event and a cancel scope of its own, which more than doubled what starting a
    job costs (27 against 12 us a task, measured), and its cancel scope wraps Trio's; the same
    tasks start at the same moments either way. Elsewhere AnyIO's."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:  # not under Trio
        async with anyio.create_task_group() as group:
            yield _AnyioJobTasks(group)
        return
    async with trio.open_nursery() as nursery:
        yield _TrioJobTasks(nursery)


def _failure(lease: Lease, error: str, *, retryable: bool = True) -> Outcome:
    return Outcome(
        job_id=lease.job_id,
        fence=lease.fence,
        succeeded=False,
        error=error[-limits.JOB_ERROR_CHARS_MAX :],  # a traceback's end names the exception
        retryable=retryable,
    )


def _snooze(lease: Lease, delay_ms: int) -> Outcome:
    return Outcome(job_id=lease.job_id, fence=lease.fence, succeeded=False, snooze_ms=delay_ms)


def _outcome_bytes(outcome: Outcome) -> int:
    return len(outcome.result) + len(outcome.error) + len(outcome.progress)
