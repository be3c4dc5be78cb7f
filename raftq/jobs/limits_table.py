"""Concurrency and rate limits per queue and per group: the table, what runs under each, and
the parked jobs of full groups (docs/limits.md).

Pure: the job state machine calls in at a claim, at every move out of ``running`` and at
each command's stamped ``now_ms``; nothing here reads a clock.

- **Concurrency** N: at most N jobs of the queue or group are ``running`` at once. A job
  counts from the claim that hands it out (a prefetched job not started yet counts) until
  it leaves ``running`` (completion, failure, lease expiry, cancel, ``Release``): the machine
  moves each job out of ``running`` exactly once per lease, so a slot is freed once.
- **Rate** N per S ms: at most N jobs of the queue or group handed out by claims in any
  window of S ms (sliding, on the leader-stamped ``now_ms``): a claim at ``now`` may hand one
  out only if fewer than N of the recorded hand-outs are in ``(now - S, now]``. The last N
  hand-out times are kept (integers); a released job's hand-out stays counted. Hand-outs are
  recorded from when the rate is set; setting another rate or window starts afresh.

Blocked jobs do not block the others. A queue that is full is skipped whole by the claim (its
ready queues are not looked at). A group's jobs share ready queues with everybody's, so a
claim that meets a job of a blocked group parks it in the group's **lane** (a heap per
(queue, type, group), best job first) and looks further; when the group opens again (a slot
freed, its rate window moved on, its limit raised or removed) each lane puts back its best
job, its *representative*, and the next one when that is claimed. So a claim meets at most one
job per lane of a blocked group, once: with 10,000 groups limited to one, the blocked jobs are
not scanned one by one.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from typing import Any

from raftq import limits
from raftq.errors import DecodeError
from raftq.jobs.job import Job, JobState

QUEUE = "queue"
GROUP = "group"
SCOPES = (QUEUE, GROUP)


class Limit:
    """One row of the table; 0 means no such limit (a row has at least one)."""

    __slots__ = ("concurrency", "rate", "starts", "window_ms")

    def __init__(self, *, concurrency: int, rate: int, window_ms: int) -> None:
        assert concurrency > 0 or rate > 0, (concurrency, rate)
        self.concurrency = concurrency
        self.rate = rate
        self.window_ms = window_ms
        self.starts: deque[int] = deque(maxlen=rate or 1)
        """The times of the last ``rate`` hand-outs, oldest first (empty without a rate)."""

    def rate_full(self, now_ms: int) -> bool:
        starts = self.starts
        return bool(self.rate) and len(starts) >= self.rate and starts[0] > now_ms - self.window_ms

    def reopens_ms(self) -> int:
        """When a full rate window lets the next job start."""
        return self.starts[0] + self.window_ms


class _Lane:
    """A blocked group's parked jobs of one (queue, type), and its representative: the job
    it last put back into the ready queue (while the group is open, every parked job ranks
    after the representative, so the claim order is kept). Claims meet jobs in rank order, so
    parked jobs come in order: a FIFO, plus a heap for one that comes out of order."""

    __slots__ = ("fifo", "late", "representative")

    def __init__(self) -> None:
        self.fifo: deque[Job] = deque()
        self.late: list[tuple[int, int, int, Job]] = []  # (-priority, run_at_ms, seq, job)
        self.representative: Job | None = None

    def push(self, job: Job) -> None:
        fifo = self.fifo
        if fifo and _rank(job) < _rank(fifo[-1]):
            heapq.heappush(self.late, (-job.priority, job.run_at_ms, job.seq, job))
        else:
            fifo.append(job)

    def head(self) -> Job | None:
        """The best parked job still due (the others are dropped on the way)."""
        fifo, late = self.fifo, self.late
        while fifo and not _due(fifo[0]):
            fifo.popleft()
        while late and not _due(late[0][3]):
            heapq.heappop(late)
        if late and (not fifo or late[0][:3] < _rank(fifo[0])):
            return late[0][3]
        return fifo[0] if fifo else None

    def pop(self, job: Job) -> None:
        if self.fifo and self.fifo[0] is job:
            self.fifo.popleft()
        else:
            assert self.late[0][3] is job
            heapq.heappop(self.late)

    def __len__(self) -> int:
        return len(self.fifo) + len(self.late)


def _due(job: Job) -> bool:
    return job.state is JobState.PENDING and job.ready


def _rank(job: Job) -> tuple[int, int, int]:
    return (-job.priority, job.run_at_ms, job.seq)


def group_of(job: Job) -> str | None:
    extra = job.extra
    return None if extra is None else extra.group


class LimitsTable:
    def __init__(self) -> None:
        self.limits: dict[tuple[str, str], Limit] = {}
        """(scope, name) -> its limit: the replicated table."""
        self.queues: dict[str, Limit] = {}
        self.groups: dict[str, Limit] = {}
        """The same limits by queue and by group name (no tuple made per look-up)."""
        self.rate_starts = 0
        """The sum of the rate counts (``LIMIT_RATE_STARTS_MAX``)."""
        self.group_running: dict[str, int] = {}
        self.group_pending: dict[str, int] = {}
        """Group -> its jobs running, and pending (derived from the jobs: rebuilt on
        restore)."""
        self.lanes: dict[str, dict[tuple[str, str], _Lane]] = {}
        """Group -> (queue, type) -> its lane. Derived, and not rebuilt on restore: a restored
        machine has every ready job in its ready queue, which claims the same jobs."""
        self.wakeups: list[tuple[int, str]] = []
        """Heap of (ms, group): when a rate-blocked group with parked jobs may open."""
        self.waking: dict[str, int] = {}
        """Group -> the wake-up it has in ``wakeups`` (one each)."""

    # --- the table ------------------------------------------------------------------------------

    def set(self, scope: str, name: str, *, concurrency: int, rate: int, window_ms: int) -> str:
        """Set (or replace) a limit; "" if done, else why not. A new rate or window counts
        hand-outs from now on (its window starts afresh); the same rate and window set again
        (a retried command) keep the hand-outs counted so far."""
        key = (scope, name)
        old = self.limits.get(key)
        old_rate = old.rate if old is not None else 0
        if old is None and len(self.limits) >= limits.LIMITS_MAX:
            return f"the cluster holds its maximum of {limits.LIMITS_MAX} limits"
        if self.rate_starts - old_rate + rate > limits.LIMIT_RATE_STARTS_MAX:
            return f"the rate counts of all limits would sum past {limits.LIMIT_RATE_STARTS_MAX}"
        limit = Limit(concurrency=concurrency, rate=rate, window_ms=window_ms)
        if old is not None and (old.rate, old.window_ms) == (rate, window_ms):
            limit.starts.extend(old.starts)
        self.limits[key] = limit
        (self.queues if scope == QUEUE else self.groups)[name] = limit
        self.rate_starts += rate - old_rate
        return ""

    def remove(self, scope: str, name: str) -> bool:
        limit = self.limits.pop((scope, name), None)
        if limit is None:
            return False
        del (self.queues if scope == QUEUE else self.groups)[name]
        self.rate_starts -= limit.rate
        return True

    def rows(self) -> Iterator[tuple[str, str, Limit]]:
        """Every limit, sorted by scope and name."""
        for (scope, name), limit in sorted(self.limits.items()):
            yield scope, name, limit

    # --- what runs ------------------------------------------------------------------------------

    def queue_open(self, queue: str, running: int, now_ms: int) -> bool:
        limit = self.queues.get(queue)
        if limit is None:
            return True
        if limit.concurrency and running >= limit.concurrency:
            return False
        return not limit.rate_full(now_ms)

    def group_open(self, group: str, now_ms: int) -> bool:
        limit = self.groups.get(group)
        if limit is None:
            return True
        if limit.concurrency and self.group_running.get(group, 0) >= limit.concurrency:
            return False
        return not limit.rate_full(now_ms)

    def handed_out(self, queue: str, group: str | None, now_ms: int) -> None:
        """A claim handed out a job of ``queue`` and ``group``: its rate limits count it."""
        limit = self.queues.get(queue)
        if limit is not None and limit.rate:
            limit.starts.append(now_ms)
        if group is not None:
            limit = self.groups.get(group)
            if limit is not None and limit.rate:
                limit.starts.append(now_ms)

    def moved(self, group: str, old: JobState | None, new: JobState) -> bool:
        """A job of ``group`` moved from ``old`` (None: enqueued) to ``new``; True if that
        freed a slot (it left ``running``)."""
        if old is new:
            return False
        if old is JobState.RUNNING:
            _less(self.group_running, group)
        elif old is JobState.PENDING:
            _less(self.group_pending, group)
        if new is JobState.RUNNING:
            self.group_running[group] = self.group_running.get(group, 0) + 1
        elif new is JobState.PENDING:
            self.group_pending[group] = self.group_pending.get(group, 0) + 1
        return old is JobState.RUNNING

    # --- lanes ----------------------------------------------------------------------------------

    def park(self, job: Job, group: str, now_ms: int) -> None:
        """``job`` (due, of blocked ``group``) leaves its ready queue for the group's lane."""
        lanes = self.lanes.setdefault(group, {})
        lane = lanes.get((job.queue, job.type))
        if lane is None:
            lane = lanes[(job.queue, job.type)] = _Lane()
        lane.push(job)
        if lane.representative is job:
            lane.representative = None
        self._wake_later(group, now_ms)

    def _wake_later(self, group: str, now_ms: int) -> None:
        """If ``group`` is blocked by its rate, wake its lanes when the window moves. A wake-up
        already due earlier stands (waking early only finds the group still closed and asks
        again); one due later is replaced: it was set under an older, longer window, and
        kept, the group would reopen with its jobs still parked while newer ones went first."""
        limit = self.groups[group]
        if not limit.rate or not limit.rate_full(now_ms):
            return
        at_ms = limit.reopens_ms()
        known = self.waking.get(group)
        if known is not None and known <= at_ms:
            return
        self.waking[group] = at_ms  # a replaced wake-up's heap entry is skipped when due
        heapq.heappush(self.wakeups, (at_ms, group))

    def left_ready(self, job: Job, group: str) -> bool:
        """``job`` of ``group`` stopped being due (claimed, cancelled): True if it was its
        lane's representative, so that the lane must put back its next job."""
        lanes = self.lanes.get(group)
        lane = None if lanes is None else lanes.get((job.queue, job.type))
        if lane is None or lane.representative is not job:
            return False
        lane.representative = None
        return True

    def unpark(self, group: str, now_ms: int) -> list[Job]:
        """If ``group`` is open: from each of its lanes, the best parked job when it ranks
        before the lane's representative (or there is none): for the ready queues again."""
        lanes = self.lanes.get(group)
        if lanes is None:
            return []
        if not self.group_open(group, now_ms):
            if group in self.groups:
                self._wake_later(group, now_ms)
            return []
        back: list[Job] = []
        for place, lane in list(lanes.items()):
            job = lane.head()
            held = lane.representative
            if job is not None and (held is None or not _due(held) or _rank(job) < _rank(held)):
                lane.pop(job)
                lane.representative = job
                back.append(job)
            if not lane:
                del lanes[place]
        if not lanes:
            del self.lanes[group]
        return back

    def due_wakeups(self, now_ms: int) -> list[str]:
        """Groups whose wake-up time has come, in (time, name) order."""
        woken: list[str] = []
        wakeups = self.wakeups
        while wakeups and wakeups[0][0] <= now_ms:
            at_ms, group = heapq.heappop(wakeups)
            if self.waking.get(group) == at_ms:
                del self.waking[group]
                woken.append(group)
        return woken

    def parked(self, group: str) -> int:
        """Jobs parked in ``group``'s lanes (some may have been cancelled since)."""
        return sum(len(lane) for lane in self.lanes.get(group, {}).values())

    # --- snapshots ------------------------------------------------------------------------------

    def section(self) -> list[list[Any]]:
        """The "limits" snapshot section: [scope, name, concurrency, rate, window_ms, [hand-out
        times, oldest first]] per limit, sorted."""
        return [
            [scope, name, limit.concurrency, limit.rate, limit.window_ms, list(limit.starts)]
            for scope, name, limit in self.rows()
        ]

    def restore_section(self, rows: Any) -> None:
        if not isinstance(rows, list):
            raise DecodeError("the limits section is not a list")
        for row in rows:
            if not (isinstance(row, list) and len(row) == 6):
                raise DecodeError(f"a limit row is {row!r}, not [scope, name, c, r, w, starts]")
            scope, name, concurrency, rate, window_ms, starts = row
            problem = limit_problem(scope, name, concurrency, rate, window_ms)
            if problem or not isinstance(starts, list) or len(starts) > rate:
                raise DecodeError(f"a bad limit row {row[:5]!r}: {problem or 'its starts'}")
            if not all(isinstance(at_ms, int) for at_ms in starts) or starts != sorted(starts):
                raise DecodeError(f"limit {scope} {name}: hand-out times not ascending integers")
            if self.set(scope, name, concurrency=concurrency, rate=rate, window_ms=window_ms):
                raise DecodeError(f"limit {scope} {name}: past the table's bounds")
            self.limits[(scope, name)].starts.extend(starts)


def _less(counts: dict[str, int], group: str) -> None:
    left = counts[group] - 1
    assert left >= 0, (group, left)
    if left:
        counts[group] = left
    else:
        del counts[group]


def limit_problem(scope: Any, name: Any, concurrency: Any, rate: Any, window_ms: Any) -> str:
    """Why these are not a limit, or "": the one check ``SetLimit`` and snapshots share."""
    if scope not in SCOPES:
        return f"scope must be {' or '.join(SCOPES)}, not {scope!r}"
    if not isinstance(name, str) or not 0 < len(name) <= limits.NAME_CHARS_MAX:
        return f"the {scope} name must be 1 to {limits.NAME_CHARS_MAX} characters"
    numbers = (concurrency, rate, window_ms)
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
        return "concurrency, rate and window are integers"
    if not 0 <= concurrency <= limits.LIMIT_CONCURRENCY_MAX:
        return f"concurrency must be 1 to {limits.LIMIT_CONCURRENCY_MAX} (0: none)"
    if not 0 <= rate <= limits.LIMIT_RATE_COUNT_MAX:
        return f"a rate must let 1 to {limits.LIMIT_RATE_COUNT_MAX} jobs start per window"
    if rate and not 0 < window_ms <= limits.LIMIT_RATE_WINDOW_MS_MAX:
        return f"a rate window must be 1 ms to {limits.LIMIT_RATE_WINDOW_MS_MAX} ms"
    if not rate and window_ms:
        return "a window without a rate"
    if not concurrency and not rate:
        return "a limit needs a concurrency or a rate"
    return ""
