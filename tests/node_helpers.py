"""Shared by the node tests: free ports, a cluster of in-process nodes, a raw client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import trio

from raftq.ids import NodeId
from raftq.jobs.commands import JobSpec
from raftq.local_cluster import free_ports
from raftq.node.config import NodeConfig
from raftq.node.node import Node, open_node
from raftq.raft.ready import Role
from raftq.transport.network import FramedConnection
from raftq.transport.wire import (
    PROTOCOL_VERSION,
    ClientCall,
    ClientReply,
    ClientRequest,
    ClientResponse,
    Hello,
    Welcome,
)


def member_map(count: int) -> dict[NodeId, str]:
    return {
        NodeId(f"n{number}"): f"127.0.0.1:{port}"
        for number, port in enumerate(free_ports(count), start=1)
    }


def node_config(
    node: str, members: dict[NodeId, str], data_root: Path, **options: object
) -> NodeConfig:
    return NodeConfig(
        node_id=NodeId(node),
        members=members,
        data_dir=str(data_root / node),
        **options,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def running_cluster(
    data_root: Path, size: int = 3, **options: object
) -> AsyncIterator[dict[str, Node]]:
    members = member_map(size)
    async with AsyncExitStack() as stack:
        nodes = {
            node_id: await stack.enter_async_context(
                open_node(node_config(node_id, members, data_root, **options))
            )
            for node_id in members
        }
        yield nodes


async def wait_until(condition: Callable[[], bool], seconds: float = 10) -> None:
    """Poll (real time: these tests run real sockets and disks) until ``condition`` holds."""
    with trio.fail_after(seconds):
        for _ in range(int(seconds / POLL_SECONDS) + 1):
            if condition():
                return
            await trio.sleep(POLL_SECONDS)
    raise AssertionError("condition never held")


POLL_SECONDS = 0.02


def the_leader(nodes: dict[str, Node]) -> Node | None:
    leaders = [n for n in nodes.values() if n.raft.core.role is Role.LEADER]
    if len(leaders) == 1 and leaders[0].steward.extend_alls:
        return leaders[0]
    return None


async def wait_for_leader(nodes: dict[str, Node], seconds: float = 10) -> Node:
    """The leader, once it leads alone and has committed its ExtendAll."""
    await wait_until(lambda: the_leader(nodes) is not None, seconds)
    leader = the_leader(nodes)
    assert leader is not None
    return leader


class Nodes:
    """In-process nodes started and stopped one by one, each with its own ``--cluster``."""

    def __init__(self, root: Path, nursery: trio.Nursery) -> None:
        self.root = root
        self.nursery = nursery
        self.running: dict[str, Node] = {}
        self.stops: dict[str, trio.Event] = {}
        self.stopped: dict[str, trio.Event] = {}

    async def start(self, node_id: str, members: dict[NodeId, str], **options: object) -> Node:
        node: Node = await self.nursery.start(self._run, node_id, members, options)
        self.running[node_id] = node
        return node

    async def _run(
        self,
        node_id: str,
        members: dict[NodeId, str],
        options: dict[str, object],
        *,
        task_status: trio.TaskStatus[Node],
    ) -> None:
        self.stops[node_id], self.stopped[node_id] = trio.Event(), trio.Event()
        try:
            async with open_node(node_config(node_id, members, self.root, **options)) as node:
                task_status.started(node)
                await self.stops[node_id].wait()
        finally:
            self.stopped[node_id].set()

    async def stop(self, node_id: str) -> None:
        del self.running[node_id]
        self.stops[node_id].set()
        await self.stopped[node_id].wait()


@asynccontextmanager
async def nodes_in(root: Path) -> AsyncIterator[Nodes]:
    async with trio.open_nursery() as nursery:
        yield Nodes(root, nursery)
        nursery.cancel_scope.cancel()


class RawClient:
    """The client protocol by hand (the real client library has its own tests)."""

    def __init__(self, connection: FramedConnection) -> None:
        self.connection = connection
        self.next_id = 0

    @classmethod
    @asynccontextmanager
    async def connect(cls, address: str, cluster_id: str = "raftq") -> AsyncIterator[RawClient]:
        host, _, port = address.rpartition(":")
        stream = await trio.open_tcp_stream(host, int(port))
        connection = FramedConnection(stream)
        async with stream:
            await connection.send(
                Hello(protocol_version=PROTOCOL_VERSION, cluster_id=cluster_id, node_id="")
            )
            welcome = await connection.receive()
            assert isinstance(welcome, Welcome), welcome
            yield cls(connection)

    async def call(self, call: ClientCall) -> ClientReply:
        self.next_id += 1
        await self.connection.send(ClientRequest(request_id=self.next_id, call=call))
        response = await self.connection.receive()
        assert isinstance(response, ClientResponse), response
        assert response.request_id == self.next_id
        return response.reply


def spec(**overrides: object) -> JobSpec:
    fields: dict[str, object] = {
        "id": "",
        "type": "noop",
        "payload": b"{}",
        "queue": "default",
        "priority": 0,
        "delay_ms": 0,
        "max_attempts": 3,
        "timeout_ms": 30_000,
        "key": "",
    }
    fields.update(overrides)
    return JobSpec(**fields)  # type: ignore[arg-type]
