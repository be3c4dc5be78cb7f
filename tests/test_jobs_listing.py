"""The listing index (``raftq.jobs.listing``) and the commands behind the web API's job list
and bulk retry: cursor pages stay exact while jobs are enqueued, finish and are purged between
them; a filtered page steps over blocks without a match instead of scanning every job; a bulk
retry is one command, bounded in count."""

from __future__ import annotations

import pytest

from raftq import limits
from raftq.jobs.commands import (
    Claim,
    ClaimResult,
    Count,
    Enqueue,
    Fail,
    JobSpec,
    Purge,
    RetryDead,
)
from raftq.jobs.job import JobState
from raftq.jobs.listing import ListingIndex
from raftq.jobs.machine import JobStateMachine


def spec(n: int, *, queue: str = "q", job_type: str = "t", max_attempts: int = 3) -> JobSpec:
    return JobSpec(
        id=f"job-{n}",
        type=job_type,
        payload=b"",
        queue=queue,
        priority=0,
        delay_ms=0,
        max_attempts=max_attempts,
        timeout_ms=1_000,
        key="",
    )


class Log:
    def __init__(self) -> None:
        self.machine = JobStateMachine()
        self.index = 0
        self.now_ms = 1_000

    def apply(self, command: object) -> object:
        self.index += 1
        return self.machine.apply(self.index, command)  # type: ignore[arg-type]

    def enqueue(self, specs: list[JobSpec]) -> None:
        self.apply(Enqueue(now_ms=self.now_ms, jobs=tuple(specs)))

    def kill(self, count: int, job_type: str) -> list[str]:
        """Claim ``count`` jobs of ``job_type`` and fail them for good: dead."""
        claimed = self.apply(
            Claim(now_ms=self.now_ms, claimer="w", types=(job_type,), max_jobs=count)
        )
        assert isinstance(claimed, ClaimResult)
        for lease in claimed.leases:
            self.apply(
                Fail(now_ms=self.now_ms, job_id=lease.job_id, fence=lease.fence, retryable=False)
            )
        return [lease.job_id for lease in claimed.leases]


def ids(views: list[object]) -> list[str]:
    return [view.id for view in views]  # type: ignore[attr-defined]


def test_pages_neither_repeat_nor_skip_while_jobs_come_and_go() -> None:
    log = Log()
    log.enqueue([spec(n) for n in range(10)])
    first, cursor = log.machine.page_jobs(state="pending", limit=4)
    assert ids(first) == [f"job-{n}" for n in range(4)]
    # Meanwhile: two jobs seen and one not yet seen run (leave the filter), new jobs arrive.
    log.apply(Claim(now_ms=log.now_ms, claimer="w", max_jobs=5))  # job-0 .. job-4 run
    log.enqueue([spec(n) for n in range(10, 12)])
    rest: list[str] = []
    for _ in range(10):
        page, cursor = log.machine.page_jobs(state="pending", cursor=cursor, limit=4)
        rest += ids(page)
        if not cursor:
            break
    assert rest == [f"job-{n}" for n in range(5, 12)]  # job-4 left; nothing seen twice


def test_newest_first_pages_go_backwards_from_the_cursor() -> None:
    log = Log()
    log.enqueue([spec(n) for n in range(5)])
    page, cursor = log.machine.page_jobs(limit=2, newest_first=True)
    assert ids(page) == ["job-4", "job-3"]
    log.enqueue([spec(5)])  # newer than the cursor: not on the following pages
    page, cursor = log.machine.page_jobs(cursor=cursor, limit=10, newest_first=True)
    assert (ids(page), cursor) == (["job-2", "job-1", "job-0"], 0)


def test_a_short_page_when_the_scan_budget_runs_out_still_moves_on() -> None:
    log = Log()
    log.enqueue([spec(n, job_type="a") for n in range(6)] + [spec(6, job_type="b")])
    page, cursor = log.machine.page_jobs(job_type="b", limit=5, scan_max=3)
    assert (ids(page), cursor > 0) == ([], True)  # examined three "a" jobs and stopped
    page, cursor = log.machine.page_jobs(job_type="b", cursor=cursor, limit=5, scan_max=3)
    page_2, cursor = log.machine.page_jobs(job_type="b", cursor=cursor, limit=5, scan_max=3)
    assert ids(page + page_2) == ["job-6"]
    assert cursor == 0


def test_purged_jobs_leave_the_index_and_empty_blocks_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "LIST_BLOCK_JOBS", 4)
    log = Log()
    log.enqueue([spec(n, max_attempts=1) for n in range(10)])
    log.kill(6, "t")
    log.now_ms += 10
    assert log.apply(Purge(now_ms=log.now_ms, before_ms=log.now_ms)) == Count(count=6)
    assert ids(log.machine.page_jobs(limit=100)[0]) == [f"job-{n}" for n in range(6, 10)]
    assert len(log.machine.listing.blocks) == 2  # seq 1-3 went; 4-7 keeps seq 7; 8-11
    restored = JobStateMachine.restore(log.machine.snapshot())
    assert restored.page_jobs(limit=100) == log.machine.page_jobs(limit=100)


def test_a_rare_state_among_100_000_jobs_is_found_without_a_full_scan() -> None:
    """Blocks without a dead job are stepped over: a page of the few dead jobs among 100,000
    examines the one block that holds them."""
    log = Log()
    for start in range(0, 100_000, limits.JOBS_PER_ENQUEUE_MAX):
        log.enqueue(
            [spec(n, job_type="ok") for n in range(start, start + limits.JOBS_PER_ENQUEUE_MAX)]
        )
    log.enqueue([spec(100_000 + n, job_type="bad", max_attempts=1) for n in range(3)])
    log.kill(3, "bad")
    examined: list[int] = []
    original = ListingIndex._after

    def counting(self: ListingIndex, *args: object) -> object:
        for job in original(self, *args):  # type: ignore[arg-type]
            examined.append(job.seq)
            yield job

    ListingIndex._after = counting  # type: ignore[method-assign,assignment]
    try:
        page, cursor = log.machine.page_jobs(state="dead", limit=100)
    finally:
        ListingIndex._after = original  # type: ignore[method-assign]
    assert ids(page) == [f"job-{100_000 + n}" for n in range(3)]
    assert cursor == 0
    assert len(examined) <= limits.LIST_BLOCK_JOBS  # one block, not 100,000 jobs


def test_retry_dead_is_one_command_bounded_in_count_and_filtered() -> None:
    log = Log()
    log.enqueue([spec(n, job_type="a" if n % 2 else "b", max_attempts=1) for n in range(6)])
    dead = log.kill(6, "a") + log.kill(6, "b")
    assert len(dead) == 6
    assert log.apply(RetryDead(now_ms=log.now_ms, type="a", max_jobs=2)) == Count(count=2)
    assert log.machine.state_counts()["dead"] == 4
    assert log.apply(RetryDead(now_ms=log.now_ms, queue="other")) == Count(count=0)
    assert log.apply(RetryDead(now_ms=log.now_ms)) == Count(count=4)
    assert log.machine.state_counts()["dead"] == 0
    retried = log.machine.get("job-1")
    assert retried is not None
    assert (retried.state, retried.attempts) == (JobState.PENDING.value, 0)
    assert retried.history[-1].event == "retried"
    with pytest.raises(ValueError, match="max_jobs"):
        RetryDead(now_ms=0, max_jobs=limits.RETRY_DEAD_JOBS_MAX + 1)


def test_a_pages_bytes_count_the_errors_its_jobs_histories_keep() -> None:
    """Each failed attempt's error is kept in the job's history too (up to
    ``JOB_HISTORY_MAX`` of them, ``JOB_HISTORY_ERROR_CHARS_MAX`` each): a page's reply carries
    them, so its byte bound counts them like payloads, results and errors."""
    log = Log()
    log.enqueue([spec(n) for n in range(6)])
    claimed = log.apply(Claim(now_ms=log.now_ms, claimer="w", max_jobs=6))
    assert isinstance(claimed, ClaimResult)
    error = "e" * limits.JOB_HISTORY_ERROR_CHARS_MAX
    for lease in claimed.leases:
        log.apply(Fail(now_ms=log.now_ms, job_id=lease.job_id, fence=lease.fence, error=error))
    # Each job holds 2 KiB: its error, and the copy its "failed" event keeps.
    page, cursor = log.machine.page_jobs(limit=100, bytes_max=3 * 1024)
    assert ids(page) == ["job-0", "job-1"]  # the page ends after the job that crosses 3 KiB
    assert cursor == log.machine.jobs["job-1"].seq


def test_a_page_ends_after_its_bytes_so_a_reply_fits_a_frame() -> None:
    """Big payloads: a page stops after the job that crosses JOBS_PAGE_BYTES_MAX (never
    fewer than one job), and the cursor goes on."""
    log = Log()
    big = b"x" * limits.JOB_PAYLOAD_BYTES_MAX
    log.enqueue([spec(n) for n in range(6)])
    for job in log.machine.jobs.values():
        job.payload = big  # as if each was enqueued with a 1 MiB payload
    pages = []
    cursor = 0
    for _ in range(10):
        page, cursor = log.machine.page_jobs(limit=100, cursor=cursor)
        pages.append(ids(page))
        if not cursor:
            break
    per_page = limits.JOBS_PAGE_BYTES_MAX // limits.JOB_PAYLOAD_BYTES_MAX + 1
    assert [len(page) for page in pages] == [per_page, 6 - per_page]
    assert [job for page in pages for job in page] == [f"job-{n}" for n in range(6)]
    assert ids(log.machine.page_jobs(limit=100, bytes_max=1)[0]) == ["job-0"]
