"""Nodes in one process over real TCP on 127.0.0.1: election, enqueue, replication, reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from raftq.jobs.commands import Claim, ClaimResult, Complete, Done, Enqueue, EnqueueResult
from raftq.node import client_service
from raftq.node.client_service import ELECTION_WAIT_TIMEOUTS
from raftq.transport.wire import (
    ClientRequest,
    ClientResponse,
    CommandReply,
    GetJob,
    GetStatus,
    JobReply,
    Redirect,
    StatusReply,
    SubmitCommand,
)
from tests.node_helpers import (
    RawClient,
    member_map,
    nodes_in,
    running_cluster,
    spec,
    wait_for_leader,
    wait_until,
)


async def test_three_nodes_elect_replicate_and_serve_clients(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, 3) as nodes:
        leader = await wait_for_leader(nodes)
        follower = next(node for node in nodes.values() if node is not leader)
        async with RawClient.connect(follower.config.address) as client:
            # A follower forwards a command to the leader and relays the answer...
            forwarded_job = spec(queue="elsewhere")
            reply = await client.call(
                SubmitCommand(command=Enqueue(now_ms=0, jobs=(forwarded_job,)))
            )
            assert isinstance(reply, CommandReply)
            assert isinstance(reply.result, EnqueueResult)
            # ... unless the sender follows redirects itself: then it says who leads.
            reply = await client.call(
                SubmitCommand(
                    command=Enqueue(now_ms=0, jobs=(forwarded_job,)), follow_redirects=True
                )
            )
            assert isinstance(reply, Redirect)
            assert reply.leader_id == leader.config.node_id
            assert reply.leader_address == leader.config.address
        async with RawClient.connect(leader.config.address) as client:
            reply = await client.call(
                SubmitCommand(command=Enqueue(now_ms=0, jobs=(spec(key="k1"), spec())))
            )
            assert isinstance(reply, CommandReply)
            assert isinstance(reply.result, EnqueueResult)
            job_id = reply.result.jobs[0].job_id  # type: ignore[union-attr]
            claimed = await client.call(
                SubmitCommand(
                    command=Claim(now_ms=0, claimer="w1", queues=("default",), max_jobs=1)
                )
            )
            assert isinstance(claimed, CommandReply)
            assert isinstance(claimed.result, ClaimResult)
            lease = claimed.result.leases[0]
            assert lease.job_id == job_id
            done = await client.call(
                SubmitCommand(
                    command=Complete(now_ms=0, job_id=job_id, fence=lease.fence, result=b"1")
                )
            )
            assert done == CommandReply(result=Done(job_id=job_id, state="succeeded"))
        # A linearizable read on a follower sees it at once.
        async with RawClient.connect(follower.config.address) as client:
            job = await client.call(GetJob(job_id=job_id))
            assert isinstance(job, JobReply)
            assert job.job is not None
            assert job.job.state == "succeeded"
            status = await client.call(GetStatus())
            assert isinstance(status, StatusReply)
            assert status.leader_id == leader.config.node_id
        await wait_until(
            lambda: all(
                n.applier.applied_index == leader.applier.applied_index for n in nodes.values()
            )
        )
        digests = {node.applier.machine.digest() for node in nodes.values()}
        assert len(digests) == 1


async def test_in_process_workers_run_jobs_enqueued_through_the_client(tmp_path: Path) -> None:
    import raftq

    async with running_cluster(tmp_path, 3, workers=4) as nodes:
        leader = await wait_for_leader(nodes)
        addresses = [node.config.address for node in nodes.values()]
        async with raftq.connect(addresses, timeout=20) as client:
            ids = await client.enqueue_many(
                [{"type": "echo", "payload": {"n": n}, "key": f"k{n}"} for n in range(60)]
            )
            ids.append(await client.enqueue("sleep", {"sleep_ms": 5}, key="sleeper"))
            for job_id in ids:
                job = await client.wait(job_id, timeout=20)
                assert job.state == "succeeded", job
            assert (await client.get(ids[3])).result == {"n": 3}
            status = await client.status()
        assert status["cluster"]["leader"] == leader.config.node_id
        assert status["jobs"]["succeeded"] == 61
        assert status["totals"] == {"enqueued": 61, "finished": 61}
        assert {node["role"] for node in status["cluster"]["nodes"]} == {"leader", "follower"}


async def test_a_snapshot_is_taken_after_enough_bytes_even_with_few_entries(
    tmp_path: Path,
) -> None:
    async with running_cluster(tmp_path, 1, snapshot_entries=0, snapshot_bytes=20_000) as nodes:
        (node,) = nodes.values()
        await wait_for_leader(nodes)
        async with RawClient.connect(node.config.address) as client:
            for _ in range(3):  # three entries of ~5 kB: no snapshot yet
                big = spec(payload=b'"' + b"x" * 5_000 + b'"')
                reply = await client.call(SubmitCommand(command=Enqueue(now_ms=0, jobs=(big,))))
                assert isinstance(reply, CommandReply)
            assert node.log_writer.statistics.snapshots_saved == 0
            for _ in range(2):  # past 20 kB of entries: one snapshot, after 5 entries
                big = spec(payload=b'"' + b"y" * 5_000 + b'"')
                await client.call(SubmitCommand(command=Enqueue(now_ms=0, jobs=(big,))))
            await wait_until(lambda: node.log_writer.statistics.snapshots_saved == 1)


async def test_a_node_process_freezes_what_survives_each_collection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    import gc

    from raftq.node.__main__ import freeze_survivors

    gc.unfreeze()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(freeze_survivors, 10.0)
            first = gc.get_freeze_count()
            assert first > 0  # everything alive at start-up: the recovered state
            survivors = [[n] for n in range(1_000)]  # tracked containers, allocated later
            await trio.sleep(10.5)
            assert gc.get_freeze_count() >= first + len(survivors)
            nursery.cancel_scope.cancel()
    finally:
        gc.unfreeze()  # the rest of the test process collects as usual


async def test_a_node_process_leaves_full_collections_to_its_timed_pass(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """While ``freeze_survivors`` runs, Python's own full collections are held back: the
    timed pass collects and freezes, and the objects that survive the young generations meanwhile
    (a busy node's new jobs) are not scanned again and again (about five times each by
    Python's own rule, 10% of a node's CPU, docs/performance.md). Once it stops, the
    collector is as it was: the same allocations then bring a full collection."""
    import gc

    from raftq.node.__main__ import freeze_survivors

    full_passes: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full_passes.append(1)

    def allocate_survivors(count: int) -> list[list[int]]:
        return [[n] for n in range(count)]  # tracked containers that stay alive

    threshold = gc.get_threshold()
    # Python's rule: a full pass once the young survivors exceed a quarter of the last full
    # pass's survivors (here: every tracked object of this test process).
    needed = len(gc.get_objects()) // 2 + 100_000
    gc.unfreeze()
    gc.callbacks.append(count)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(freeze_survivors, 10.0)
            full_passes.clear()  # its own first pass
            held = allocate_survivors(needed)
            assert full_passes == []
            nursery.cancel_scope.cancel()
        assert gc.get_threshold() == threshold
        held += allocate_survivors(needed)
        assert full_passes, "the test's allocations never brought a full collection"
    finally:
        gc.callbacks.remove(count)
        gc.unfreeze()


@pytest.mark.parametrize("freeze", [True, False])
async def test_a_node_process_freezes_the_state_it_restored_at_start_up(
    tmp_path: Path, freeze: bool
) -> None:
    """``open_node(freeze_recovered=True)`` (the node process) freezes the restored state
    before its first collection could scan it; an embedding application's process is left
    as it is by default."""
    import gc

    from raftq.node.node import open_node
    from raftq.seeded_state import pending_jobs, seed_snapshot, voters_at
    from tests.node_helpers import node_config

    members = member_map(1)
    config = node_config("n1", members, tmp_path)
    jobs = 2_000
    addresses = {str(node): address for node, address in members.items()}
    await seed_snapshot(tmp_path / "n1", voters_at(addresses), pending_jobs(jobs).snapshot())
    gc.unfreeze()
    try:
        async with open_node(config, freeze_recovered=freeze) as node:
            frozen = gc.get_freeze_count()
            assert len(node.applier.machine.jobs) == jobs
            if freeze:
                assert frozen >= jobs  # at least a Job record each, besides the process
            else:
                assert frozen == 0
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_start_up_restore_runs_without_garbage_collections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, enabled: bool
) -> None:
    """A million jobs' restore is millions of objects without a cycle: the collector's full
    passes as they pile up are pure cost (docs/performance.md). It is paused for the restore
    alone, and left as it was found (an embedding application may run with it off)."""
    import gc

    from raftq.jobs.machine import JobStateMachine
    from raftq.node.node import open_node
    from raftq.seeded_state import pending_jobs, seed_snapshot, voters_at
    from tests.node_helpers import node_config

    members = member_map(1)
    config = node_config("n1", members, tmp_path)
    addresses = {str(node): address for node, address in members.items()}
    await seed_snapshot(tmp_path / "n1", voters_at(addresses), pending_jobs(100).snapshot())
    during: list[bool] = []
    restore = JobStateMachine.restore

    def watched(data: bytes) -> JobStateMachine:
        during.append(gc.isenabled())
        return restore(data)

    monkeypatch.setattr(JobStateMachine, "restore", watched)
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        async with open_node(config) as node:
            assert gc.isenabled() is enabled
            assert len(node.applier.machine.jobs) == 100
    finally:
        (gc.enable if was else gc.disable)()
    assert during == [False]


async def test_a_client_resetting_its_connection_mid_request_does_not_stop_the_node(
    tmp_path: Path,
) -> None:
    import socket
    import struct

    async with running_cluster(tmp_path, 1) as nodes:
        (node,) = nodes.values()
        await wait_for_leader(nodes)
        async with RawClient.connect(node.config.address) as client:
            # A claim on an empty queue is held (long poll) while the client resets.
            await client.connection.send(
                ClientRequest(
                    request_id=1, call=SubmitCommand(command=Claim(now_ms=0, claimer="w"))
                )
            )
            raw = client.connection.stream.socket  # type: ignore[attr-defined]
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await trio.sleep(1.5)  # the held claim ends, its answer meets the reset connection
        async with RawClient.connect(node.config.address) as client:
            assert isinstance(await client.call(GetStatus()), StatusReply)


async def test_a_connection_gets_no_more_requests_read_than_its_in_flight_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """limits.CLIENT_REQUESTS_IN_FLIGHT_MAX: a request holds its slot until its reply is
    written, and the node reads no request past the limit meanwhile (the client's sends back
    up: TCP's own backpressure). Two held claims fill a limit of two; a status request behind
    them is answered only after one of them."""
    from raftq import limits

    monkeypatch.setattr(limits, "CLIENT_REQUESTS_IN_FLIGHT_MAX", 2)
    async with running_cluster(tmp_path, 1) as nodes:
        (node,) = nodes.values()
        await wait_for_leader(nodes)
        async with RawClient.connect(node.config.address) as client:
            for request_id, claimer in ((1, "w1"), (2, "w2")):  # held: a long poll each
                claim = SubmitCommand(command=Claim(now_ms=0, claimer=claimer))
                await client.connection.send(ClientRequest(request_id=request_id, call=claim))
            await client.connection.send(ClientRequest(request_id=3, call=GetStatus()))
            order = []
            with trio.fail_after(10):
                for _ in range(3):
                    response = await client.connection.receive()
                    assert isinstance(response, ClientResponse), response
                    order.append(response.request_id)
        assert order[0] in (1, 2), order
        assert sorted(order) == [1, 2, 3]


async def test_one_new_job_wakes_one_waiting_claim_not_every_idle_worker(tmp_path: Path) -> None:
    """Idle workers' claims wait on the leader (a long poll). When a job comes, they take
    turns: one claim becomes a log entry and takes the job; the others keep waiting, and time
    out empty without ever becoming entries."""
    async with running_cluster(tmp_path, 1, expire_interval_ms=600_000) as nodes:
        (node,) = nodes.values()
        await wait_for_leader(nodes)
        answers: list[object] = []

        async def idle_worker(name: str) -> None:
            async with RawClient.connect(node.config.address) as client:
                claim = Claim(now_ms=0, claimer=name, max_jobs=5)
                answers.append(await client.call(SubmitCommand(command=claim)))

        async with trio.open_nursery() as nursery:
            for name in ("w1", "w2", "w3"):
                nursery.start_soon(idle_worker, name)
            await trio.sleep(0.2)  # all three are waiting
            entries_before = node.applier.statistics.applied_entries
            async with RawClient.connect(node.config.address) as client:
                await client.call(SubmitCommand(command=Enqueue(now_ms=0, jobs=(spec(),))))
        leases = [
            lease
            for answer in answers
            if isinstance(answer, CommandReply) and isinstance(answer.result, ClaimResult)
            for lease in answer.result.leases
        ]
        assert len(answers) == 3
        assert len(leases) == 1
        # The enqueue and one claim: the two claims that found nothing never became entries.
        assert node.applier.statistics.applied_entries - entries_before == 2


async def test_status_waits_for_a_cluster_that_is_still_starting(tmp_path: Path) -> None:
    """Like every command, status retries until the client's timeout (CONTRACT.md): a node
    that comes up a moment after the call still answers it."""
    import raftq
    from raftq.node.node import open_node
    from tests.node_helpers import member_map, node_config

    members = member_map(1)
    (address,) = members.values()

    async def start_late(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(0.5)
        async with open_node(node_config("n1", members, tmp_path)):
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        await nursery.start(start_late)
        async with raftq.connect(address, timeout=10) as client:
            status = await client.status()
        assert status["cluster"]["nodes"][0]["id"] == "n1"
        nursery.cancel_scope.cancel()


async def test_a_request_that_finds_no_leader_waits_for_the_election(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that knows no leader (an election is under way) holds a client's request until
    one is elected and then answers it (a redirect to the new leader, or the answer if it won),
    so the client does not sleep through the end of the election in its retry backoff. With
    no quorum it says "no leader" after a bounded wait."""
    members = member_map(3)
    command = SubmitCommand(command=Enqueue(now_ms=0, jobs=(spec(),)), follow_redirects=True)
    async with nodes_in(tmp_path) as nodes:
        for node_id in members:
            await nodes.start(node_id, members)
        leader = await wait_for_leader(nodes.running)
        lonely, other = (node for node in nodes.running.values() if node is not leader)
        await nodes.stop(leader.config.node_id)
        await nodes.stop(other.config.node_id)
        await wait_until(lambda: lonely.raft.core.leader is None)
        # No quorum: the request waits a few election timeouts, then "no leader".
        async with RawClient.connect(lonely.config.address) as client:
            started = trio.current_time()
            reply = await client.call(command)
            waited = trio.current_time() - started
        assert reply == Redirect(leader_id="", leader_address="")
        election_timeout_s = lonely.config.election_ticks * lonely.config.tick_ms / 1000
        assert waited >= ELECTION_WAIT_TIMEOUTS * election_timeout_s
        # A quorum returns while a request waits: it is answered once there is a leader.
        monkeypatch.setattr(client_service, "ELECTION_WAIT_TIMEOUTS", 30)
        replies: list[object] = []

        async def call() -> None:
            async with RawClient.connect(lonely.config.address) as client:
                replies.append(await client.call(command))

        async with trio.open_nursery() as waiting:
            waiting.start_soon(call)
            await trio.sleep(0.2)
            assert not replies  # still waiting: there is no leader to name
            await nodes.start(other.config.node_id, members)
        (reply,) = replies
        if isinstance(reply, Redirect):
            assert reply.leader_id == other.config.node_id
        else:
            assert isinstance(reply, CommandReply)
            assert lonely.raft.core.leader == lonely.config.node_id
