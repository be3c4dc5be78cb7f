"""A schedule through two leader ``kill -9``s, on real node processes (issue 17's test; the
group-limit half of it is limits17's): a schedule every second, catch-up all, and every slot
from its first to its last fires exactly once, as one job keyed ``schedule:NAME:SLOT_MS``."""

from __future__ import annotations

from pathlib import Path

import trio

import raftq
from tests.test_cluster_processes import ProcessCluster, process_cluster

SLOTS_PER_LEADER = 4
"""Slots to see fired under each leader before it is killed."""


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


async def test_a_schedule_every_second_fires_each_slot_once_through_two_leader_kills(
    tmp_path: Path,
) -> None:
    async with process_cluster(tmp_path) as cluster:
        await cluster.leader()
        async with raftq.connect(",".join(cluster.addresses.values()), timeout=20) as client:
            await client.add_schedule("tick", "tick", every=1, catch_up="all")
            (schedule,) = await client.schedules()
            first_slot_ms = (schedule["changed_ms"] // 1_000 + 1) * 1_000
            await fired_since(client, SLOTS_PER_LEADER)
            first = await kill_the_leader(cluster)
            await fired_since(client, SLOTS_PER_LEADER)
            await cluster.start(first)  # a majority must stay when the next leader dies
            await kill_the_leader(cluster)
            last = await fired_since(client, SLOTS_PER_LEADER)
            await client.remove_schedule("tick")
            await check_every_slot_fired_once(client, first_slot_ms, last)


async def check_every_slot_fired_once(
    client: raftq.Client, first_slot_ms: int, last_slot_ms: int
) -> None:
    """Each slot's key names a job of the schedule's type (a slot never fired would make the
    probe enqueue create a new ``probe`` job instead); and there are exactly as many of the
    schedule's jobs as slots (none fired twice)."""
    fired: list[str] = []
    cursor = None
    for _ in range(100):  # pages of 1,000: far more than the run fires
        page = await client.page(type="tick", cursor=cursor, limit=1_000)
        fired += [job.id for job in page.jobs]
        cursor = page.cursor
        if cursor is None:
            break
    slots = range(first_slot_ms, last_slot_ms + 1, 1_000)
    owners = []
    for slot in slots:
        job_id = await client.enqueue("probe", None, key=f"schedule:tick:{slot}")
        job = await client.get(job_id)
        assert job.type == "tick", f"slot {slot} never fired (the probe created {job_id})"
        owners.append(job_id)
    assert sorted(owners) == sorted(fired), "a slot's job is not one of the schedule's jobs"
    assert len(set(owners)) == len(slots) >= 3 * SLOTS_PER_LEADER
    assert len(fired) == len(slots)
