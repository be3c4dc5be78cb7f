"""The job state machine's snapshot: its rows turned into bytes, and back.

This module knows the byte layout and nothing of the machine's indexes: encoding reads the
jobs and the machine's ``snapshot_orders()``; decoding builds ``Job`` rows and hands them to
``raftq.jobs.machine.Rebuild``, which derives every index.

Layout (version 6): a CBOR sequence (RFC 8742), items one after another, through
``raftq.codec``::

    [5, now_ms, next_seq, paused queues, queue and type names in order of first use,
     number of jobs, jobs per chunk]
    [one column per fixed field of every job, in enqueue order: type, queue, priority,
     state, attempts, max_attempts, timeout_ms, run_at_ms, enqueued_ms, seq, ready]
    [[position, fence, lease_expires_ms, claimer, result, error, finished_ms,
      cancel_requested, [history event, ...]], ...]      jobs that have run, by position
    [[job id, ...], [payload, ...]]                      one item per chunk of jobs
    [dead-letter ids, finished_ms column, [finished job id, ...], [idempotency key, ...],
     [its job id, ...] or null (the ids of every job held, in order), at_ms column]
    {section name: value, ...}                           version 6 on

The sections (``JobStateMachine.snapshot_sections``, read back by ``Rebuild.finish``) hold
what features add beyond the core rows: a replicated table (schedules, limits) is one
section; a job field that most jobs leave at its default is one section ``jobs.FIELD`` of
``[[job id, value], ...]`` for the jobs that set it, so a million plain jobs pay nothing for
it. Adding a section needs no new layout version; a raftq that finds a section it does not
know refuses the snapshot by name (it was written by a newer raftq) rather than dropping it.

A column is either ``[distinct values in order of first use, codes]`` where ``codes`` is a
byte string of one little-endian unsigned code per job (1, 2 or 4 bytes wide, the fewest that
fit), the index of its value among the distinct ones; or, when most values differ (``seq``),
a byte string of little-endian signed 64-bit integers. A million jobs of one queue and type
thus cost a few bytes per job beyond their id and payload, and decode without a CBOR item or
an integer object per field: every job of the same ``timeout_ms`` shares one.

Versions 2 to 4 (one CBOR item per job row) and version 1 (one CBOR array) are still read
(``_Rows``). ``Restore`` rebuilds in slices of ``limits.RESTORE_SLICE_JOBS`` jobs, so a node
can answer its peers between slices; ``JobStateMachine.restore`` runs it to the end at once.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import itertools
import operator
import sys
from array import array
from collections.abc import Callable, Generator, Iterator
from typing import Any

from raftq import codec, limits
from raftq.errors import DecodeError
from raftq.jobs.job import Job, JobRun, JobState
from raftq.jobs.machine import JobStateMachine, Rebuild

VERSION = 6
"""What ``encode_state`` writes; ``Restore`` reads 1 to 6. Version 3: each history event
also holds the log index and term of the entry that caused it; version 4: and the error of
the attempt it ended. Version 5: columns. Version 6: and the sections."""

_STATES = {state.value: state for state in JobState}
_CODE_TYPES = {1: "B", 2: "H", 4: "I"}
_COLUMNS = (
    "type",
    "queue",
    "priority",
    "state",
    "attempts",
    "max_attempts",
    "timeout_ms",
    "run_at_ms",
    "enqueued_ms",
    "seq",
    "ready",
)
_UNIQUE = frozenset({"seq"})
"""Columns written as plain 64-bit integers: every job's value differs."""


# --- encoding ---------------------------------------------------------------------------------


def encode_state(machine: JobStateMachine) -> bytes:
    with collector_paused():
        return codec.encode_plain_sequence(_items(machine))


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Building or reading a million rows makes the cyclic collector scan the heap over and
    over for nothing (the rows hold no cycles): half the time of a snapshot or restore."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _items(machine: JobStateMachine) -> Iterator[Any]:
    jobs = list(machine.jobs.values())
    chunk_jobs = limits.RESTORE_SLICE_JOBS
    yield [
        VERSION,
        machine.now_ms,
        machine.next_seq,
        list(machine.paused),
        list(machine.names),
        len(jobs),
        chunk_jobs,
    ]
    columns: list[Any] = []
    for name in _COLUMNS:
        values = list(map(operator.attrgetter(name), jobs))
        if name in _UNIQUE:
            columns.append(_plain_column(values))
        elif name == "state":
            distinct, codes = _coded_column(values)
            columns.append([[state.value for state in distinct], codes])
        else:
            columns.append(_coded_column(values))
    yield columns
    yield [_run_row(position, job) for position, job in enumerate(jobs) if job.run is not None]
    for start in range(0, len(jobs), chunk_jobs):
        chunk = jobs[start : start + chunk_jobs]
        yield [list(map(_id, chunk)), list(map(_payload, chunk))]
    dead, finished, keys = machine.snapshot_orders()
    yield [
        dead,
        _coded_column([finished_ms for finished_ms, _ in finished]),
        [job.id for _, job in finished],
        [key for key, _, _ in keys],
        _key_jobs([job_id for _, job_id, _ in keys], machine),
        _coded_column([at_ms for _, _, at_ms in keys]),
    ]
    yield machine.snapshot_sections()


def _key_jobs(job_ids: list[str], machine: JobStateMachine) -> list[str] | None:
    """The job id of each key; None when they are exactly the ids of every job held, in
    order (every job enqueued with a key, none purged): then a restore shares the jobs' own
    id strings rather than holding a second copy of each."""
    if len(job_ids) == len(machine.jobs) and job_ids == list(machine.jobs):
        return None
    return job_ids


_id = operator.attrgetter("id")
_payload = operator.attrgetter("payload")


def _coded_column(values: list[Any]) -> list[Any]:
    distinct = list(dict.fromkeys(values))
    code_of = {value: code for code, value in enumerate(distinct)}
    width = 1 if len(distinct) <= 1 << 8 else 2 if len(distinct) <= 1 << 16 else 4
    codes = array(_CODE_TYPES[width], map(code_of.__getitem__, values))
    if sys.byteorder == "big":
        codes.byteswap()
    return [distinct, codes.tobytes()]


def _plain_column(values: list[int]) -> bytes:
    numbers = array("q", values)
    if sys.byteorder == "big":
        numbers.byteswap()
    return numbers.tobytes()


def _run_row(position: int, job: Job) -> list[Any]:
    run = job.run
    assert run is not None
    return [
        position,
        run.fence,
        run.lease_expires_ms,
        run.claimer,
        run.result,
        run.error,
        run.finished_ms,
        run.cancel_requested,
        [list(event) for event in run.history],
    ]


# --- decoding ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _decoding(what: str) -> Iterator[None]:
    """Bad bytes (a wrong shape, type or value) become ``DecodeError``. Only around decoding:
    the machine's own code (``Rebuild``) runs outside, so a bug of ours (an ``AssertionError``)
    is raised as itself, never reported as a damaged snapshot."""
    try:
        yield
    except DecodeError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as error:
        raise DecodeError(f"not a job state snapshot ({what}): {error!r}") from None


class Restore:
    """A snapshot's machine, rebuilt a slice at a time.

    ``step()`` decodes and rebuilds about ``limits.RESTORE_SLICE_JOBS`` jobs (tens of
    milliseconds) and says whether the restore is complete; then ``machine`` is the result.
    ``run()`` does every step at once. A node that must keep answering heartbeats meanwhile
    calls ``step()`` and yields to its event loop between calls; the bytes must not change
    until the restore is complete. Bytes that are not a snapshot raise ``DecodeError`` from
    the step that finds out; the partial machine is then garbage.
    """

    def __init__(self, data: bytes) -> None:
        self._steps = self._all_steps(data)
        self._machine: JobStateMachine | None = None

    def step(self) -> bool:
        if self._machine is not None:
            return True
        with collector_paused():
            next(self._steps, True)
        return self._machine is not None

    def run(self) -> JobStateMachine:
        with collector_paused():
            for _ in self._steps:
                pass
        return self.machine

    @property
    def machine(self) -> JobStateMachine:
        assert self._machine is not None, "the restore is not complete"
        return self._machine

    def _all_steps(self, data: bytes) -> Iterator[bool]:
        items = codec.decode_plain_sequence(data)
        with _decoding("header"):
            header = next(items, None)
            if not isinstance(header, list) or not header:
                raise DecodeError("not a job state snapshot: no header")
            version = header[0]
        if version in (5, VERSION):
            machine = yield from _columns(header, items)
        elif version in (1, 2, 3, 4):
            machine = yield from _Rows(header, items).steps()
        else:
            raise DecodeError(f"job snapshot version {version!r}; this raftq reads 1 to {VERSION}")
        with _decoding("end"):
            if next(items, None) is not None:
                raise DecodeError("data after the end of the job state snapshot")
        self._machine = machine
        yield True


def _columns(header: list[Any], items: Iterator[Any]) -> Generator[bool, None, JobStateMachine]:
    """Versions 5 and 6; returns the machine (``yield from``'s value)."""
    with _decoding("header"):
        _version, now_ms, next_seq, paused, names, job_count, chunk_jobs = header
        _check_types(paused, str, "paused queues")
        _check_types(names, str, "names")
        _check_types([now_ms, next_seq, job_count, chunk_jobs], int, "header")
        if job_count < 0 or chunk_jobs <= 0:
            raise DecodeError(f"job count {job_count} or chunk size {chunk_jobs} impossible")
        name_of = {name: name for name in names}
        columns = dict(zip(_COLUMNS, _next(items, "columns"), strict=True))
        decoders = {
            name: _column_decoder(name, raw, job_count, name_of) for name, raw in columns.items()
        }
        runs = _runs(_next(items, "runs"), job_count)
    rebuild = Rebuild(now_ms=now_ms, next_seq=next_seq, paused=paused, names=name_of.values())
    yield False
    run_positions = sorted(runs)
    for start in range(0, job_count, chunk_jobs):
        end = min(start + chunk_jobs, job_count)
        with _decoding(f"jobs {start} to {end}"):
            ids, payloads = _next(items, f"jobs {start} to {end}")
            if len(ids) != end - start or len(payloads) != end - start:
                raise DecodeError(f"a chunk of {len(ids)} jobs where {end - start} belong")
            _check_types(ids, str, "job ids")
            _check_types(payloads, bytes, "payloads")
            fields = [decoders[name](start, end) for name in _COLUMNS]
            jobs = list(map(_job, ids, payloads, *fields))
        first_run = bisect.bisect_left(run_positions, start)
        for position in run_positions[first_run : bisect.bisect_left(run_positions, end)]:
            jobs[position - start].run = runs[position]
        rebuild.add_jobs(jobs)
        yield False
    with _decoding("orders"):
        dead, finished_ms, finished_ids, keys, key_jobs, key_times = _next(items, "orders")
        _check_types(dead, str, "dead-letter ids")
        _check_types(finished_ids, str, "finished job ids")
        _check_types(keys, str, "idempotency keys")
        if key_jobs is not None:
            _check_types(key_jobs, str, "idempotency key job ids")
        finished_times = _column_decoder("finished_ms", finished_ms, len(finished_ids), {})
        key_time_values = _column_decoder("at_ms", key_times, len(keys), {})
        finished = list(zip(finished_times(0, len(finished_ids)), finished_ids, strict=True))
        at_ms = list(key_time_values(0, len(keys)))
        sections = _next(items, "sections") if header[0] >= 6 else {}
        if not isinstance(sections, dict) or not all(isinstance(name, str) for name in sections):
            raise DecodeError(f"sections are {type(sections).__name__}, not a map by name")
    return rebuild.finish(
        dead=dead,
        finished=finished,
        keys=keys,
        key_jobs=key_jobs,
        key_times=at_ms,
        sections=sections,
    )


def _job(
    job_id: str,
    payload: bytes,
    job_type: str,
    queue: str,
    priority: int,
    state: JobState,
    attempts: int,
    max_attempts: int,
    timeout_ms: int,
    run_at_ms: int,
    enqueued_ms: int,
    seq: int,
    ready: bool,
) -> Job:
    job = Job.__new__(Job)
    job.id = job_id
    job.type = job_type
    job.queue = queue
    job.priority = priority
    job.payload = payload
    job.max_attempts = max_attempts
    job.timeout_ms = timeout_ms
    job.run_at_ms = run_at_ms
    job.enqueued_ms = enqueued_ms
    job.seq = seq
    job.state = state
    job.attempts = attempts
    job.ready = ready
    job.run = None
    job.extra = None  # set from the sections (``Rebuild.finish``) for the few jobs that have one
    return job


def _next(items: Iterator[Any], what: str) -> Any:
    item = next(items, None)
    if item is None:
        raise DecodeError(f"job snapshot ends before its {what}")
    return item


def _check_types(values: list[Any], kind: type, what: str) -> None:
    if not isinstance(values, list) or not set(map(type, values)) <= {kind}:
        raise DecodeError(f"{what}: expected a list of {kind.__name__}")


_VALUE_TYPES: dict[str, type] = {"type": str, "queue": str, "state": str, "ready": bool}


def _column_decoder(
    name: str, raw: Any, count: int, name_of: dict[str, str]
) -> Callable[[int, int], Iterator[Any]]:
    """A function of (start, end) that gives the column's values of those jobs, one at a time
    (no list of them: a slice's transient memory stays a few bytes per job)."""
    if isinstance(raw, bytes):
        if len(raw) != 8 * count:
            raise DecodeError(f"column {name}: {len(raw)} bytes for {count} jobs")
        numbers = array("q", raw)
        if sys.byteorder == "big":
            numbers.byteswap()
        return lambda start, end: iter(numbers[start:end])
    distinct, code_bytes = raw
    _check_types(distinct, _VALUE_TYPES.get(name, int), f"column {name}")
    if name in ("type", "queue"):
        distinct = [name_of[value] for value in distinct]  # the name table's own strings
    elif name == "state":
        distinct = [_STATES[value] for value in distinct]
    width = len(code_bytes) // count if count else 1
    if width not in _CODE_TYPES or len(code_bytes) != width * count:
        raise DecodeError(f"column {name}: {len(code_bytes)} bytes of codes for {count} jobs")
    codes = array(_CODE_TYPES[width], code_bytes)
    if sys.byteorder == "big":
        codes.byteswap()
    if count and max(codes) >= len(distinct):
        raise DecodeError(f"column {name}: a code past its {len(distinct)} values")
    return lambda start, end: map(distinct.__getitem__, codes[start:end])


def _runs(rows: Any, job_count: int) -> dict[int, JobRun]:
    if not isinstance(rows, list):
        raise DecodeError("runs: expected a list")
    runs: dict[int, JobRun] = {}
    for row in rows:
        position, *run_row = row
        if type(position) is not int or not 0 <= position < job_count or position in runs:
            raise DecodeError(f"a run at position {position!r} of {job_count} jobs")
        runs[position] = _run_from_row(run_row)
    return runs


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


class _Rows:
    """Versions 1 to 4: one row per job (version 1: all in one CBOR array)::

    [VERSION, now_ms, next_seq, paused, names, number of jobs]    (versions 2 to 4)
    [id, type, queue, priority, payload, state, attempts, max_attempts, timeout_ms,
     run_at_ms, enqueued_ms, seq, ready, run row or null]         one per job
    [dead ids, [[finished_ms, id], ...], [[key, job id, at_ms], ...]]
    """

    def __init__(self, header: list[Any], items: Iterator[Any]) -> None:
        self._header = header
        self._items = items

    def steps(self) -> Generator[bool, None, JobStateMachine]:
        with _decoding("header"):
            if self._header[0] == 1:
                (_, now_ms, next_seq, paused, rows, dead, finished, keys, names) = self._header
                rows_iter: Iterator[Any] = iter(rows)
                job_count = len(rows)
            else:
                _, now_ms, next_seq, paused, names, job_count = self._header
                rows_iter = itertools.islice(self._items, job_count)
            _check_types(names, str, "names")
            name_of = {name: name for name in names}
        rebuild = Rebuild(now_ms=now_ms, next_seq=next_seq, paused=paused, names=name_of.values())
        done = 0
        while True:
            with _decoding(f"job rows after {done}"):
                jobs = [
                    self._job(row, name_of)
                    for row in itertools.islice(rows_iter, limits.RESTORE_SLICE_JOBS)
                ]
            if not jobs:
                break
            rebuild.add_jobs(jobs)
            done += len(jobs)
            yield False
        if done != job_count:
            raise DecodeError(f"job snapshot ends after {done} of {job_count} jobs")
        with _decoding("orders"):
            if self._header[0] != 1:
                dead, finished, keys = _next(self._items, "dead-letter, finish and key orders")
            finished_pairs = [(finished_ms, job_id) for finished_ms, job_id in finished]
            key_rows = [(key, job_id, at_ms) for key, job_id, at_ms in keys]
        return rebuild.finish(
            dead=dead,
            finished=finished_pairs,
            keys=[key for key, _, _ in key_rows],
            key_jobs=[job_id for _, job_id, _ in key_rows],
            key_times=[at_ms for _, _, at_ms in key_rows],
        )

    @staticmethod
    def _job(row: list[Any], name_of: dict[str, str]) -> Job:
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
        job = _job(
            job_id,
            payload,
            name_of[job_type],
            name_of[queue],
            priority,
            _STATES[state],
            attempts,
            max_attempts,
            timeout_ms,
            run_at_ms,
            enqueued_ms,
            seq,
            ready,
        )
        job.run = None if run_row is None else _run_from_row(run_row)
        return job
