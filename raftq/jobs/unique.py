"""Uniqueness while active: a key that refuses a second job only while its holder is active.

A job enqueued with ``unique_while_active=K`` holds ``K`` from its enqueue until it finishes
(succeeded, dead or cancelled); meanwhile an enqueue with ``K`` creates nothing and answers
with the holder's id (``Enqueued(created=False)``), as an idempotency key does. The moment the
holder finishes, in the entry that finishes it, ``K`` is free. A dead holder that an operator
retries takes ``K`` back, unless another job took it meanwhile: then the retry is refused,
so two active jobs never share a key. The idempotency key (``JobSpec.key``) is a separate
table, kept for ``DEDUPE_WINDOW_MS`` whatever the job does.

Which job holds a key is derived from the jobs (their key and state): only each job's key is
in snapshots (section ``jobs.unique``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from raftq.errors import DecodeError
from raftq.jobs.job import FINISHED, Job, extra_of

SECTION = "jobs.unique"
"""Snapshot section: ``[[job id, key], ...]`` in enqueue order, for every job held that was
enqueued with ``unique_while_active``."""


class ActiveKeys:
    """Key -> the active job that holds it."""

    __slots__ = ("holders",)

    def __init__(self) -> None:
        self.holders: dict[str, Job] = {}

    def holder(self, key: str) -> Job | None:
        return self.holders.get(key)

    def take(self, job: Job) -> None:
        extra = job.extra
        assert extra is not None, job.id
        assert extra.unique_key, job.id
        assert self.holders.get(extra.unique_key) in (None, job), extra.unique_key
        self.holders[extra.unique_key] = job

    def take_back(self, job: Job) -> None:
        """A dead ``job`` is retried: it holds its key again (``blocks_retry`` said it may)."""
        extra = job.extra
        if extra is not None and extra.unique_key:
            self.take(job)

    def free(self, job: Job) -> None:
        """``job`` finished: its key, if it holds one, is free."""
        extra = job.extra
        if extra is not None and extra.unique_key and self.holders.get(extra.unique_key) is job:
            del self.holders[extra.unique_key]

    def blocks_retry(self, job: Job) -> Job | None:
        """The other job holding ``job``'s key, which keeps ``job`` from being retried."""
        extra = job.extra
        if extra is None or not extra.unique_key:
            return None
        holder = self.holders.get(extra.unique_key)
        return holder if holder is not None and holder is not job else None

    def may_retry(self, job: Job, keys: set[str]) -> bool:
        """For a bulk retry: whether ``job`` may be retried, given the ``keys`` that jobs
        retried before it in the same command take back (it adds its own)."""
        extra = job.extra
        if extra is None or not extra.unique_key:
            return True
        if self.blocks_retry(job) is not None or extra.unique_key in keys:
            return False
        keys.add(extra.unique_key)
        return True

    def rebuild(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            extra = job.extra
            if extra is None or not extra.unique_key or job.state in FINISHED:
                continue
            if extra.unique_key in self.holders:
                raise DecodeError(
                    f"jobs {self.holders[extra.unique_key].id!r} and {job.id!r} are both "
                    f"active with the unique key {extra.unique_key!r}"
                )
            self.holders[extra.unique_key] = job


def sections(jobs: Iterable[Job]) -> dict[str, Any]:
    """The section, from the jobs that have a ``JobExtra`` (left out when empty)."""
    rows = [[job.id, job.extra.unique_key] for job in jobs if job.extra and job.extra.unique_key]
    return {SECTION: rows} if rows else {}


def read_sections(jobs: Mapping[str, Job], sections: dict[str, Any]) -> None:
    rows = sections.pop(SECTION, [])
    if not isinstance(rows, list):
        raise DecodeError(f"section {SECTION} is {type(rows).__name__}, not a list of rows")
    for row in rows:
        if not isinstance(row, list) or len(row) != 2 or row[0] not in jobs:
            raise DecodeError(f"section {SECTION}: {row!r} is not [held job id, key]")
        if not isinstance(row[1], str) or not row[1]:
            raise DecodeError(f"section {SECTION}: job {row[0]!r} has the key {row[1]!r}")
        extra_of(jobs[row[0]]).unique_key = row[1]
