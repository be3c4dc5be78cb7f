"""Membership changes on in-process nodes over real TCP: a node joins (learner, catch-up by log
or snapshot, promotion), leadership moves on request, members leave; refusals are clear."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import raftq
from raftq.client.client import Client
from raftq.ids import NodeId
from raftq.raft.ready import Role
from tests.node_helpers import Nodes, member_map, nodes_in, wait_for_leader, wait_until


def addresses(nodes: Nodes) -> list[str]:
    return [node.config.address for node in nodes.running.values()]


async def enqueue_some(client: Client, count: int, prefix: str) -> list[str]:
    return await client.enqueue_many(
        [{"type": "noop", "payload": {"n": n}, "key": f"{prefix}-{n}"} for n in range(count)]
    )


def digests_agree(nodes: Nodes) -> bool:
    applied = {node.applier.applied_index for node in nodes.running.values()}
    if len(applied) != 1:
        return False
    return len({node.applier.machine.digest() for node in nodes.running.values()}) == 1


async def test_a_node_joins_as_learner_catches_up_by_snapshot_and_becomes_a_voter(
    tmp_path: Path,
) -> None:
    everyone = member_map(4)
    first_three = {node: everyone[node] for node in sorted(everyone)[:3]}
    async with nodes_in(tmp_path) as nodes:
        for node_id in first_three:
            await nodes.start(node_id, first_three, snapshot_entries=20)
        await wait_for_leader(nodes.running)
        async with raftq.connect(addresses(nodes), timeout=10) as client:
            before = []
            for batch in range(30):  # past a snapshot (every 20 entries) on every node
                before += await enqueue_some(client, 5, f"before-{batch}")
            # The newcomer lists everyone, itself included; no one else knows it yet, so it
            # cannot disturb them: it waits to be admitted.
            newcomer = await nodes.start("n4", everyone, snapshot_entries=20)
            await trio.sleep(1.0)  # several election timeouts
            assert newcomer.raft.core.role is not Role.LEADER
            assert newcomer.applier.applied_index == 0
            assert {n.raft.core.term for n in nodes.running.values() if n is not newcomer} == {
                next(iter(nodes.running.values())).raft.core.term
            }

            membership = await client.add_node("n4", everyone[NodeId("n4")])
            assert membership["voters"] == ["n1", "n2", "n3", "n4"]
            assert membership["learners"] == []
            await wait_until(lambda: digests_agree(nodes), 10)
            assert newcomer.applier.statistics.snapshots_restored == 1  # the log was compacted
            for job_id in before:
                assert newcomer.applier.machine.get(job_id) is not None
            # A repeat is a no-op, and the status lists the newcomer with its progress.
            assert (await client.add_node("n4", everyone[NodeId("n4")]))["voters"] == membership[
                "voters"
            ]
            status = await client.status()
            listed = {node["id"]: node for node in status["cluster"]["nodes"]}
            assert listed["n4"]["role"] == "follower"
            leader_id = status["cluster"]["leader"]
            assert all(
                node["match_index"] == status["cluster"]["commit_index"]
                for node_id, node in listed.items()
                if node_id != leader_id
            )
            # Four voters need three: with one of the old three gone, the newcomer's vote
            # counts, and new jobs still commit.
            down = next(n for n in ("n1", "n2", "n3") if n != leader_id)
            await nodes.stop(down)
            after = await enqueue_some(client, 5, "after")
            await wait_until(lambda: all(n.applier.machine.get(after[-1]) for n in [newcomer]))


async def test_leadership_moves_on_request_and_a_removed_leader_steps_down(tmp_path: Path) -> None:
    members = member_map(3)
    async with nodes_in(tmp_path) as nodes:
        for node_id in members:
            await nodes.start(node_id, members)
        leader = await wait_for_leader(nodes.running)
        target = next(n for n in sorted(members) if n != leader.config.node_id)
        async with raftq.connect(addresses(nodes), timeout=10) as client:
            moved = await client.transfer_leader(target)
            assert moved["leader"] == target
            assert nodes.running[target].raft.core.role is Role.LEADER
            # Removing the leader itself: it steps down once the change commits; the other
            # two carry on as a two-voter cluster.
            membership = await client.remove_node(target)
            assert membership["voters"] == sorted(set(members) - {target})
            remaining = {n: node for n, node in nodes.running.items() if n != target}
            new_leader = await wait_for_leader(remaining)
            assert new_leader.config.node_id != target
            assert nodes.running[target].raft.core.role is not Role.LEADER
            (job_id,) = await enqueue_some(client, 1, "after-removal")
            await wait_until(lambda: all(n.applier.machine.get(job_id) for n in remaining.values()))
            # Removing it again changes nothing.
            assert (await client.remove_node(target))["voters"] == membership["voters"]


async def test_two_voters_shrink_to_one_and_the_survivor_leads_once_the_leader_stops(
    tmp_path: Path,
) -> None:
    """Issue #14 (the class of etcd-io/etcd#10563), end to end: remove the leader of a
    two-voter cluster, then stop it as soon as ``remove`` answers (docs/operations.md): the
    survivor has applied the change by then, elects itself alone and takes writes; after a
    restart too (the change it applied is durable)."""
    members = member_map(2)
    async with nodes_in(tmp_path) as nodes:
        for node_id in members:
            await nodes.start(node_id, members)
        leader = await wait_for_leader(nodes.running)
        removed = leader.config.node_id
        (survivor,) = set(members) - {removed}
        async with raftq.connect(addresses(nodes), timeout=10) as client:
            membership = await client.remove_node(removed)
            assert membership["voters"] == [survivor]
            await nodes.stop(removed)
            assert nodes.running[survivor].raft.core.membership.voters == (survivor,)
            await nodes.stop(survivor)
            await nodes.start(survivor, members)
            new_leader = await wait_for_leader(nodes.running)
            assert new_leader.config.node_id == survivor
            (job_id,) = await enqueue_some(client, 1, "alone")
            assert new_leader.applier.machine.get(job_id) is not None


async def test_membership_changes_that_make_no_sense_are_refused_clearly(tmp_path: Path) -> None:
    members = member_map(3)
    async with nodes_in(tmp_path) as nodes:
        for node_id in members:
            await nodes.start(node_id, members)
        await wait_for_leader(nodes.running)
        async with raftq.connect(addresses(nodes), timeout=2) as client:
            # The same member again is a no-op; at another address, a mistake.
            assert (await client.add_node("n1", members[NodeId("n1")]))["voters"] == sorted(members)
            with pytest.raises(raftq.RaftqError, match="already a voter at"):
                await client.add_node("n1", "127.0.0.1:1")
            with pytest.raises(raftq.ConfigError, match="HOST:PORT"):
                await client.add_node("n9", "nowhere")
            with pytest.raises(raftq.RaftqError, match="not a voter"):
                await client.transfer_leader("n9")
            with pytest.raises(raftq.RaftqError, match="not a learner"):
                await client._change_membership("promote", "n9")
            # A learner that never answers is never promoted: the leader keeps refusing, and
            # the client says why once its time is up.
            unused = member_map(1)
            with pytest.raises(raftq.RaftqError, match="has not caught up"):
                await client.add_node("n9", next(iter(unused.values())))
            status = await client.status()
            assert status["cluster"]["commit_index"] > 0
            # A node embedded in an application is stopped there, not drained remotely.
            with pytest.raises(raftq.RaftqError, match="embedded"):
                await client.drain(members[NodeId("n1")])
