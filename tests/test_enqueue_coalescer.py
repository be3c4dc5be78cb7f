"""``EnqueueCoalescer`` (what a ``SyncClient`` enqueues through) against a fake cluster: single
enqueues made while one command is in flight go together as the next command; a lone one goes
at once; when the cluster rejects one job of a batch, every caller still gets the answer (or
the error) an enqueue of its own would have got, and no job is enqueued twice."""

from __future__ import annotations

import pytest
import trio

import raftq
from raftq.client.enqueue_coalescer import EnqueueCoalescer
from raftq.client.options import job_spec
from raftq.jobs.commands import Enqueue, JobSpec
from tests.fake_node import FakeCluster

CALLERS = 16


@pytest.fixture
async def cluster(nursery: trio.Nursery) -> FakeCluster:
    fake = FakeCluster(("n1",))
    await fake.start(nursery)
    return fake


class GatedClient:
    """The real client, whose first enqueue waits at a gate: a command held in flight."""

    def __init__(self, client: raftq.Client) -> None:
        self.client = client
        self.gate = trio.Event()
        self.calls = 0

    async def enqueue_specs(self, specs: list[JobSpec]) -> list[str]:
        self.calls += 1
        if self.calls == 1:
            await self.gate.wait()
        return await self.client.enqueue_specs(specs)


def spec(payload: object, *, id: str | None = None, key: str | None = None) -> JobSpec:
    return job_spec("noop", payload, {"key": key, "id": id})


async def test_a_lone_enqueue_goes_at_once_and_concurrent_ones_ride_together(
    cluster: FakeCluster,
) -> None:
    async with raftq.connect(cluster.addresses, timeout=5) as client:
        coalescer = EnqueueCoalescer(client)
        first = await coalescer.enqueue(spec("alone"))
        assert len(cluster.submitted(Enqueue)) == 1
        ids: dict[int, str] = {}

        async def enqueue(number: int) -> None:
            ids[number] = await coalescer.enqueue(spec(number))

        async with trio.open_nursery() as nursery:
            for number in range(CALLERS):
                nursery.start_soon(enqueue, number)
        # The first caller's command goes alone; the 15 that came meanwhile go as one.
        sizes = [len(command.jobs) for command in cluster.submitted(Enqueue)]
        assert sizes == [1, 1, CALLERS - 1]
        assert coalescer.commands == 3
        assert len({first, *ids.values()}) == CALLERS + 1
        for number, job_id in ids.items():
            assert (await client.get(job_id)).payload == number


async def test_a_rejected_job_fails_only_its_own_caller_and_nothing_is_enqueued_twice(
    cluster: FakeCluster,
) -> None:
    async with raftq.connect(cluster.addresses, timeout=5) as client:
        taken = await client.enqueue("noop", "first", id="taken")
        gated = GatedClient(client)
        coalescer = EnqueueCoalescer(gated)  # type: ignore[arg-type]
        outcomes: dict[str, str | BaseException] = {}

        async def enqueue(name: str, job: JobSpec) -> None:
            try:
                outcomes[name] = await coalescer.enqueue(job)
            except raftq.RaftqError as error:
                outcomes[name] = error

        async with trio.open_nursery() as nursery:
            nursery.start_soon(enqueue, "lead", spec("lead"))  # held in flight at the gate
            await trio.testing.wait_all_tasks_blocked()
            # The same id as the first job, under another key: the cluster rejects it.
            clash = spec("clash", id="taken", key="another key")
            for name, job in (("a", spec("a")), ("clash", clash), ("b", spec("b"))):
                nursery.start_soon(enqueue, name, job)
                await trio.testing.wait_all_tasks_blocked()
            gated.gate.set()
        rejected = outcomes.pop("clash")
        assert isinstance(rejected, raftq.CommandRejected)
        assert rejected.code == "id_taken"
        assert all(isinstance(job_id, str) for job_id in outcomes.values())
        # The batch [a, clash, b] was applied (a and b enqueued), then each resent alone: the
        # keys they were given before the first send made the resends find the same jobs.
        sizes = [len(command.jobs) for command in cluster.submitted(Enqueue)]
        assert sizes == [1, 1, 3, 1, 1, 1]
        payloads = sorted(str(job.payload) for job in await client.list(limit=100))
        assert payloads == ["a", "b", "first", "lead"]
        assert (await client.get(taken)).payload == "first"
