"""Issue #17's real-process test: a schedule every second whose jobs share a group limited to
one, on three node processes with in-process workers, through two leader ``kill -9``s.

- Every slot from the first to the last fires exactly once, as one job keyed
  ``schedule:NAME:SLOT_MS``.
- No two of the group's jobs ever run at once, judged from the jobs' own histories: each
  attempt runs from the entry that claimed it to the entry that ended it, and no two attempts
  overlap in the log. The jobs are made to collide: each sleeps most of a slot, the catch-up
  after a failover fires every missed slot at once, and the killed node's job runs again when
  its lease expires; without the limit, four workers per node run them side by side.
- Every fired job still succeeds.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import trio

import raftq
from raftq.client.job import Job
from tests.test_cluster_processes import ProcessCluster, process_cluster

SLOTS_PER_LEADER = 4
"""Slots to see fired under each leader before it is killed."""
JOB_SLEEP_MS = 700
JOB_TIMEOUT_S = 2.0
"""Short, so that the lease of the job whose node was killed expires soon and it runs again."""
GROUP = "ticks"

ENDS_OF_AN_ATTEMPT = frozenset(
    {"succeeded", "failed", "dead", "lease expired", "released", "cancelled"}
)


async def fired_since(client: raftq.Client, count: int, seconds: float = 30) -> int:
    """Wait until the schedule fired ``count`` more slots; its last fired slot then."""
    with trio.fail_after(seconds):
        (schedule,) = await client.schedules()
        start = schedule["last_fired_ms"] or schedule["changed_ms"]
        for _ in range(int(seconds / 0.1)):
            (schedule,) = await client.schedules()
            last = schedule["last_fired_ms"]
            if last is not None and last >= start + count * 1_000:
                return int(last)
            await trio.sleep(0.1)
    raise AssertionError("the schedule stopped firing")


async def kill_the_leader(cluster: ProcessCluster) -> str:
    leader = await cluster.leader()
    await cluster.kill(leader)
    return leader


async def test_a_schedule_every_second_in_a_group_of_one_through_two_leader_kills(
    tmp_path: Path,
) -> None:
    async with process_cluster(tmp_path, 3, "--workers", "4") as cluster:
        await cluster.leader()
        async with raftq.connect(",".join(cluster.addresses.values()), timeout=30) as client:
            await client.set_limit(group=GROUP, concurrency=1)
            await client.add_schedule(
                "tick",
                "sleep",
                {"sleep_ms": JOB_SLEEP_MS},
                every=1,
                catch_up="all",
                timeout=JOB_TIMEOUT_S,
                group=GROUP,
            )
            (schedule,) = await client.schedules()
            first_slot_ms = (schedule["changed_ms"] // 1_000 + 1) * 1_000
            await fired_since(client, SLOTS_PER_LEADER)
            first = await kill_the_leader(cluster)
            await fired_since(client, SLOTS_PER_LEADER)
            await cluster.start(first)  # a majority must stay when the next leader dies
            await kill_the_leader(cluster)
            last = await fired_since(client, SLOTS_PER_LEADER)
            await client.remove_schedule("tick")
            fired = await check_every_slot_fired_once(client, first_slot_ms, last)
            jobs = [await client.wait(job_id, timeout=90) for job_id in fired]
    assert {job.state for job in jobs} == {"succeeded"}
    spans = sorted(span for job in jobs for span in attempts(job))
    assert len(spans) >= len(jobs)
    for (_, ended), (claimed, _) in itertools.pairwise(spans):
        assert ended < claimed, f"two of the group ran at once: {spans}"


async def check_every_slot_fired_once(
    client: raftq.Client, first_slot_ms: int, last_slot_ms: int
) -> list[str]:
    """Each slot's key names a job of the schedule (a slot never fired would make the probe
    enqueue create a new ``probe`` job instead); and there are exactly as many of the
    schedule's jobs as slots (none fired twice). The fired jobs' ids."""
    fired: list[str] = []
    cursor = None
    for _ in range(100):  # pages of 1,000: far more than the run fires
        page = await client.page(type="sleep", cursor=cursor, limit=1_000)
        fired += [job.id for job in page.jobs]
        cursor = page.cursor
        if cursor is None:
            break
    slots = range(first_slot_ms, last_slot_ms + 1, 1_000)
    owners = []
    for slot in slots:
        job_id = await client.enqueue("probe", None, key=f"schedule:tick:{slot}")
        job = await client.get(job_id)
        assert job.type == "sleep", f"slot {slot} never fired (the probe created {job_id})"
        owners.append(job_id)
    assert sorted(owners) == sorted(fired), "a slot's job is not one of the schedule's jobs"
    assert len(set(owners)) == len(slots) >= 3 * SLOTS_PER_LEADER
    assert len(fired) == len(slots)
    return fired


def attempts(job: Job) -> list[tuple[int, int]]:
    """(index of the claim, index of the entry that ended it) of each attempt of ``job``; an
    attempt still open ends at infinity."""
    spans: list[tuple[int, int]] = []
    claimed = 0
    for event in job.history:
        if event.event == "claimed":
            assert not claimed, (job.id, "claimed twice without an end")
            claimed = event.index
        elif claimed and (
            event.event in ENDS_OF_AN_ATTEMPT or event.event.endswith("not retryable")
        ):
            spans.append((claimed, event.index))
            claimed = 0
    if claimed:
        spans.append((claimed, 2**63))
    return spans
