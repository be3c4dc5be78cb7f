"""The job state machine's snapshot: every job as a row, plus the orders that matter.

Layout (version 4; versions 2 and 3 are the same with five- and seven-item history events):
a CBOR sequence (RFC 8742), items one after another, through ``raftq.codec``::

    [VERSION, now_ms, next_seq, paused queues, queue and type names in order of first use,
     number of jobs]
    one row per job, in enqueue order
    [dead-letter ids in order of death, [finished_ms, id] in finish order,
     [key, job id, at_ms] oldest first]

Rows are written and read one at a time: a restore turns each row into its job before it
reads the next, so it never holds a million raw rows next to the million jobs they become
(which doubled the memory a restore needed, and left the process that much bigger after it).
Version 1, one CBOR array of ``[1, now_ms, next_seq, paused, rows, dead, finished, keys,
names]``, is still read.

The indexes (ready FIFOs, waiting and lease heaps, counts) are rebuilt on restore: each ready
FIFO is exactly its jobs sorted by (run_at, enqueue order), and heaps are heaps. So restoring a
snapshot and applying the rest of the log gives the same state as applying the whole log, and
the same ``snapshot()`` bytes (the digest the simulator compares).
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import itertools
from collections import deque
from collections.abc import Iterator
from typing import Any

from raftq import codec
from raftq.errors import DecodeError
from raftq.jobs.job import FINISHED, Job, JobRun, JobState
from raftq.jobs.machine import JobStateMachine, _ReadyQueue

VERSION = 4
"""What ``encode_state`` writes; ``decode_state`` reads 1 to 4. Version 3: each history event
also holds the log index and term of the entry that caused it; version 4: and the error of
the attempt it ended."""

_STATES = {state.value: state for state in JobState}


def encode_state(machine: JobStateMachine) -> bytes:
    with _collector_paused():
        return _encode(machine)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Building or reading a million rows makes the cyclic collector scan the heap over and
    over for nothing (the rows hold no cycles): half the time of a snapshot or restore."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _encode(machine: JobStateMachine) -> bytes:
    finished = [
        [finished_ms, job.id]
        for finished_ms, job in machine.finished
        if job.state in FINISHED
        and job.run is not None
        and job.run.finished_ms == finished_ms
        and machine.jobs.get(job.id) is job
    ]
    keys = [
        [key, machine.keys[key][0], at_ms]
        for at_ms, key in machine.key_order
        if machine.keys.get(key, ("", -1))[1] == at_ms
    ]
    header = [
        VERSION,
        machine.now_ms,
        machine.next_seq,
        list(machine.paused),
        list(machine.names),
        len(machine.jobs),
    ]
    rows = map(_job_row, machine.jobs.values())
    return codec.encode_plain_sequence(
        itertools.chain([header], rows, [[list(machine.dead), finished, keys]])
    )


def _job_row(job: Job) -> list[Any]:
    run = job.run
    run_row = (
        None
        if run is None
        else [
            run.fence,
            run.lease_expires_ms,
            run.claimer,
            run.result,
            run.error,
            run.finished_ms,
            run.cancel_requested,
            [list(event) for event in run.history],
        ]
    )
    return [
        job.id,
        job.type,
        job.queue,
        job.priority,
        job.payload,
        job.state.value,
        job.attempts,
        job.max_attempts,
        job.timeout_ms,
        job.run_at_ms,
        job.enqueued_ms,
        job.seq,
        job.ready,
        run_row,
    ]


def decode_state(data: bytes) -> JobStateMachine:
    with _collector_paused():
        items = codec.decode_plain_sequence(data)
        try:
            first = next(items, None)
            if isinstance(first, list) and first and first[0] == 1:
                machine = _rebuild_version_1(first)
            else:
                machine = _rebuild(first, items)
            if next(items, None) is not None:
                raise DecodeError("data after the end of the job state snapshot")
            return machine
        except DecodeError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AssertionError) as error:
            raise DecodeError(f"not a job state snapshot: {error!r}") from None


def _rebuild(header: Any, items: Iterator[Any]) -> JobStateMachine:
    version, now_ms, next_seq, paused, names_in_order, job_count = header
    if version not in (2, 3, VERSION):
        raise DecodeError(f"job snapshot version {version}, this raftq reads 1 to {VERSION}")
    rows = itertools.islice(items, job_count)
    machine = _rebuild_jobs(now_ms, next_seq, paused, names_in_order, rows)
    if len(machine.jobs) != job_count:
        raise DecodeError(f"job snapshot ends after {len(machine.jobs)} of {job_count} jobs")
    tail = next(items, None)
    if tail is None:
        raise DecodeError("job snapshot ends before its dead-letter, finish and key orders")
    dead, finished, keys = tail
    _rebuild_orders(machine, dead, finished, keys)
    return machine


def _rebuild_version_1(raw: list[Any]) -> JobStateMachine:
    _version, now_ms, next_seq, paused, rows, dead, finished, keys, names_in_order = raw
    machine = _rebuild_jobs(now_ms, next_seq, paused, names_in_order, iter(rows))
    _rebuild_orders(machine, dead, finished, keys)
    return machine


def _rebuild_jobs(
    now_ms: int, next_seq: int, paused: list[str], names_in_order: list[str], rows: Iterator[Any]
) -> JobStateMachine:
    machine = JobStateMachine()
    machine.now_ms = now_ms
    machine.next_seq = next_seq
    machine.paused = dict.fromkeys(paused)
    machine.names = {name: name for name in names_in_order}
    fifos: dict[tuple[str, str, int], list[Job]] = {}
    jobs = machine.jobs
    counts = machine.counts
    names = machine.names
    waiting, leases = machine.waiting, machine.leases
    pending, failed, running = JobState.PENDING, JobState.FAILED, JobState.RUNNING
    new_job = Job.__new__
    # One pass, inlined: this loop runs a million times for a million jobs.
    for row in rows:
        (
            job_id,
            job_type,
            queue,
            priority,
            payload,
            state,
            attempts,
            max_attempts,
            timeout_ms,
            run_at_ms,
            enqueued_ms,
            seq,
            ready,
            run_row,
        ) = row
        job = new_job(Job)
        job.id = job_id
        job.type = job_type = names.get(job_type) or names.setdefault(job_type, job_type)
        job.queue = queue = names.get(queue) or names.setdefault(queue, queue)
        job.priority = priority
        job.payload = payload
        job.max_attempts = max_attempts
        job.timeout_ms = timeout_ms
        job.run_at_ms = run_at_ms
        job.enqueued_ms = enqueued_ms
        job.seq = seq
        job.state = state = _STATES[state]
        job.attempts = attempts
        job.ready = ready
        job.run = None if run_row is None else _run_from_row(run_row)
        jobs[job_id] = job
        counted = (queue, state)
        counts[counted] = counts.get(counted, 0) + 1
        if ready and state is pending:
            fifo = fifos.get((queue, job_type, priority))
            if fifo is None:
                fifo = fifos[(queue, job_type, priority)] = []
            fifo.append(job)
        elif state is pending or state is failed:
            waiting.append((run_at_ms, seq, job))
        elif state is running:
            assert job.run is not None
            leases.append((job.run.lease_expires_ms, seq, job))
    for (queue, job_type, priority), fifo in fifos.items():
        fifo.sort(key=_run_at)  # stable: enqueue order among equal run_at
        source = machine.ready.get((queue, job_type))
        if source is None:
            source = machine.ready[(queue, job_type)] = _ReadyQueue()
        source.extend_sorted(priority, fifo)
    heapq.heapify(machine.waiting)
    heapq.heapify(machine.leases)
    return machine


def _rebuild_orders(machine: JobStateMachine, dead: Any, finished: Any, keys: Any) -> None:
    jobs = machine.jobs
    machine.dead = {job_id: None for job_id in dead}
    machine.finished = deque((finished_ms, jobs[job_id]) for finished_ms, job_id in finished)
    for key, job_id, at_ms in keys:
        machine.keys[key] = (job_id, at_ms)
        machine.key_order.append((at_ms, key))


def _run_at(job: Job) -> int:
    return job.run_at_ms


def _run_from_row(run_row: list[Any]) -> JobRun:
    run = JobRun()
    (
        run.fence,
        run.lease_expires_ms,
        run.claimer,
        run.result,
        run.error,
        run.finished_ms,
        run.cancel_requested,
        history,
    ) = run_row
    run.history = [_event_from_row(event) for event in history]
    return run


def _event_from_row(row: list[Any]) -> tuple[int, str, int, str, int, int, int, str]:
    """A history event; those of version 1 and 2 snapshots have no index and term (0), and
    those before version 4 no error ("")."""
    if len(row) == 5:
        at_ms, event, attempt, node, fence = row
        return (at_ms, event, attempt, node, fence, 0, 0, "")
    if len(row) == 7:
        at_ms, event, attempt, node, fence, index, term = row
        return (at_ms, event, attempt, node, fence, index, term, "")
    at_ms, event, attempt, node, fence, index, term, error = row
    return (at_ms, event, attempt, node, fence, index, term, error)
