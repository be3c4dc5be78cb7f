"""``JobStateMachine``: the replicated job queue, applied entry by entry in log order.

Pure and deterministic: no clock (the leader stamps ``now_ms`` into every command), no random
(retry jitter is a checksum), no iteration over sets, so every node that applies the same log
holds the same queue, bit for bit (``digest()``).

Indexes, so that nothing scans all jobs:

- ready queues: per (queue, type), a FIFO per priority of the jobs due now. Applying a command
  first moves every job that came due into its FIFO, in (run_at, enqueue order); so each FIFO
  is sorted by (run_at, enqueue order), and a claim takes the best head among the candidate
  FIFOs: highest priority, earliest run_at, then enqueue order. O(1) per job handed out.
- a heap of jobs waiting for ``run_at_ms`` (delayed, or failed and backing off);
- a heap of leases by expiry, for ``ExpireLeases``: O(expired);
- the finish order, for ``Purge``: O(purged); the dead-letter list; counts per queue and state;
- the listing index (``raftq.jobs.listing``), for pages of jobs by cursor without a full scan;
- idempotency keys in the order they were taken, for the dedupe window;
- waiting jobs by parent and unique keys by holder (``raftq.jobs.dependencies``,
  ``raftq.jobs.unique``), so a finish touches only its own children.

Every index is derived from the jobs and the three orders (dead letters, finishes, keys):
``Rebuild`` builds them from those rows (a snapshot restore), so a new field or index is
written once, here; ``raftq.jobs.snapshot`` only turns rows into bytes and back.

Heap and FIFO entries are never removed early: an entry whose job moved on is skipped when it
surfaces (lazy deletion).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import operator
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from raftq import limits
from raftq.errors import DecodeError, LocalProtocolError
from raftq.ids import derived_job_id
from raftq.jobs import dependencies, policy, schedules, unique
from raftq.jobs.backoff import policy_delay_ms
from raftq.jobs.commands import (
    TRACEPARENT,
    Cancel,
    Claim,
    ClaimResult,
    Command,
    Complete,
    Count,
    Done,
    Enqueue,
    Enqueued,
    EnqueueResult,
    ExpireLeases,
    Extend,
    ExtendAll,
    ExtendResult,
    Fail,
    FireSchedule,
    JobSpec,
    Lease,
    Outcome,
    PauseQueue,
    Progress,
    Purge,
    PutSchedule,
    Rejected,
    Release,
    ReleaseResult,
    RemoveLimit,
    RemoveSchedule,
    Report,
    ReportResult,
    Result,
    ResumeQueue,
    Retry,
    RetryDead,
    SetLimit,
)
from raftq.jobs.dependencies import Dependencies
from raftq.jobs.job import (
    FINISHED,
    TRANSITIONS,
    Job,
    JobRun,
    JobState,
    JobView,
    extra_of,
    retry_policy_of,
    view_of,
)
from raftq.jobs.limits_table import GROUP, QUEUE, LimitsTable, group_of
from raftq.jobs.listing import ListingIndex
from raftq.jobs.unique import ActiveKeys

OUTPUT_DROPPED = "output dropped: the cluster holds its maximum bytes"
"""A job's error when its result or error did not fit (``JOBS_HELD_BYTES_MAX``)."""

LEASE_EXPIRED = "the lease expired before the worker reported an outcome"
"""The error a history event records for an attempt whose lease expired."""


class _ReadyQueue:
    """The due jobs of one (queue, type), per priority (highest first): a FIFO in (run_at,
    enqueue order), plus a small heap for the rare job that becomes due out of that order (a
    retried job is older than jobs already waiting with the same run_at)."""

    __slots__ = ("fifos", "late", "priorities")

    def __init__(self) -> None:
        self.fifos: dict[int, deque[Job]] = {}
        self.late: dict[int, list[tuple[int, int, Job]]] = {}
        self.priorities: list[int] = []  # descending

    def push(self, job: Job) -> None:
        fifo = self.fifos.get(job.priority)
        if fifo is None:
            fifo = self.fifos[job.priority] = deque()
            self.late[job.priority] = []
            self.priorities.append(job.priority)
            self.priorities.sort(reverse=True)
        if fifo and (job.run_at_ms, job.seq) < (fifo[-1].run_at_ms, fifo[-1].seq):
            heapq.heappush(self.late[job.priority], (job.run_at_ms, job.seq, job))
        else:
            fifo.append(job)

    def head(self) -> Job | None:
        """The best due job, dropping entries of jobs that are no longer due."""
        for priority in self.priorities:
            fifo, late = self.fifos[priority], self.late[priority]
            while fifo and not _due(fifo[0]):
                fifo.popleft()
            while late and not _due(late[0][2]):
                heapq.heappop(late)
            if late and (not fifo or (late[0][0], late[0][1]) < (fifo[0].run_at_ms, fifo[0].seq)):
                return late[0][2]
            if fifo:
                return fifo[0]
        return None

    def extend_sorted(self, priority: int, jobs: list[Job]) -> None:
        """Restore: ``jobs`` already sorted by (run_at, enqueue order)."""
        if priority not in self.fifos:
            self.fifos[priority] = deque()
            self.late[priority] = []
            self.priorities.append(priority)
            self.priorities.sort(reverse=True)
        self.fifos[priority].extend(jobs)

    def pop(self, job: Job) -> None:
        fifo, late = self.fifos[job.priority], self.late[job.priority]
        if fifo and fifo[0] is job:
            fifo.popleft()
        else:
            assert late[0][2] is job
            heapq.heappop(late)


def _traced(job: Job) -> dict[str, Any]:
    """A traced job's lease fields (``raftq.tracing``): its context and when its wait began."""
    assert job.extra is not None
    return {"traceparent": job.extra.traceparent, "enqueued_ms": job.enqueued_ms}


def _due(job: Job) -> bool:
    return job.state is JobState.PENDING and job.ready


class Observer(Protocol):
    """Watches transitions as they are applied (metrics); must not change anything."""

    def enqueued(self, job: Job) -> None: ...

    def claimed(self, job: Job, now_ms: int) -> None: ...

    def finished(self, job: Job, now_ms: int) -> None: ...


def digest_of(snapshot: bytes) -> str:
    """``JobStateMachine.digest`` of the state whose ``snapshot()`` is ``snapshot``."""
    return hashlib.blake2b(snapshot, digest_size=16).hexdigest()


class JobStateMachine:
    def __init__(self) -> None:
        self.now_ms = 0
        self.entry_index = 0
        self.entry_term = 0
        """The log entry being applied (for job histories); not state of its own."""
        self.next_seq = 1
        self.jobs: dict[str, Job] = {}
        self.paused: dict[str, None] = {}
        self.ready: dict[tuple[str, str], _ReadyQueue] = {}
        self.waiting: list[tuple[int, int, Job]] = []  # heap of (run_at_ms, seq, job)
        self.leases: list[tuple[int, int, Job]] = []  # heap of (expires_ms, seq, job)
        self.finished: deque[tuple[int, Job]] = deque()  # (finished_ms, job), in finish order
        self.dead: dict[str, None] = {}  # the dead-letter list, in order of death
        self.counts: dict[tuple[str, JobState], int] = {}
        self.keys: dict[str, str] = {}
        """Idempotency key -> job id, in the order the keys were taken (oldest first)."""
        self.key_order: deque[str] = deque()
        self.key_times: deque[int] = deque()
        """The same keys in the same order, and when each was taken: the oldest is forgotten
        first. Two flat deques, not one of (at_ms, key) tuples: at a million keys the tuples
        alone were 64 MB."""
        self.names: dict[str, str] = {}  # queue and type names, one copy of each
        self.held_bytes = 0
        """Payloads, results and errors of every job held: what admission control bounds."""
        self.listing = ListingIndex()
        """Every job in enqueue order, for cursor pages (derived: rebuilt on restore)."""
        self.limit_table = LimitsTable()
        """Concurrency and rate limits per queue and group (``raftq.jobs.limits_table``)."""
        self.dependencies = Dependencies()
        """Waiting jobs by parent (``raftq.jobs.dependencies``; derived: rebuilt on restore)."""
        self.active_keys = ActiveKeys()
        """Unique-while-active keys and their holders (derived: rebuilt on restore)."""
        self._orphans: deque[Job] = deque()
        """Finished parents whose children are being released or cancelled (a work list)."""
        self.schedules = schedules.ScheduleTable()  # raftq.jobs.schedules
        self.observer: Observer | None = None
        """Told of enqueues, claims and finishes, for metrics. Not part of the state."""
        self.jobs_max = limits.JOBS_MAX
        self.held_bytes_max = limits.JOBS_HELD_BYTES_MAX
        """Admission control (``has_room``). Configuration, not state: every node of a
        cluster must use the same values (tests lower them)."""

    # --- applying -------------------------------------------------------------------------------

    def apply(self, index: int, command: Command, term: int = 0) -> Result:
        """Apply the command committed at log ``index`` in ``term``; every job event it causes
        is recorded with both, so a job's history names the entries that decided it."""
        assert index > 0, index
        assert term >= 0, term
        self.entry_index, self.entry_term = index, term
        if command.now_ms > self.now_ms:
            self.now_ms = command.now_ms
        self._promote_due()
        if self.limit_table.wakeups:
            self._unpark(*self.limit_table.due_wakeups(self.now_ms))
        handler: Any = _HANDLERS[type(command)]
        result: Result = handler(self, index, command)
        return result

    def _promote_due(self) -> None:
        """Move every job whose run_at has come into its ready queue, in (run_at, seq) order."""
        waiting = self.waiting
        now = self.now_ms
        while waiting and waiting[0][0] <= now:
            run_at, _, job = heapq.heappop(waiting)
            due = job.state in (JobState.PENDING, JobState.FAILED) and not job.ready
            if due and job.run_at_ms == run_at:
                self._make_ready(job)

    def _make_ready(self, job: Job) -> None:
        self._set_state(job, JobState.PENDING)
        job.ready = True
        source = self.ready.get((job.queue, job.type))
        if source is None:
            source = self.ready[(job.queue, job.type)] = _ReadyQueue()
        source.push(job)

    def _schedule(self, job: Job, run_at_ms: int) -> None:
        job.run_at_ms = run_at_ms
        job.ready = False
        if run_at_ms <= self.now_ms:
            self._make_ready(job)
        else:
            heapq.heappush(self.waiting, (run_at_ms, job.seq, job))

    def _set_state(self, job: Job, state: JobState) -> None:
        if state not in TRANSITIONS[job.state]:
            raise LocalProtocolError(
                f"job {job.id}: {job.state.value} to {state.value} is not an allowed transition"
            )
        if job.state is state:
            return
        counts = self.counts
        old = (job.queue, job.state)
        counts[old] -= 1
        if not counts[old]:
            del counts[old]
        new = (job.queue, state)
        counts[new] = counts.get(new, 0) + 1
        self.listing.moved(job, job.state, state)
        before, job.state = job.state, state
        if job.extra is not None and job.extra.group is not None:
            self._group_moved(job.extra.group, before, state)

    def _group_moved(self, group: str, old: JobState | None, new: JobState) -> None:
        """Counts a group's jobs by state; a slot freed puts back its parked jobs."""
        table = self.limit_table
        if table.moved(group, old, new) and group in table.lanes:
            self._unpark(group)

    def _unpark(self, *groups: str) -> None:
        """The parked jobs of each open group that must be back in their ready queues."""
        for group in groups:
            for job in self.limit_table.unpark(group, self.now_ms):
                self.ready[(job.queue, job.type)].push(job)

    def _record(self, job: Job, event: str, node: str = "", error: str = "") -> None:
        """Add an event to the job's history; ``error`` is what ended an attempt, of which the
        event keeps the end (``JOB_HISTORY_ERROR_CHARS_MAX``), counted in ``held_bytes``."""
        run = job.run
        assert run is not None
        history = run.history
        error = error[-limits.JOB_HISTORY_ERROR_CHARS_MAX :]
        if self.held_bytes + len(error) > self.held_bytes_max:
            error = ""  # the event stands; only its copy of the error is dropped
        self.held_bytes += len(error)
        history.append(
            (
                self.now_ms,
                event,
                job.attempts,
                node,
                run.fence,
                self.entry_index,
                self.entry_term,
                error,
            )
        )
        if len(history) >= limits.JOB_HISTORY_MAX:  # the enqueue event is the bound's first
            self.held_bytes -= len(history[0][7])
            del history[0]

    def _finish(self, job: Job, state: JobState, event: str, error: str = "") -> None:
        if job.run is None:
            job.run = JobRun()
        elif job.run.finished_ms == self.now_ms:
            self._drop_earlier_finish(job)
        was_ready = job.ready
        was = job.state
        self._set_state(job, state)
        job.ready = False
        if was_ready and job.extra is not None and self.limit_table.lanes:
            self._left_ready(job)
        job.run.finished_ms = self.now_ms
        if self.observer is not None:
            self.observer.finished(job, self.now_ms)
        self.finished.append((self.now_ms, job))
        if state is JobState.DEAD:
            self.dead[job.id] = None
        self._record(job, event, error=error)
        if job.extra is not None or job.id in self.dependencies.children:
            self._extra_finished(job, was)

    def _extra_finished(self, job: Job, was: JobState) -> None:
        """A job with dependencies, children or a unique key finished: it leaves its parents'
        lists, frees its key, and its children are released or cancelled in this entry."""
        if was is JobState.WAITING:
            self.dependencies.detach(job)
        self.active_keys.free(job)
        if job.id not in self.dependencies.children:
            return
        orphans = self._orphans
        orphans.append(job)
        if len(orphans) > 1:
            return  # an outer call is working through the list (not recursion: chains are long)
        while orphans:
            for child, reason in self.dependencies.parent_finished(orphans[0]):
                if reason:
                    self._cancel_for_parent(child, reason)  # may add child to ``orphans``
                else:
                    self.dependencies.detach(child)
                    self._set_state(child, JobState.PENDING)
                    self._schedule(child, max(child.run_at_ms, self.now_ms))
            orphans.popleft()

    def _cancel_for_parent(self, job: Job, reason: str) -> None:
        if job.run is None:
            job.run = JobRun()
        self._keep_output(job, b"", reason)
        self._finish(job, JobState.CANCELLED, "cancelled", reason)

    def _drop_earlier_finish(self, job: Job) -> None:
        """Takes out the finish order's entry of ``job``'s earlier finish in this same
        millisecond (it was retried and now finishes again). Elsewhere an outdated entry is
        told apart by its time and left for ``_purge`` to skip; one with the current time
        cannot be, and would stay in this replica's snapshots but not in those of a replica
        restored while the job was retried. Only entries of this millisecond are looked at,
        from the newest: the order is by time (``now_ms`` never goes back)."""
        finished = self.finished
        for back in range(1, len(finished) + 1):
            finished_ms, held = finished[-back]
            if finished_ms != self.now_ms:
                return
            if held is job:
                del finished[-back]
                return

    # --- Enqueue ----------------------------------------------------------------------------------

    def has_room(self, jobs: int, payload_bytes: int) -> bool:
        """Whether ``jobs`` more jobs with these payloads fit under the cluster's bounds."""
        return (
            len(self.jobs) + jobs <= self.jobs_max
            and self.held_bytes + payload_bytes <= self.held_bytes_max
        )

    def _enqueue(self, index: int, command: Enqueue) -> EnqueueResult:
        self._forget_old_keys()
        batch = command.jobs
        ids = {spec.id: at for at, spec in enumerate(batch)} if _any_depends(batch) else {}
        return EnqueueResult(
            jobs=tuple(
                self._enqueue_one(index, position, spec, ids)
                for position, spec in enumerate(command.jobs)
            )
        )

    def _enqueue_one(
        self, index: int, position: int, spec: JobSpec, batch_ids: Mapping[str, int]
    ) -> Enqueued | Rejected:
        key = spec.key
        if key:
            seen = self.keys.get(key)
            if seen is not None:
                return Enqueued(job_id=seen, created=False)
        holder = self.active_keys.holder(spec.unique_while_active)
        if holder is not None:
            if key:  # a retry of this command after the holder finished names it again
                self.take_key(key, holder.id)
            return Enqueued(job_id=holder.id, created=False)
        job_id = spec.id or derived_job_id(index, position)
        if job_id in self.jobs:
            return Rejected(code="id_taken", message=f"job id {job_id} is already in use")
        if not self.has_room(1, len(spec.payload)):
            return Rejected(
                code="full",
                message=f"the cluster holds its maximum of {self.jobs_max} jobs or "
                f"{self.held_bytes_max} payload and result bytes; retry once finished jobs "
                "are purged",
            )
        if spec.depends_on:
            refused = self.dependencies.refusal(job_id, spec, self.jobs, batch_ids, position)
            if refused is not None:
                return refused
        names = self.names
        queue, job_type = names.get(spec.queue), names.get(spec.type)
        if queue is None or job_type is None:  # a new name: is there room for it?
            new_names = {spec.queue, spec.type} - names.keys()
            if len(names) + len(new_names) > limits.NAMES_MAX:
                return Rejected(
                    code="too_many_names",
                    message=f"more than {limits.NAMES_MAX} distinct queue and type names",
                )
            queue = names.setdefault(spec.queue, spec.queue)
            job_type = names.setdefault(spec.type, spec.type)
        job = Job(
            id=job_id,
            type=job_type,
            queue=queue,
            priority=spec.priority,
            payload=spec.payload,
            max_attempts=spec.max_attempts,
            timeout_ms=spec.timeout_ms,
            run_at_ms=self.now_ms,
            enqueued_ms=self.now_ms,
            seq=self.next_seq,
        )
        self.next_seq += 1
        policy.attach(job, spec)
        extra = spec.depends_on or spec.unique_while_active
        cancel = self._attach_extra(job, spec) if extra else ""
        if spec.group:
            extra_of(job).group = spec.group
            self._group_moved(spec.group, None, job.state)
        if spec.traceparent:
            extra_of(job).traceparent = spec.traceparent
        self.jobs[job_id] = job
        self.held_bytes += len(spec.payload)
        counted = (queue, job.state)
        self.counts[counted] = self.counts.get(counted, 0) + 1
        self.listing.add(job)
        if job.state is JobState.WAITING:  # released (or cancelled) by its parents' ends
            job.run_at_ms = self.now_ms + spec.delay_ms
        else:
            # No delay: the very same int as now, not a new one per job (memory).
            self._schedule(job, self.now_ms + spec.delay_ms if spec.delay_ms else self.now_ms)
        if self.observer is not None:
            self.observer.enqueued(job)
        if key:
            self.keys[key] = job_id
            self.key_order.append(key)
            self.key_times.append(self.now_ms)
            if len(self.keys) > limits.DEDUPE_KEYS_MAX:
                self._forget_oldest_key()
        if cancel:
            self._cancel_for_parent(job, cancel)
        return Enqueued(job_id=job_id, created=True)

    def _attach_extra(self, job: Job, spec: JobSpec) -> str:
        """A new job's dependencies and unique key (its first state: waiting if a parent is
        still to finish); the reason it is to be cancelled at once (a parent already ended
        dead or cancelled), or ""."""
        extra = extra_of(job)
        cancel = self.dependencies.attach(job, spec, self.jobs) if spec.depends_on else ""
        if extra.parents_left or cancel:
            job.state = JobState.WAITING  # its first state, not a transition
        if spec.unique_while_active:
            extra.unique_key = spec.unique_while_active
            if not cancel:  # a job cancelled at once never holds its key
                self.active_keys.take(job)
        return cancel

    def take_key(self, key: str, job_id: str) -> None:
        """Give idempotency key ``key`` to ``job_id``, unless another job holds it."""
        self._forget_old_keys()
        if key in self.keys:
            return
        self.keys[key] = job_id
        self.key_order.append(key)
        self.key_times.append(self.now_ms)
        if len(self.keys) > limits.DEDUPE_KEYS_MAX:
            self._forget_oldest_key()

    def _forget_old_keys(self) -> None:
        horizon = self.now_ms - limits.DEDUPE_WINDOW_MS
        while self.key_times and self.key_times[0] <= horizon:
            self._forget_oldest_key()

    def _forget_oldest_key(self) -> None:
        """Each key taken is in ``keys`` and once in ``key_order`` until forgotten here (a key
        is taken again only once forgotten), so both hold the same keys in the same order."""
        key = self.key_order.popleft()
        self.key_times.popleft()
        del self.keys[key]

    # --- Claim ------------------------------------------------------------------------------------

    def _claim(self, index: int, command: Claim) -> ClaimResult:
        sources = list(self._sources(command.queues, command.types))
        leases: list[Lease] = []
        payload_bytes = 0
        while len(leases) < command.max_jobs:
            best: Job | None = None
            best_source: _ReadyQueue | None = None
            for source in sources:
                job = source.head()
                if job is not None and (
                    best is None
                    or (-job.priority, job.run_at_ms, job.seq)
                    < (-best.priority, best.run_at_ms, best.seq)
                ):
                    best, best_source = job, source
            if best is None or best_source is None:
                break
            if best.extra is not None and self._parks(best, best_source):
                continue
            payload_bytes += len(best.payload)
            if leases and payload_bytes > limits.CLAIM_PAYLOAD_BYTES_MAX:
                break
            best_source.pop(best)
            leases.append(self._lease(index, best, command.claimer, command.hold_ms))
            if self.limit_table.limits and not self._queue_open(best.queue, self.now_ms):
                sources = list(self._sources(command.queues, command.types))
        return ClaimResult(leases=tuple(leases))

    def _parks(self, job: Job, source: _ReadyQueue) -> bool:
        """Whether ``job``'s group is blocked by its limits: then the job leaves its ready
        queue for the group's lane (``raftq.jobs.limits_table``), until the group opens."""
        group = group_of(job)
        if group is None or self.limit_table.group_open(group, self.now_ms):
            return False
        source.pop(job)
        self.limit_table.park(job, group, self.now_ms)
        return True

    def _left_ready(self, job: Job) -> None:
        """``job`` was claimed or cancelled while due: if it stood for its group's parked
        jobs in its ready queue, the next of them takes its place."""
        group = group_of(job)
        if group is not None and self.limit_table.left_ready(job, group):
            self._unpark(group)

    def _queue_open(self, queue: str, now_ms: int) -> bool:
        running = self.counts.get((queue, JobState.RUNNING), 0)
        return self.limit_table.queue_open(queue, running, now_ms)

    def _sources(
        self, queues: tuple[str, ...], types: tuple[str, ...], now_ms: int = 0
    ) -> Iterator[_ReadyQueue]:
        """The ready queues a claim looks at: not paused, not held back by a queue limit."""
        now_ms = now_ms or self.now_ms
        wanted_queues = set(queues)
        wanted_types = set(types)
        for (queue, job_type), source in self.ready.items():
            if queue in self.paused:
                continue
            if self.limit_table.limits and not self._queue_open(queue, now_ms):
                continue
            if (not queues or queue in wanted_queues) and (not types or job_type in wanted_types):
                yield source

    def _lease(self, index: int, job: Job, claimer: str, hold_ms: int) -> Lease:
        self._set_state(job, JobState.RUNNING)
        job.ready = False
        job.attempts += 1
        run = job.run
        if run is None:
            run = job.run = JobRun()
        policy.new_attempt(self, run)
        run.fence = index
        run.claimer = claimer
        # The lease covers the time the claimer may hold the job before starting it, then the
        # job's whole timeout: a prefetched job never starts on a lease about to expire.
        run.lease_expires_ms = self.now_ms + hold_ms + job.timeout_ms
        heapq.heappush(self.leases, (run.lease_expires_ms, job.seq, job))
        if self.limit_table.limits:
            self.limit_table.handed_out(job.queue, group_of(job), self.now_ms)
        if job.extra is not None and self.limit_table.lanes:
            self._left_ready(job)
        self._record(job, "claimed", claimer)
        if self.observer is not None:
            self.observer.claimed(job, self.now_ms)
        return Lease(
            job_id=job.id,
            type=job.type,
            queue=job.queue,
            payload=job.payload,
            attempt=job.attempts,
            fence=index,
            expires_ms=run.lease_expires_ms,
            timeout_ms=job.timeout_ms,
            **(_traced(job) if job.extra is not None and job.extra.traceparent else {}),
        )

    # --- reports from workers ---------------------------------------------------------------------

    def _held(self, job_id: str, fence: int) -> Job | Rejected:
        """The job if ``fence`` still holds its lease, else why not."""
        job = self.jobs.get(job_id)
        if job is None:
            return Rejected(code="not_found", message=f"no job {job_id}")
        run = job.run
        if job.state is not JobState.RUNNING or run is None or run.fence != fence:
            return Rejected(
                code="lease_lost",
                message=f"job {job_id} is no longer leased under fence {fence} "
                f"(state {job.state.value}); another worker may run it",
            )
        return job

    def _complete(self, index: int, command: Complete) -> Done | Rejected:
        return self._succeeded(command.job_id, command.fence, command.result)

    def _fail(self, index: int, command: Fail) -> Done | Rejected:
        return self._failed(command.job_id, command.fence, command.error, command.retryable)

    def _report(self, index: int, command: Report) -> ReportResult:
        return ReportResult(outcomes=tuple(map(self._settle, command.outcomes)))

    def _settle(self, outcome: Outcome) -> Done | Rejected:
        policy.last_progress(self, outcome)
        if outcome.succeeded:
            return self._succeeded(outcome.job_id, outcome.fence, outcome.result)
        if outcome.snooze_ms >= 0:
            return policy.snoozed(self, outcome.job_id, outcome.fence, outcome.snooze_ms)
        return self._failed(outcome.job_id, outcome.fence, outcome.error, outcome.retryable)

    def _succeeded(self, job_id: str, fence: int, result: bytes) -> Done | Rejected:
        job = self._held(job_id, fence)
        if isinstance(job, Rejected):
            return job
        assert job.run is not None
        self._keep_output(job, result, job.run.error)
        # A cancel that arrives while the job runs cannot undo work already done.
        self._finish(job, JobState.SUCCEEDED, "succeeded")
        return Done(job_id=job.id, state=job.state.value)

    def _failed(self, job_id: str, fence: int, error: str, retryable: bool) -> Done | Rejected:
        job = self._held(job_id, fence)
        if isinstance(job, Rejected):
            return job
        assert job.run is not None
        self._keep_output(job, job.run.result, error)
        if job.run.cancel_requested:
            self._finish(job, JobState.CANCELLED, "cancelled", job.run.error)
        else:
            self._attempt_failed(job, "failed", job.run.error, retryable=retryable)
        return Done(job_id=job.id, state=job.state.value)

    def _keep_output(self, job: Job, result: bytes, error: str) -> None:
        """Store a job's result and error; past the byte bound they are cut (the outcome
        stands: work done cannot be refused), and the error says so."""
        run = job.run
        assert run is not None
        held = self.held_bytes - len(run.result) - len(run.error)
        if held + len(result) + len(error) > self.held_bytes_max:
            result = b""
            error = OUTPUT_DROPPED if held + len(OUTPUT_DROPPED) <= self.held_bytes_max else ""
        run.result, run.error = result, error
        self.held_bytes = held + len(result) + len(error)

    def _attempt_failed(self, job: Job, event: str, error: str, *, retryable: bool) -> None:
        if not retryable or job.attempts >= job.max_attempts:
            dead = "dead" if retryable else f"{event}, not retryable"
            self._finish(job, JobState.DEAD, dead, error)
            return
        self._set_state(job, JobState.FAILED)
        self._record(job, event, error=error)
        delay_ms = policy_delay_ms(job.id, job.attempts, retry_policy_of(job))
        self._schedule(job, self.now_ms + delay_ms)

    def _extend(self, index: int, command: Extend) -> ExtendResult:
        def extend(job: Job) -> None:
            assert job.run is not None
            if command.until_ms > job.run.lease_expires_ms:
                job.run.lease_expires_ms = command.until_ms
                heapq.heappush(self.leases, (command.until_ms, job.seq, job))

        return ExtendResult(outcomes=self._each_held(command.job_ids, command.fences, extend))

    def _release(self, index: int, command: Release) -> ReleaseResult:
        """Each lease still held under its fence goes back to pending, in its old place (its
        run_at and enqueue order are unchanged), and the attempt its claim counted is undone:
        the job never started."""

        def release(job: Job) -> None:
            assert job.run is not None
            assert job.attempts > 0, (job.id, job.attempts)
            self._record(job, "released", job.run.claimer)  # names the attempt undone
            job.attempts -= 1
            self._make_ready(job)

        return ReleaseResult(outcomes=self._each_held(command.job_ids, command.fences, release))

    def _each_held(
        self, job_ids: Sequence[str], fences: Sequence[int], act: Callable[[Job], None]
    ) -> tuple[Done | Rejected, ...]:
        """For each (job_ids[i], fences[i]) whose fence still holds the lease: a cancel that
        waited for the lease takes effect, else ``act(job)``. Each job's state after, or why
        not (a stale fence changes nothing)."""
        outcomes: list[Done | Rejected] = []
        for job_id, fence in zip(job_ids, fences, strict=True):
            job = self._held(job_id, fence)
            if isinstance(job, Rejected):
                outcomes.append(job)
                continue
            assert job.run is not None
            if job.run.cancel_requested:
                self._finish(job, JobState.CANCELLED, "cancelled")
            else:
                act(job)
            outcomes.append(Done(job_id=job.id, state=job.state.value))
        return tuple(outcomes)

    def _extend_all(self, index: int, command: ExtendAll) -> Count:
        floor = self.now_ms + command.by_ms
        extended = 0
        for _, _, job in list(self.leases):
            run = job.run
            if job.state is JobState.RUNNING and run is not None and run.lease_expires_ms < floor:
                run.lease_expires_ms = floor
                heapq.heappush(self.leases, (floor, job.seq, job))
                extended += 1
        return Count(count=extended)

    def _expire_leases(self, index: int, command: ExpireLeases) -> Count:
        expired = 0
        leases = self.leases
        while leases and leases[0][0] <= self.now_ms:
            expires, _, job = heapq.heappop(leases)
            run = job.run
            held = job.state is JobState.RUNNING and run is not None
            if held and run is not None and run.lease_expires_ms == expires:
                expired += 1
                if run.cancel_requested:
                    self._finish(job, JobState.CANCELLED, "cancelled")
                else:
                    # The job's error says why the attempt ended, as a worker's failure does:
                    # a job dead of its last lease's expiry showed no error at all.
                    self._keep_output(job, run.result, LEASE_EXPIRED)
                    self._attempt_failed(job, "lease expired", LEASE_EXPIRED, retryable=True)
        return Count(count=expired)

    # --- operator commands ------------------------------------------------------------------------

    def _cancel(self, index: int, command: Cancel) -> Done | Rejected:
        job = self.jobs.get(command.job_id)
        if job is None:
            return Rejected(code="not_found", message=f"no job {command.job_id}")
        if job.state in FINISHED:
            return Rejected(code="finished", message=f"job {job.id} already {job.state.value}")
        if job.state is JobState.RUNNING:
            assert job.run is not None
            job.run.cancel_requested = True
            self._record(job, "cancel requested")
            return Done(job_id=job.id, state=job.state.value)
        self._finish(job, JobState.CANCELLED, "cancelled")
        return Done(job_id=job.id, state=job.state.value)

    def _retry(self, index: int, command: Retry) -> Done | Rejected:
        job = self.jobs.get(command.job_id)
        if job is None:
            return Rejected(code="not_found", message=f"no job {command.job_id}")
        if job.state not in (JobState.DEAD, JobState.FAILED):
            return Rejected(
                code="not_retryable",
                message=f"job {job.id} is {job.state.value}; only dead or failed jobs retry",
            )
        holder = self.active_keys.blocks_retry(job)
        if holder is not None:
            return Rejected(
                code="unique_taken",
                message=f"job {holder.id} holds the unique key of job {job.id} now; "
                "retry it once that one has finished",
            )
        self._retry_job(job)
        return Done(job_id=job.id, state=job.state.value)

    def _retry_job(self, job: Job) -> None:
        if job.state is JobState.DEAD:
            job.attempts = 0  # out of the dead-letter list with a full set of attempts
            policy.operator_retried(job)
            del self.dead[job.id]
            if job.extra is not None:
                self.active_keys.take_back(job)
            self.dependencies.parent_retried(job)
        assert job.run is not None
        self._record(job, "retried")
        self._schedule(job, self.now_ms)

    def _retry_dead(self, index: int, command: RetryDead) -> Count:
        """Scans the dead-letter list from its oldest until ``max_jobs`` match: an operator's
        command, bounded by the dead jobs there are (``JOBS_MAX``)."""
        chosen: list[Job] = []
        keys: set[str] = set()
        for job_id in self.dead:
            job = self.jobs[job_id]
            if (
                (not command.queue or job.queue == command.queue)
                and (not command.type or job.type == command.type)
                and self.active_keys.may_retry(job, keys)
            ):
                chosen.append(job)
                if len(chosen) >= command.max_jobs:
                    break
        for job in chosen:
            self._retry_job(job)
        return Count(count=len(chosen))

    def _pause(self, index: int, command: PauseQueue) -> Done:
        self.paused[command.queue] = None
        return Done(job_id="", state="paused")

    def _resume(self, index: int, command: ResumeQueue) -> Done:
        self.paused.pop(command.queue, None)
        return Done(job_id="", state="resumed")

    def _set_limit(self, index: int, command: SetLimit) -> Done | Rejected:
        """A limit raised (or a rate's window moved by a change) may open the group."""
        problem = self.limit_table.set(
            command.scope,
            command.name,
            concurrency=command.concurrency,
            rate=command.rate,
            window_ms=command.window_ms,
        )
        if problem:
            return Rejected(code="too_many_limits", message=problem)
        if command.scope == GROUP:
            self._unpark(command.name)
        return Done(job_id="", state="set")

    def _remove_limit(self, index: int, command: RemoveLimit) -> Done | Rejected:
        if not self.limit_table.remove(command.scope, command.name):
            return Rejected(code="not_found", message=f"no limit on {command.scope} {command.name}")
        if command.scope == GROUP:
            self._unpark(command.name)
        return Done(job_id="", state="removed")

    def _purge(self, index: int, command: Purge) -> Count:
        purged = 0
        finished = self.finished
        while finished and finished[0][0] < command.before_ms:
            finished_ms, job = finished.popleft()
            run = job.run
            still_so = (
                job.state in FINISHED
                and run is not None
                and run.finished_ms == finished_ms
                and self.jobs.get(job.id) is job
            )
            if still_so:  # not retried (and finished again) since
                self._forget(job)
                purged += 1
        return Count(count=purged)

    def _progress(self, index: int, command: Progress) -> Any:
        return policy.progressed(self, command)

    def _forget(self, job: Job) -> None:
        del self.jobs[job.id]
        self.held_bytes -= len(job.payload)
        if job.run is not None:
            self.held_bytes -= _run_bytes(job.run)
        self.dead.pop(job.id, None)
        self.dependencies.forgotten(job)
        self.listing.remove(job)
        assert job.state in FINISHED, job.state  # no group count holds it
        counted = (job.queue, job.state)
        self.counts[counted] -= 1
        if not self.counts[counted]:
            del self.counts[counted]

    # --- queries ----------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobView | None:
        job = self.jobs.get(job_id)
        return view_of(job) if job is not None else None

    def state_counts(self) -> dict[str, int]:
        totals = {state.value: 0 for state in JobState}
        for (_, state), count in self.counts.items():
            totals[state.value] += count
        return totals

    def queue_counts(self) -> dict[str, dict[str, int]]:
        """Per queue (sorted by name): its count of jobs in each state."""
        queues: dict[str, dict[str, int]] = {}
        for (queue, state), count in self.counts.items():
            queues.setdefault(queue, {s.value: 0 for s in JobState})[state.value] += count
        for queue in self.paused:
            queues.setdefault(queue, {s.value: 0 for s in JobState})
        return dict(sorted(queues.items()))

    def has_claimable(
        self, queues: tuple[str, ...], types: tuple[str, ...], now_ms: int = 0
    ) -> bool:
        """Would a Claim for these queues and types, stamped ``now_ms`` (the leader's clock;
        rate windows move on with it), hand out a job? A hint for a leader deciding whether
        a claim is worth a log entry (it drops stale FIFO entries on the way, which changes
        no state). Parked jobs of a group whose rate window has moved on count: the claim's
        entry wakes them."""
        now_ms = max(now_ms, self.now_ms)
        wakeups = self.limit_table.wakeups
        if wakeups and wakeups[0][0] <= now_ms:
            return True
        sources = self._sources(queues, types, now_ms)
        return any(source.head() is not None for source in sources)

    def limit_rows(self) -> list[dict[str, Any]]:
        """Every limit (``LIMITS_MAX`` at most) by scope and name, with what runs under it now:
        ``running`` (handed out, not finished or released: prefetched jobs count),
        ``pending`` (waiting for a slot, a window, or their run_at) and ``started_in_window``
        (hand-outs the current rate window holds)."""
        table, counts, now = self.limit_table, self.counts, self.now_ms
        rows: list[dict[str, Any]] = []
        for scope, name, limit in table.rows():
            if scope == QUEUE:
                running = counts.get((name, JobState.RUNNING), 0)
                pending = counts.get((name, JobState.PENDING), 0)
            else:
                running = table.group_running.get(name, 0)
                pending = table.group_pending.get(name, 0)
            rows.append(
                {
                    "scope": scope,
                    "name": name,
                    "concurrency": limit.concurrency,
                    "rate": limit.rate,
                    "window_ms": limit.window_ms,
                    "running": running,
                    "pending": pending,
                    "started_in_window": sum(
                        1 for at_ms in limit.starts if at_ms > now - limit.window_ms
                    ),
                }
            )
        return rows

    def has_rate_limits(self) -> bool:
        return self.limit_table.rate_starts > 0

    def is_paused(self, queue: str) -> bool:
        return queue in self.paused

    def list_jobs(
        self, *, state: str | None = None, queue: str | None = None, limit: int = 100
    ) -> list[JobView]:
        """Jobs in enqueue order, filtered; at most ``limit``."""
        views: list[JobView] = []
        for job in self.jobs.values():
            if len(views) >= limit:
                break
            if (state is None or job.state.value == state) and (
                queue is None or job.queue == queue
            ):
                views.append(view_of(job))
        return views

    def page_jobs(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        job_type: str | None = None,
        cursor: int = 0,
        limit: int = 100,
        newest_first: bool = False,
        scan_max: int = limits.LIST_SCAN_JOBS_MAX,
        bytes_max: int = limits.JOBS_PAGE_BYTES_MAX,
    ) -> tuple[list[JobView], int]:
        """A page of jobs in enqueue order (or newest first) after ``cursor``, filtered, and
        the cursor of the next page (0: none); ``raftq.jobs.listing`` says how."""
        jobs, next_cursor = self.listing.page(
            state=None if state is None else JobState(state),
            queue=queue,
            job_type=job_type,
            cursor=cursor,
            limit=limit,
            newest_first=newest_first,
            scan_max=scan_max,
            bytes_max=bytes_max,
        )
        return [view_of(job) for job in jobs], next_cursor

    # --- snapshots --------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state, canonically encoded (same state, same bytes)."""
        from raftq.jobs.snapshot import encode_state

        return encode_state(self)

    @classmethod
    def restore(cls, data: bytes) -> JobStateMachine:
        """The state a ``snapshot()`` holds; ``DecodeError`` if the bytes are not one. All at
        once: ``raftq.jobs.snapshot.Restore`` does the same in slices."""
        from raftq.jobs.snapshot import Restore

        return Restore(data).run()

    def snapshot_orders(
        self,
    ) -> tuple[list[str], list[tuple[int, Job]], list[tuple[str, str, int]]]:
        """What a snapshot holds besides the jobs: the dead-letter ids in order of death, the
        finish order as (finished_ms, job), and the idempotency keys as (key, job id, at_ms),
        oldest first; live entries only (the lazily deleted ones left out)."""
        jobs = self.jobs
        finished = [
            (finished_ms, job)
            for finished_ms, job in self.finished
            if job.state in FINISHED
            and job.run is not None
            and job.run.finished_ms == finished_ms
            and jobs.get(job.id) is job
        ]
        assert len(self.keys) == len(self.key_order) == len(self.key_times)
        keys = [
            (key, job_id, at_ms)
            for (key, job_id), at_ms in zip(self.keys.items(), self.key_times, strict=True)
        ]
        return list(self.dead), finished, keys

    def snapshot_sections(self) -> dict[str, Any]:
        """The snapshot's sections (``raftq.jobs.snapshot``): each feature's replicated state
        beyond the core rows, by name, as plain CBOR values, in a fixed order (the bytes must
        not depend on history). Empty sections are left out. ``Rebuild.finish`` reads them
        back; it must know every name written here."""
        sections: dict[str, Any] = {}
        jobs = list(self.jobs.values())
        groups = [
            [job.id, job.extra.group]
            for job in itertools.compress(jobs, map(_extra, jobs))
            if job.extra is not None and job.extra.group is not None
        ]
        if groups:
            sections["jobs.group"] = groups
        traced = [
            [job.id, job.extra.traceparent]
            for job in itertools.compress(jobs, map(_extra, jobs))
            if job.extra is not None and job.extra.traceparent
        ]
        if traced:
            sections["jobs.traceparent"] = traced
        if self.limit_table.limits:
            sections["limits"] = self.limit_table.section()
        extras = dependencies.with_extra(jobs)
        sections.update(dependencies.sections(extras))
        sections.update(unique.sections(extras))
        sections.update(policy.sections(jobs))
        if self.schedules.by_name:
            sections[schedules.SECTION] = self.schedules.rows()
        return sections

    def digest(self) -> str:
        """A stable hash of the whole state, to compare replicas."""
        return digest_of(self.snapshot())

    def schedule_page(
        self, after: str = "", bytes_max: int = limits.SCHEDULES_PAGE_BYTES_MAX
    ) -> tuple[list[schedules.ScheduleView], str]:
        """A page of schedules by name (``ScheduleTable.page``)."""
        return self.schedules.page(after, bytes_max)

    def dead_letters(self, limit: int = 100) -> list[JobView]:
        """The dead-letter list, in order of death."""
        views: list[JobView] = []
        for job_id in self.dead:
            if len(views) >= limit:
                break
            views.append(view_of(self.jobs[job_id]))
        return views


class Rebuild:
    """Builds a machine from its rows: the state a snapshot holds, every index derived here.

    ``add_jobs`` takes the jobs in enqueue order, in slices of any size (a restore that must
    keep its process responsive yields between slices); ``finish`` takes the three orders and
    returns the machine. Rows that contradict each other (a running job without a lease, a
    duplicate id, enqueue order going backwards, an order naming an unknown job) raise
    ``DecodeError``: they come from a snapshot that is not one. Rebuilding the same rows gives
    the same machine as applying the log that made them, and the same ``snapshot()`` bytes:
    each ready FIFO is exactly its jobs sorted by (run_at, enqueue order), heaps are heaps.
    """

    def __init__(
        self, *, now_ms: int, next_seq: int, paused: Iterable[str], names: Iterable[str]
    ) -> None:
        machine = self.machine = JobStateMachine()
        machine.now_ms = now_ms
        machine.next_seq = next_seq
        machine.paused = dict.fromkeys(paused)
        machine.names = {name: name for name in names}
        self._fifos: dict[tuple[str, str, int], list[Job]] = {}
        self._last_seq = 0
        """The enqueue order of the last job added: rows must come in ascending order."""

    def add_jobs(self, jobs: Sequence[Job]) -> None:
        """The next jobs in enqueue order, their queue and type names in ``names``. Counted,
        checked and filed in bulk (``map``, ``Counter``: loops in C), since a restore passes a
        million jobs through here; only jobs that wait or run take a Python step each."""
        if not jobs:
            return
        machine = self.machine
        table = machine.jobs
        seqs = list(map(_seq, jobs))
        ordered = seqs[0] > self._last_seq and all(map(operator.lt, seqs, seqs[1:]))
        held = len(table)
        table.update(zip(map(_id, jobs), jobs, strict=True))
        if not ordered or len(table) != held + len(jobs):
            raise DecodeError("job rows out of enqueue order, or an id repeated")
        self._last_seq = seqs[-1]
        queues, states = list(map(_queue, jobs)), list(map(_state, jobs))
        if not set(queues) | set(map(_type, jobs)) <= machine.names.keys():
            raise DecodeError("a job names a queue or type that is not in the name table")
        counts = machine.counts
        for counted, count in _tally(queues, states).items():
            counts[counted] = counts.get(counted, 0) + count
        machine.held_bytes += sum(map(len, map(_payload, jobs)))
        ready = list(map(_ready, jobs))
        self._file_ready(list(itertools.compress(jobs, ready)))
        for job in itertools.compress(jobs, map(operator.not_, ready)):
            run = job.run
            if run is not None:
                machine.held_bytes += _run_bytes(run)
            if job.state is JobState.PENDING or job.state is JobState.FAILED:
                machine.waiting.append((job.run_at_ms, job.seq, job))
            elif job.state is JobState.RUNNING:
                if run is None:
                    raise DecodeError(f"job {job.id!r} is running without a lease")
                machine.leases.append((run.lease_expires_ms, job.seq, job))
        machine.listing.extend(jobs)

    def _file_ready(self, jobs: list[Job]) -> None:
        """Ready jobs into their FIFO lists (sorted and handed to ready queues in ``finish``)."""
        if not jobs:
            return
        if set(map(_state, jobs)) != {JobState.PENDING}:
            raise DecodeError("a job is ready (due now) but not pending")
        if any(job.run is not None for job in jobs):
            self.machine.held_bytes += sum(
                _run_bytes(job.run) for job in jobs if job.run is not None
            )
        fifos = self._fifos
        one_place = all(len(set(map(field, jobs))) == 1 for field in (_queue, _type, _priority))
        if one_place:  # the common case, with no tuple per job
            first = jobs[0]
            fifos.setdefault((first.queue, first.type, first.priority), []).extend(jobs)
            return
        for job in jobs:
            place = (job.queue, job.type, job.priority)
            fifo = fifos.get(place)
            if fifo is None:
                fifo = fifos[place] = []
            fifo.append(job)

    def finish(
        self,
        *,
        dead: Iterable[str],
        finished: Iterable[tuple[int, str]],
        keys: Sequence[str],
        key_jobs: Sequence[str] | None,
        key_times: Sequence[int],
        sections: Mapping[str, Any] | None = None,
    ) -> JobStateMachine:
        """The dead-letter ids in order of death, (finished_ms, job id) in finish order, and
        the idempotency keys oldest first with their job ids and times; then the machine is
        whole. ``key_jobs`` None: the keys are those of every job held, one each, in enqueue
        order (the usual case, where every job was enqueued with a key): then the keys
        share the jobs' own id strings, a million fewer strings than a list of ids makes."""
        machine = self.machine
        if self._last_seq >= machine.next_seq:
            raise DecodeError(f"a job's enqueue order {self._last_seq} is not below next_seq")
        for (queue, job_type, priority), fifo in self._fifos.items():
            run_ats = list(map(_run_at, fifo))
            if any(map(operator.gt, run_ats, run_ats[1:])):  # else sorted already (usual)
                fifo.sort(key=_run_at)  # stable: enqueue order among equal run_at
            source = machine.ready.get((queue, job_type))
            if source is None:
                source = machine.ready[(queue, job_type)] = _ReadyQueue()
            source.extend_sorted(priority, fifo)
        self._fifos = {}
        heapq.heapify(machine.waiting)
        heapq.heapify(machine.leases)
        jobs = machine.jobs
        machine.dead = dict.fromkeys(dead)
        for job_id in machine.dead:
            if job_id not in jobs or jobs[job_id].state is not JobState.DEAD:
                raise DecodeError(f"dead-letter list names {job_id!r}, not a dead job")
        for finished_ms, job_id in finished:
            job = jobs.get(job_id)
            if job is None:
                raise DecodeError(f"finish order names an unknown job {job_id!r}")
            machine.finished.append((finished_ms, job))
        self._keys(keys, key_jobs, key_times)
        self._sections(dict(sections or {}))
        return machine

    def _sections(self, sections: dict[str, Any]) -> None:
        """Each section ``snapshot_sections`` writes, back into the machine; one this raftq
        does not know was written by a newer one: refused by name, never dropped."""
        machine = self.machine
        self._groups(sections.pop("jobs.group", []))
        self._traceparents(sections.pop("jobs.traceparent", []))
        machine.limit_table.restore_section(sections.pop("limits", []))
        dependencies.read_sections(machine.jobs, sections)
        unique.read_sections(machine.jobs, sections)
        policy.restore_sections(machine, sections)
        machine.dependencies.rebuild(machine.jobs)
        machine.active_keys.rebuild(dependencies.with_extra(machine.jobs.values()))
        if schedules.SECTION in sections:
            machine.schedules = schedules.ScheduleTable.from_rows(sections.pop(schedules.SECTION))
        if sections:
            raise DecodeError(
                f"snapshot sections {sorted(sections)} are unknown to this raftq "
                "(written by a newer version?)"
            )

    def _traceparents(self, rows: Any) -> None:
        """The "jobs.traceparent" section: [job id, traceparent] of each traced job."""
        if not isinstance(rows, list):
            raise DecodeError("the jobs.traceparent section is not a list")
        for row in rows:
            if not (isinstance(row, list) and len(row) == 2 and isinstance(row[1], str)):
                raise DecodeError(f"a jobs.traceparent row is {row!r:.80}, not [job id, value]")
            job_id, traceparent = row
            job = self.machine.jobs.get(job_id) if isinstance(job_id, str) else None
            if job is None or not TRACEPARENT.fullmatch(traceparent):
                raise DecodeError(f"jobs.traceparent names an unknown job {job_id!r:.80}")
            if extra_of(job).traceparent:
                raise DecodeError(f"jobs.traceparent names {job_id!r:.80} twice")
            extra_of(job).traceparent = traceparent

    def _groups(self, rows: Any) -> None:
        """The "jobs.group" section: [job id, group] of each job that has a group."""
        machine = self.machine
        if not isinstance(rows, list):
            raise DecodeError("the jobs.group section is not a list")
        for row in rows:
            if not (isinstance(row, list) and len(row) == 2 and isinstance(row[1], str)):
                raise DecodeError(f"a jobs.group row is {row!r}, not [job id, group]")
            job_id, group = row
            job = machine.jobs.get(job_id) if isinstance(job_id, str) else None
            if job is None or not 0 < len(group) <= limits.NAME_CHARS_MAX:
                raise DecodeError(f"jobs.group names an unknown job {job_id!r} or bad group")
            if extra_of(job).group is not None:
                raise DecodeError(f"jobs.group names {job_id!r} twice")
            extra_of(job).group = group
            if job.state is JobState.RUNNING or job.state is JobState.PENDING:
                machine.limit_table.moved(group, None, job.state)

    def _keys(
        self, keys: Sequence[str], key_jobs: Sequence[str] | None, key_times: Sequence[int]
    ) -> None:
        machine = self.machine
        if key_jobs is None:  # the keys of every job held, in order: share the jobs' ids
            key_jobs = list(machine.jobs)
        if not len(keys) == len(key_jobs) == len(key_times):
            raise DecodeError(f"{len(keys)} keys, {len(key_jobs)} job ids, {len(key_times)} times")
        if any(map(operator.gt, key_times, key_times[1:])):
            raise DecodeError("idempotency keys out of the order they were taken")
        machine.keys = dict(zip(keys, key_jobs, strict=True))
        if len(machine.keys) != len(keys):
            raise DecodeError("an idempotency key is repeated")
        machine.key_order = deque(keys)
        machine.key_times = deque(key_times)


_id = operator.attrgetter("id")
_seq = operator.attrgetter("seq")
_queue = operator.attrgetter("queue")
_type = operator.attrgetter("type")
_state = operator.attrgetter("state")
_payload = operator.attrgetter("payload")
_ready = operator.attrgetter("ready")
_priority = operator.attrgetter("priority")
_run_at = operator.attrgetter("run_at_ms")
_extra = operator.attrgetter("extra")


def _any_depends(specs: tuple[JobSpec, ...]) -> bool:
    return any(spec.depends_on for spec in specs)


def _tally(firsts: list[Any], seconds: list[Any]) -> dict[tuple[Any, Any], int]:
    """How many of each (first, second) pair: ``Counter(zip(...))``, without a tuple per item
    in the usual case of one value each (a million jobs of one queue, all pending)."""
    if len(set(firsts)) == 1 and len(set(seconds)) == 1:
        return {(firsts[0], seconds[0]): len(firsts)}
    return Counter(zip(firsts, seconds, strict=True))


def _run_bytes(run: JobRun) -> int:
    """The result and error bytes a job's run holds, its history's errors included."""
    held = len(run.result) + len(run.error) + len(run.progress)
    return held + sum(len(event[7]) for event in run.history)


_HANDLERS = {
    Enqueue: JobStateMachine._enqueue,
    Claim: JobStateMachine._claim,
    Complete: JobStateMachine._complete,
    Fail: JobStateMachine._fail,
    Report: JobStateMachine._report,
    Extend: JobStateMachine._extend,
    Release: JobStateMachine._release,
    ExtendAll: JobStateMachine._extend_all,
    ExpireLeases: JobStateMachine._expire_leases,
    Cancel: JobStateMachine._cancel,
    Retry: JobStateMachine._retry,
    RetryDead: JobStateMachine._retry_dead,
    PauseQueue: JobStateMachine._pause,
    ResumeQueue: JobStateMachine._resume,
    Purge: JobStateMachine._purge,
    SetLimit: JobStateMachine._set_limit,
    RemoveLimit: JobStateMachine._remove_limit,
    Progress: JobStateMachine._progress,
    PutSchedule: schedules.put,
    RemoveSchedule: schedules.remove,
    FireSchedule: schedules.fire,
}
