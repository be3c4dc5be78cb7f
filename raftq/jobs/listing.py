"""The listing index: jobs in enqueue order, in blocks that count their jobs by filter.

A page of ``GET /api/v1/jobs`` (or ``raftq jobs``) is the jobs after a cursor, the enqueue
order (``Job.seq``) of the last job seen, that match a state, queue and type. Jobs are kept in
blocks of ``limits.LIST_BLOCK_JOBS`` consecutive sequence numbers, each with a count of its
jobs per (queue, type, state): a page steps over every block without a match and scans only
the others, at most ``limits.LIST_SCAN_JOBS_MAX`` jobs, and ends after
``limits.JOBS_PAGE_BYTES_MAX`` bytes of payloads, results and errors (then the page is short
and its cursor points where it stopped). Since sequence numbers only grow, a job enqueued
meanwhile comes after every cursor already handed out, and a job that changes state keeps its
place: paging neither repeats nor skips a job that matched throughout.

Pure and owned by the state machine, which calls ``add``, ``moved`` and ``remove`` as jobs are
enqueued, change state and are purged. Derived state: rebuilt from the jobs on restore
(``extend``), never part of a snapshot.
"""

from __future__ import annotations

import bisect
import operator
from collections import Counter
from collections.abc import Iterator, Sequence

from raftq import limits
from raftq.jobs.job import Job, JobState


class _Block:
    __slots__ = ("jobs", "names", "states")

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        """In enqueue order (ascending ``seq``)."""
        self.states: dict[JobState, int] = {}
        """Jobs per state: changed on every transition, so a plain counter (no tuple keys)."""
        self.names: dict[tuple[str, str], int] = {}
        """Jobs per (queue, type): changed only on enqueue and purge."""

    def has_match(self, state: JobState | None, queue: str | None, job_type: str | None) -> bool:
        """Whether the block may hold a match. Counted apart, a state and a name may each be
        present without a job that has both: then the block is scanned for nothing, within
        the page's scan bound."""
        if state is not None and not self.states.get(state):
            return False
        if queue is None and job_type is None:
            return True
        return any(
            (queue is None or name[0] == queue) and (job_type is None or name[1] == job_type)
            for name in self.names
        )


def _seq(job: Job) -> int:
    return job.seq


_state = operator.attrgetter("state")


def _tally(values: list[JobState]) -> dict[JobState, int]:
    return {values[0]: len(values)} if len(set(values)) == 1 else Counter(values)


_queue = operator.attrgetter("queue")
_type = operator.attrgetter("type")


def _bytes(job: Job) -> int:
    """What a job adds to a page's reply that can be large: payload, result, error, and the
    errors its history keeps (one per failed attempt, at most ``JOB_HISTORY_MAX``)."""
    run = job.run
    if run is None:
        return len(job.payload)
    kept_errors = sum(len(event[7]) for event in run.history)
    return len(job.payload) + len(run.result) + len(run.error) + kept_errors


class ListingIndex:
    def __init__(self, block_jobs: int | None = None) -> None:
        self.block_jobs = limits.LIST_BLOCK_JOBS if block_jobs is None else block_jobs
        assert self.block_jobs > 0, self.block_jobs
        self.blocks: dict[int, _Block] = {}
        """Block number (``seq // block_jobs``) -> block; created in ascending order and
        never again once emptied (sequence numbers only grow), so the dict stays sorted."""

    def add(self, job: Job) -> None:
        """A job just enqueued: its ``seq`` is the highest yet."""
        number = job.seq // self.block_jobs
        block = self.blocks.get(number)
        if block is None:
            assert not self.blocks or number > next(reversed(self.blocks)), "seq only grows"
            block = self.blocks[number] = _Block()
        jobs = block.jobs
        assert not jobs or jobs[-1].seq < job.seq, "seq only grows"
        jobs.append(job)
        states, names = block.states, block.names
        states[job.state] = states.get(job.state, 0) + 1
        name = (job.queue, job.type)
        names[name] = names.get(name, 0) + 1

    def moved(self, job: Job, old: JobState, new: JobState) -> None:
        """On every state change of every job: kept to two dictionary updates."""
        states = self.blocks[job.seq // self.block_jobs].states
        states[old] -= 1
        states[new] = states.get(new, 0) + 1

    def remove(self, job: Job) -> None:
        number = job.seq // self.block_jobs
        block = self.blocks[number]
        position = bisect.bisect_left(block.jobs, job.seq, key=_seq)
        assert block.jobs[position] is job, job.id
        del block.jobs[position]
        block.states[job.state] -= 1
        name = (job.queue, job.type)
        left = block.names[name] - 1
        if left:
            block.names[name] = left
        else:
            del block.names[name]
        if not block.jobs:
            del self.blocks[number]

    def extend(self, jobs: Sequence[Job]) -> None:
        """Jobs in enqueue order, each after every job already held (a restore, slice by
        slice): a block's jobs at once, counted in C (``Counter``), not one ``add`` each."""
        start = 0
        while start < len(jobs):
            number = jobs[start].seq // self.block_jobs
            end = bisect.bisect_left(jobs, (number + 1) * self.block_jobs, lo=start, key=_seq)
            chunk = jobs[start:end]
            block = self.blocks.get(number)
            if block is None:
                assert not self.blocks or number > next(reversed(self.blocks)), "seq only grows"
                block = self.blocks[number] = _Block()
            assert not block.jobs or block.jobs[-1].seq < chunk[0].seq, "seq only grows"
            block.jobs.extend(chunk)
            states, names = block.states, block.names
            for state, count in _tally(list(map(_state, chunk))).items():
                states[state] = states.get(state, 0) + count
            queues, types = list(map(_queue, chunk)), list(map(_type, chunk))
            if len(set(queues)) == 1 and len(set(types)) == 1:  # no tuple per job
                name_counts: dict[tuple[str, str], int] = {(queues[0], types[0]): len(chunk)}
            else:
                name_counts = Counter(zip(queues, types, strict=True))
            for name, count in name_counts.items():
                names[name] = names.get(name, 0) + count
            start = end

    def page(
        self,
        *,
        state: JobState | None = None,
        queue: str | None = None,
        job_type: str | None = None,
        cursor: int = 0,
        limit: int = 100,
        newest_first: bool = False,
        scan_max: int = limits.LIST_SCAN_JOBS_MAX,
        bytes_max: int = limits.JOBS_PAGE_BYTES_MAX,
    ) -> tuple[list[Job], int]:
        """Up to ``limit`` matching jobs after ``cursor`` (a ``seq``; 0: from the oldest, or
        with ``newest_first`` from the newest), and the cursor of the next page (0: none)."""
        assert limit > 0, limit
        assert scan_max > 0, scan_max
        assert cursor >= 0, cursor
        found: list[Job] = []
        found_bytes = 0
        jobs = self._after(cursor, newest_first, state, queue, job_type)
        for examined, job in enumerate(jobs, 1):
            if (
                (state is None or job.state is state)
                and (queue is None or job.queue == queue)
                and (job_type is None or job.type == job_type)
            ):
                found.append(job)
                found_bytes += _bytes(job)
                if len(found) == limit or found_bytes > bytes_max:
                    return found, job.seq
            if examined >= scan_max:
                return found, job.seq
        return found, 0

    def _after(
        self,
        cursor: int,
        newest_first: bool,
        state: JobState | None,
        queue: str | None,
        job_type: str | None,
    ) -> Iterator[Job]:
        """Jobs after the cursor, in page order, in blocks that hold a match."""
        numbers = list(self.blocks)
        if newest_first:
            start = cursor // self.block_jobs if cursor else None
            for number in reversed(numbers):
                if start is not None and number > start:
                    continue
                block = self.blocks[number]
                if not block.has_match(state, queue, job_type):
                    continue
                jobs = block.jobs
                end = bisect.bisect_left(jobs, cursor, key=_seq) if cursor else len(jobs)
                yield from reversed(jobs[:end])
        else:
            first = bisect.bisect_left(numbers, cursor // self.block_jobs)
            for number in numbers[first:]:
                block = self.blocks[number]
                if not block.has_match(state, queue, job_type):
                    continue
                jobs = block.jobs
                yield from jobs[bisect.bisect_right(jobs, cursor, key=_seq) :]
