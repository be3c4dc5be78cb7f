"""Dependencies between jobs: a job with ``depends_on`` waits until its parents have finished.

The rule (docs/jobs.md "Dependencies"): a child is ``waiting`` until every parent has
succeeded, and is released (pending, due) in the very entry that finishes its last parent.
A parent that ends dead or cancelled cancels the child, with a reason naming the parent,
unless the child runs anyway (``on_parent_failure="run"``): then a parent's end of any kind
counts, and the child runs once all have ended.

No cycle can form: a parent must exist when its child is enqueued (earlier in the same
Enqueue counts, since the jobs of one command are applied in order), and a job's parents
never change, so every edge points from an older job to a newer one.

Cost: a child keeps a count of its parents left (``JobExtra.parents_left``) and each parent
the list of its waiting children (``Dependencies.children``), so a parent's finish touches
its own children only, and a callback waiting for a batch of 10,000 costs one decrement per
finished job of the batch. Both are derived from the jobs' states and their ``depends_on``
(``rebuild``): only ``depends_on`` and the failure policy are in snapshots.

Pure: no clock, no I/O; the machine (``raftq.jobs.machine``) calls it and acts on its answers.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from raftq import limits
from raftq.errors import DecodeError
from raftq.jobs.commands import JobSpec, Rejected
from raftq.jobs.job import Job, JobState, extra_of

SECTION = "jobs.depends_on"
"""Snapshot section: ``[[job id, [parent id, ...]], ...]`` in enqueue order, for every job
held that was enqueued with ``depends_on``."""
RUN_SECTION = "jobs.on_parent_failure"
"""Snapshot section: ``[[job id, "run"], ...]`` for the jobs among them that run anyway."""

_ENDED_BADLY = (JobState.DEAD, JobState.CANCELLED)
_SETTLED = (JobState.SUCCEEDED, JobState.CANCELLED)
"""A parent in these states can no longer change what its children do (dead can: a retry
brings it back)."""


def _lets_run(parent: Job, run_anyway: bool) -> bool:
    """Whether ``parent`` no longer holds its child back."""
    state = parent.state
    return state is JobState.SUCCEEDED or (run_anyway and state in _ENDED_BADLY)


class Dependencies:
    """The index of waiting children by parent, and the count of parent references held."""

    __slots__ = ("children", "edges")

    def __init__(self) -> None:
        self.children: dict[str, dict[Job, None]] = {}
        """Parent id -> its waiting children in enqueue order, for every parent that is not
        succeeded or cancelled (``_SETTLED``). Emptied entries are removed."""
        self.edges = 0
        """Parent references of every job held (``DEPENDENCY_EDGES_MAX``)."""

    # --- enqueue --------------------------------------------------------------------------------

    def refusal(
        self,
        job_id: str,
        spec: JobSpec,
        jobs: Mapping[str, Job],
        batch_ids: Mapping[str, int],
        position: int,
    ) -> Rejected | None:
        """Why ``spec`` may not be enqueued as ``job_id`` (its parents), or None.
        ``batch_ids``: the explicit ids of its Enqueue and their positions (``spec`` is at
        ``position``), to say so when a parent comes later in it."""
        parents = spec.depends_on
        if len(set(parents)) != len(parents):
            return Rejected(code="bad_dependency", message=f"job {job_id} names a parent twice")
        for parent_id in parents:
            if parent_id == job_id:
                return Rejected(code="bad_dependency", message=f"job {job_id} depends on itself")
            if parent_id in jobs:
                children = self.children.get(parent_id)
                if children is not None and len(children) >= limits.CHILDREN_PER_PARENT_MAX:
                    return Rejected(
                        code="too_many_children",
                        message=f"job {parent_id} already has {len(children)} waiting "
                        f"children, the most one job may have",
                    )
                continue
            if batch_ids.get(parent_id, -1) > position:
                return Rejected(
                    code="bad_dependency",
                    message=f"job {job_id} depends on {parent_id}, which comes later in the same "
                    "enqueue: a parent must come first (so no cycle can form)",
                )
            return Rejected(
                code="unknown_parent",
                message=f"job {job_id} depends on {parent_id}, which is not held: never "
                "enqueued, or finished and purged (its outcome is no longer known)",
            )
        if self.edges + len(parents) > limits.DEPENDENCY_EDGES_MAX:
            return Rejected(
                code="full",
                message=f"the cluster holds its maximum of {limits.DEPENDENCY_EDGES_MAX} "
                "dependencies; retry once finished jobs are purged",
            )
        return None

    def attach(self, child: Job, spec: JobSpec, jobs: Mapping[str, Job]) -> str:
        """Give a new ``child`` its dependencies (``refusal`` said none is wrong): it waits
        (``parents_left`` > 0), may run now (0), or, answered with the reason, is to be
        cancelled at once because a parent already ended dead or cancelled."""
        extra = child.extra
        assert extra is not None, child.id
        assert not extra.parents_left, child.id
        run_anyway = spec.on_parent_failure == "run"
        parents = [jobs[parent_id] for parent_id in spec.depends_on]
        extra.depends_on = tuple(parent.id for parent in parents)  # the parents' own strings
        extra.run_if_parent_fails = run_anyway
        self.edges += len(parents)
        if not run_anyway:
            for parent in parents:
                if parent.state in _ENDED_BADLY:
                    return _reason(parent)
        self._wait_for(child, parents, run_anyway)
        return ""

    def _wait_for(self, child: Job, parents: Sequence[Job], run_anyway: bool) -> None:
        extra = child.extra
        assert extra is not None
        extra.parents_left = sum(not _lets_run(parent, run_anyway) for parent in parents)
        if not extra.parents_left:
            return
        children = self.children
        for parent in parents:
            if parent.state not in _SETTLED:
                waiting = children.get(parent.id)
                if waiting is None:
                    waiting = children[parent.id] = {}
                waiting[child] = None

    # --- transitions ----------------------------------------------------------------------------

    def parent_finished(self, parent: Job) -> list[tuple[Job, str]]:
        """``parent`` just finished: its waiting children to release (reason "") or to
        cancel (the reason), in enqueue order. Each one is still in the index: the machine
        ``detach``es it as it moves it."""
        state = parent.state
        assert state in (JobState.SUCCEEDED, *_ENDED_BADLY), (parent.id, state)
        if state is JobState.DEAD:  # a retry may bring it back: keep the children that stay
            waiting = list(self.children.get(parent.id, ()))
        else:
            waiting = list(self.children.pop(parent.id, ()))
        moves: list[tuple[Job, str]] = []
        for child in waiting:
            extra = child.extra
            assert extra is not None, child.id
            assert child.state is JobState.WAITING, child.id
            if state is JobState.SUCCEEDED or extra.run_if_parent_fails:
                extra.parents_left -= 1
                assert extra.parents_left >= 0, child.id
                if not extra.parents_left:
                    moves.append((child, ""))
            else:
                moves.append((child, _reason(parent)))
        return moves

    def parent_retried(self, parent: Job) -> None:
        """A dead ``parent`` goes back to pending: the children that stayed waiting (they run
        anyway, and counted its death as its end) wait for its new end."""
        for child in self.children.get(parent.id, ()):
            extra = child.extra
            assert extra is not None, child.id
            assert extra.run_if_parent_fails, child.id
            extra.parents_left += 1

    def detach(self, child: Job) -> None:
        """``child`` leaves waiting (released or cancelled): out of its parents' lists."""
        extra = child.extra
        assert extra is not None
        extra.parents_left = 0
        children = self.children
        for parent_id in extra.depends_on:
            waiting = children.get(parent_id)
            if waiting is not None:
                waiting.pop(child, None)
                if not waiting:
                    del children[parent_id]

    def forgotten(self, job: Job) -> None:
        """``job`` is purged (finished): its references and its list of children go."""
        extra = job.extra
        if extra is not None:
            self.edges -= len(extra.depends_on)
        self.children.pop(job.id, None)

    # --- restore --------------------------------------------------------------------------------

    def rebuild(self, jobs: Mapping[str, Job]) -> None:
        """The index and counts from the jobs' states and ``depends_on``, as applying the log
        left them: children listed in enqueue order, each parent's entry as live updates keep
        it (a purged parent is one that let its children go: it was finished and not dead, or
        dead with only children that run anyway). A job enqueued after the child is never its
        parent, even with a parent's id: it reuses the id of a parent purged meanwhile."""
        for job in with_extra(jobs.values()):
            extra = job.extra
            assert extra is not None
            self.edges += len(extra.depends_on)
            if job.state is JobState.WAITING:
                parents = [
                    jobs[parent_id]
                    for parent_id in extra.depends_on
                    if parent_id in jobs and jobs[parent_id].seq < job.seq
                ]
                self._wait_for(job, parents, extra.run_if_parent_fails)
                if not extra.parents_left:
                    raise DecodeError(f"job {job.id!r} is waiting for no unfinished parent")


def _reason(parent: Job) -> str:
    return f"parent {parent.id} ended {parent.state.value}"


def with_extra(jobs: Iterable[Job]) -> list[Job]:
    """The jobs that have a ``JobExtra``, in order (``compress``: a loop in C over a million)."""
    held = list(jobs)
    return list(itertools.compress(held, map(_extra, held)))


_extra = operator.attrgetter("extra")


def sections(jobs: Iterable[Job]) -> dict[str, Any]:
    """The snapshot sections of dependencies, from the jobs that have a ``JobExtra`` (left
    out when empty)."""
    depends = [job for job in jobs if job.extra and job.extra.depends_on]
    written: dict[str, Any] = {}
    if depends:
        written[SECTION] = [[job.id, list(job.extra.depends_on)] for job in depends if job.extra]
        run = [[job.id, "run"] for job in depends if job.extra and job.extra.run_if_parent_fails]
        if run:
            written[RUN_SECTION] = run
    return written


def read_sections(jobs: Mapping[str, Job], sections: dict[str, Any]) -> None:
    """Take this module's sections out of ``sections`` and set the jobs' fields from them;
    ``DecodeError`` for rows that are not what ``sections`` writes."""
    for job_id, parents in _rows(sections.pop(SECTION, []), SECTION, jobs):
        if not isinstance(parents, list) or not all(isinstance(each, str) for each in parents):
            raise DecodeError(f"{SECTION}: job {job_id!r} has parents {parents!r}")
        extra = extra_of(jobs[job_id])
        extra.depends_on = tuple(jobs[each].id if each in jobs else each for each in parents)
    for job_id, policy in _rows(sections.pop(RUN_SECTION, []), RUN_SECTION, jobs):
        held = jobs[job_id].extra
        if policy != "run" or held is None or not held.depends_on:
            raise DecodeError(f"{RUN_SECTION}: job {job_id!r} has {policy!r} without parents")
        held.run_if_parent_fails = True


def _rows(rows: Any, section: str, jobs: Mapping[str, Job]) -> list[tuple[str, Any]]:
    if not isinstance(rows, list):
        raise DecodeError(f"section {section} is {type(rows).__name__}, not a list of rows")
    pairs: list[tuple[str, Any]] = []
    for row in rows:
        if not isinstance(row, list) or len(row) != 2 or row[0] not in jobs:
            raise DecodeError(f"section {section}: {row!r} is not [held job id, value]")
        pairs.append((row[0], row[1]))
    return pairs
