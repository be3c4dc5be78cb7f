"""The Raft core over the real storage engine: DurableLog on MemoryDisk, crashes included."""

from __future__ import annotations

import random

import attrs

from raftq.ids import NodeId
from raftq.raft.core import RaftConfig, RaftCore
from raftq.raft.messages import Message
from raftq.raft.ready import Ready, Role
from raftq.raft.types import EntryKind, Membership, SnapshotMeta
from raftq.storage.durable_log import DurableLog
from raftq.storage.memory_disk import MemoryDisk, TailFate

MEMBERS = Membership(voters=(NodeId("n1"), NodeId("n2"), NodeId("n3")))


@attrs.define(eq=False)
class DurableNode:
    disk: MemoryDisk
    log: DurableLog
    core: RaftCore
    applied: list[bytes] = attrs.field(factory=list)

    @classmethod
    async def start(cls, node: str, disk: MemoryDisk) -> DurableNode:
        log = await DurableLog.open(disk, segment_bytes=512)
        config = RaftConfig(node_id=NodeId(node), snapshot_chunk_bytes=64)
        core = RaftCore(config, log, random.Random(node), initial_membership=MEMBERS)
        return cls(disk, log, core)

    async def handle_ready(self) -> list[Message]:
        """The node's duty: persist, then send, apply, advance."""
        if not self.core.has_ready():
            return []
        ready: Ready = self.core.ready()
        if ready.snapshot is not None:
            writer = await self.log.begin_snapshot_install(ready.snapshot.meta)
            await writer.write(ready.snapshot.data)
            await self.log.finish_snapshot_install(writer)
            self.applied = ready.snapshot.data.split(b",") if ready.snapshot.data else []
        await self.log.append(ready.entries)
        if ready.hard_state is not None:
            await self.log.save_hard_state(ready.hard_state)
        self.applied += [e.data for e in ready.committed_entries if e.kind is EntryKind.COMMAND]
        self.core.advance(ready)
        return [*ready.early_messages, *ready.messages]


async def run_until_quiet(nodes: dict[str, DurableNode], down: set[str]) -> None:
    for _ in range(500):
        outgoing: list[Message] = []
        for name, node in nodes.items():
            if name not in down:
                outgoing += await node.handle_ready()
        if not outgoing:
            return
        for message in outgoing:
            if message.recipient not in down and message.sender not in down:
                nodes[message.recipient].core.step(message)
    raise AssertionError("no quiet")


async def test_cluster_over_durable_logs_survives_crashes_and_catches_up_by_snapshot() -> None:
    disks = {name: MemoryDisk() for name in ("n1", "n2", "n3")}
    nodes = {name: await DurableNode.start(name, disk) for name, disk in disks.items()}
    nodes["n1"].core.campaign()
    await run_until_quiet(nodes, set())
    assert nodes["n1"].core.role is Role.LEADER
    for number in range(30):
        nodes["n1"].core.propose([f"c{number}".encode()])
        await run_until_quiet(nodes, {"n3"})  # n3 is down
    # The leader snapshots its applied state and compacts; n3 can only catch up by snapshot.
    leader = nodes["n1"]
    index = leader.core.log.applied
    meta = SnapshotMeta(index=index, term=leader.log.term(index), membership=MEMBERS)
    await leader.log.save_snapshot(meta, b",".join(leader.applied))
    # n2 crashes, losing nothing synced; n3 restarts too.
    for name in ("n2", "n3"):
        disks[name].crash(random.Random(name), TailFate.TORN)
        nodes[name] = await DurableNode.start(name, disks[name])
    for _ in range(30):
        for node in nodes.values():
            node.core.tick()
        await run_until_quiet(nodes, set())
    expected = [f"c{number}".encode() for number in range(30)]
    assert nodes["n1"].applied == expected
    assert nodes["n3"].applied == expected  # snapshot, then nothing more to apply
    assert nodes["n3"].log.snapshot_meta.index >= index
    nodes["n1"].core.propose([b"after"])
    await run_until_quiet(nodes, set())
    for name, node in nodes.items():
        assert node.applied == [*expected, b"after"], name
    # A restart from disk alone recovers term, commit and the log.
    term = nodes["n2"].core.term
    await nodes["n2"].log.close()
    nodes["n2"] = await DurableNode.start("n2", disks["n2"])
    assert nodes["n2"].core.term == term
    assert nodes["n2"].log.last_index() == nodes["n1"].log.last_index()
