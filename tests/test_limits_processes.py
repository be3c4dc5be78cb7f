"""Issue #17's real-process test, the group half: a group limited to one running job, through
two leader kill -9s, never has two of its jobs running at once (judged from the jobs' own
histories: each attempt runs from the entry that claimed it to the entry that ended it, and
no two of the group's attempts overlap in the log); and every job still succeeds."""

from __future__ import annotations

import itertools
from pathlib import Path

import trio

import raftq
from raftq.client.job import Job
from tests.test_cluster_processes import ProcessCluster, process_cluster

GROUP_JOBS = 10
JOB_SLEEP_MS = 200
JOB_TIMEOUT_S = 2.0
"""Short, so that the leases of jobs whose node was killed expire soon and the jobs run again."""

ENDS_OF_AN_ATTEMPT = frozenset(
    {"succeeded", "failed", "dead", "lease expired", "released", "cancelled"}
)


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


async def restart_and_wait(cluster: ProcessCluster, node: str) -> None:
    await cluster.start(node)
    with trio.fail_after(30):
        while await cluster.status(node) is None:  # noqa: ASYNC110
            await trio.sleep(0.1)


async def test_a_group_limited_to_one_never_runs_two_through_two_leader_kills(
    tmp_path: Path,
) -> None:
    async with process_cluster(tmp_path, 3, "--workers", "4") as cluster:
        await cluster.leader()
        addresses = ",".join(cluster.addresses.values())
        async with raftq.connect(addresses, timeout=30) as client:
            await client.set_limit(group="one-at-a-time", concurrency=1)
            ids = await client.enqueue_many(
                [
                    {
                        "type": "sleep",
                        "payload": {"sleep_ms": JOB_SLEEP_MS},
                        "group": "one-at-a-time",
                        "timeout_ms": int(JOB_TIMEOUT_S * 1000),
                    }
                    for _ in range(GROUP_JOBS)
                ]
            )
            others = await client.enqueue_many(
                [
                    {"type": "sleep", "payload": {"sleep_ms": 50}, "timeout_ms": 2_000}
                    for _ in range(5)
                ]
            )
            for _ in range(2):
                await trio.sleep(0.6)  # some of the group's jobs run meanwhile
                leader = await cluster.leader()
                await cluster.kill(leader)
                await cluster.leader()
                await restart_and_wait(cluster, leader)
            jobs = [await client.wait(job_id, timeout=90) for job_id in ids + others]
        assert {job.state for job in jobs} == {"succeeded"}
        spans = sorted(span for job in jobs[:GROUP_JOBS] for span in attempts(job))
        assert len(spans) >= GROUP_JOBS
        for (_, ended), (claimed, _) in itertools.pairwise(spans):
            assert ended < claimed, f"two of the group ran at once: {spans}"
