"""A job's provenance: its whole story read back from the log (``raftq job ID --history``).

A job keeps only its last ``JOB_HISTORY_MAX`` events, and commands that changed nothing (a
report under a stale fence, a lease renewed) leave none. The log has all of them: a node
restores its newest snapshot into a scratch machine and applies every entry after it again,
and this module watches one job while it does. Each entry that touched the job becomes a
``StoryEvent`` with its index and term, the leader that appended it (the node a term's first
entry names, ``raft.core``'s no-op), the worker, attempt and fence; a report, renewal,
release or progress whose fence was not the job's current one is a "refused" event.

Before the snapshot only what the snapshot kept of the job is known: its ring of events
(``source`` "snapshot"), with no refusals and no leaders. Pure: entries in, events out.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator

import attrs

from raftq import codec, limits
from raftq.errors import DecodeError
from raftq.jobs.commands import (
    Cancel,
    Command,
    Complete,
    Extend,
    ExtendAll,
    Fail,
    Progress,
    Rejected,
    Release,
    Report,
    Retry,
)
from raftq.jobs.job import Job, JobState
from raftq.jobs.machine import JobStateMachine
from raftq.raft.types import Entry, EntryKind

SNAPSHOT = "snapshot"
LOG = "log"


@codec.register
@attrs.frozen(kw_only=True)
class StoryEvent:
    """One thing that happened to a job, and the entry that made it happen."""

    index: int
    """The log index of the entry (0: before the log, from a snapshot written before index
    and term were kept)."""
    term: int
    at_ms: int
    """The leader's clock stamped into the entry."""
    event: str
    """What the machine recorded ("enqueued", "claimed", "failed", "expired", ...), or for a
    command that changed nothing but named the job: "refused: <command> ..." or the
    command's name ("extended", "progress")."""
    attempt: int
    fence: int
    """The lease the event belongs to (for a refusal: the fence the command carried)."""
    worker: str = ""
    """The worker that held, or reported on, the lease ("" where none did)."""
    leader: str = ""
    """The node that led the entry's term and appended it; "" where the log no longer shows
    (terms that began before the newest snapshot)."""
    detail: str = ""
    """An attempt's error, or why a command was refused."""
    source: str = LOG
    """"log": replayed from an entry, complete from ``Story.complete_from`` on;
    "snapshot": kept in the snapshot's ring of the job's last events."""


@codec.register
@attrs.frozen(kw_only=True)
class Story:
    job_id: str
    events: tuple[StoryEvent, ...]
    complete_from: int
    """Every entry from this index on was read: the story is whole from there (the newest
    snapshot's index + 1). Events before it are what the snapshot kept."""
    through: int
    """The last index read."""
    dropped: int = 0
    """Oldest events left out past ``JOB_STORY_EVENTS_MAX``."""


def job_story(
    job_id: str, snapshot: bytes | None, snapshot_index: int, entries: Iterable[Entry]
) -> Story:
    """The story of ``job_id`` from ``snapshot`` (its state at ``snapshot_index``; None for
    an empty state at 0) and the ``entries`` right after it, in order."""
    machine = JobStateMachine.restore(snapshot) if snapshot is not None else JobStateMachine()
    events: collections.deque[StoryEvent] = collections.deque(maxlen=limits.JOB_STORY_EVENTS_MAX)
    leaders: dict[int, str] = {}
    holders: dict[int, str] = {}  # fence -> the worker its claim leased the job to
    told = [0]  # events told, the dropped oldest included
    job = machine.jobs.get(job_id)
    if job is not None:
        _tell(events, holders, told, _kept(job))
    through = snapshot_index
    for entry in entries:
        assert entry.index == through + 1, (entry.index, through)
        through = entry.index
        if entry.kind is EntryKind.NOOP:
            leaders[entry.term] = entry.data.decode("utf-8", "replace")
            continue
        if entry.kind is not EntryKind.COMMAND:
            continue
        try:
            command: Command = codec.decode(entry.data, Command)
        except DecodeError:
            continue  # the nodes skip it too (Applier._apply)
        leader = leaders.get(entry.term, "")
        before = machine.jobs.get(job_id)
        last = _last_event(before)
        fence = before.run.fence if before is not None and before.run is not None else 0
        result = machine.apply(entry.index, command, entry.term)
        after = machine.jobs.get(job_id)
        new = list(_since(after, last, entry, leader)) if after is not None else []
        if before is None and after is not None:
            new.insert(0, _enqueued(after, entry, leader))
        elif before is not None and after is None:
            new.append(
                StoryEvent(
                    index=entry.index,
                    term=entry.term,
                    at_ms=command.now_ms,
                    event="purged",
                    attempt=before.attempts,
                    fence=fence,
                    leader=leader,
                )
            )
        if not new and before is not None:
            new.extend(_untold(command, result, before, fence, entry, leader))
        _tell(events, holders, told, new)
    return Story(
        job_id=job_id,
        events=tuple(events),
        complete_from=snapshot_index + 1,
        through=through,
        dropped=told[0] - len(events),
    )


def _tell(
    events: collections.deque[StoryEvent],
    holders: dict[int, str],
    told: list[int],
    new: Iterable[StoryEvent],
) -> None:
    """Add ``new`` to ``events`` (which keeps the newest; ``told`` counts them all), naming
    the lease's holder where the event names no worker (an expiry, a refused report:
    commands do not say who sent them)."""
    for event in new:
        if event.worker:
            holders.setdefault(event.fence, event.worker)
        elif event.fence in holders:
            event = attrs.evolve(event, worker=holders[event.fence])
        events.append(event)
        told[0] += 1


def _kept(job: Job) -> Iterator[StoryEvent]:
    """What the snapshot kept: the enqueue (its index is the job's, when derived) and the
    job's ring of events."""
    yield StoryEvent(
        index=0,
        term=0,
        at_ms=job.enqueued_ms,
        event="enqueued",
        attempt=0,
        fence=0,
        source=SNAPSHOT,
    )
    if job.run is None:
        return
    for at_ms, event, attempt, node, fence, index, term, error in job.run.history:
        yield StoryEvent(
            index=index,
            term=term,
            at_ms=at_ms,
            event=event,
            attempt=attempt,
            fence=fence,
            worker=node,
            detail=error,
            source=SNAPSHOT,
        )


def _last_event(job: Job | None) -> object:
    if job is None or job.run is None or not job.run.history:
        return None
    return job.run.history[-1]


def _since(job: Job, last: object, entry: Entry, leader: str) -> Iterator[StoryEvent]:
    """The events ``job`` recorded after ``last`` (the ring drops its oldest, so search from
    its newest back to ``last``, by identity)."""
    history = job.run.history if job.run is not None else []
    start = len(history)
    while start > 0 and history[start - 1] is not last:
        start -= 1  # not found (None, or it left the ring): every event is new
    for at_ms, event, attempt, node, fence, _index, _term, error in history[start:]:
        yield StoryEvent(
            index=entry.index,
            term=entry.term,
            at_ms=at_ms,
            event=event,
            attempt=attempt,
            fence=fence,
            worker=node,
            leader=leader,
            detail=error,
        )


def _enqueued(job: Job, entry: Entry, leader: str) -> StoryEvent:
    return StoryEvent(
        index=entry.index,
        term=entry.term,
        at_ms=job.enqueued_ms,
        event="enqueued",
        attempt=0,
        fence=0,
        leader=leader,
    )


_ACCEPTED = {"renewal": "extended", "new leader's renewal": "extended by a new leader"}


def _untold(
    command: Command, result: object, job: Job, fence: int, entry: Entry, leader: str
) -> Iterator[StoryEvent]:
    """The commands that named the job and left no event on it: refused reports (a stale
    fence, or the job no longer running), and accepted renewals and progress."""
    mentions: list[tuple[str, int, str]] = []  # (what, fence, worker)
    job_id = job.id
    if isinstance(command, Report):
        mentions += [
            ("report", outcome.fence, "")
            for outcome in command.outcomes
            if outcome.job_id == job_id
        ]
    elif isinstance(command, Complete | Fail) and command.job_id == job_id:
        mentions.append(("report", command.fence, ""))
    elif isinstance(command, Extend | Release | Progress):
        what = {Extend: "renewal", Release: "release", Progress: "progress"}[type(command)]
        mentions += [
            (what, each_fence, "")
            for each_id, each_fence in zip(command.job_ids, command.fences, strict=True)
            if each_id == job_id
        ]
    elif isinstance(command, ExtendAll) and job.state is JobState.RUNNING:
        mentions.append(("new leader's renewal", fence, ""))
    elif isinstance(command, Cancel | Retry) and command.job_id == job_id:
        what = "cancel" if isinstance(command, Cancel) else "retry"
        reason = result.message if isinstance(result, Rejected) else "changed nothing"
        mentions.append((what, -1, reason))
    for what, carried, reason in mentions:
        if carried == -1:
            event, detail, carried = f"refused: {what}", reason, fence
        elif carried != fence or job.state is not JobState.RUNNING:
            event = f"refused: {what}"
            detail = (
                f"fence {carried} is not the job's current lease (fence {fence}, {job.state.value})"
            )
        else:
            event, detail = _ACCEPTED.get(what, what), ""
        yield StoryEvent(
            index=entry.index,
            term=entry.term,
            at_ms=command.now_ms,
            event=event,
            attempt=job.attempts,
            fence=carried,
            leader=leader,
            detail=detail,
        )
