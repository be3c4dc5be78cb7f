"""A fake raftq cluster for client tests: real TCP on 127.0.0.1, the real handshake
(``transport.connections.accept``) and the real ``JobStateMachine``, but no Raft: the leader
applies each command the moment it arrives, stamping ``now_ms`` as a real leader does.

Nodes share one state machine; one of them leads, the others answer ``Redirect``. Tests script
misbehaviour with ``inject``: the next requests get a given reply instead (``Failure`` or
``Redirect``), optionally after applying the command anyway (a commit whose answer was lost).

The nodes are Trio code. A test on another event loop (asyncio, through AnyIO) runs them in a
thread of their own with ``fake_cluster_in_thread``; ``FakeCluster.in_loop`` then runs a function
on the fake's loop (to stop a node, say).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import TypeVar

import attrs
import outcome
import trio

from raftq.ids import NodeId
from raftq.jobs.commands import Command, ExpireLeases, Result
from raftq.jobs.machine import JobStateMachine
from raftq.transport import connections
from raftq.transport.connections import HandshakeGuard, Identity, TransportStatistics
from raftq.transport.network import FramedConnection, TcpNetwork
from raftq.transport.tls import TlsConfig
from raftq.transport.wire import (
    ClientCall,
    ClientReply,
    ClientRequest,
    ClientResponse,
    CommandReply,
    Failure,
    GetJob,
    GetStatus,
    JobReply,
    JobsPage,
    JobsReply,
    ListJobs,
    PageJobs,
    QueueStatus,
    Redirect,
    StatusReply,
    SubmitCommand,
)

CLUSTER_ID = "raftq"
START_MS = 1_700_000_000_000


@attrs.define
class Injection:
    reply: ClientReply
    node: str | None
    """Only requests to this node (None: any)."""
    apply_first: bool
    """Apply the command anyway, then answer ``reply``: the client cannot know it committed."""
    calls: tuple[type, ...]


T = TypeVar("T")

THREAD_START_S = 10.0
"""How long a fake cluster's thread may take to listen (it only binds 127.0.0.1 ports)."""


class FakeCluster:
    def __init__(
        self,
        node_ids: tuple[str, ...] = ("n1",),
        *,
        leader: str | None = None,
        secret: bytes | None = None,
        tls: TlsConfig | None = None,
    ) -> None:
        self.secret = secret
        self.tls = tls
        self.token: trio.lowlevel.TrioToken | None = None
        """The fake's Trio loop when it runs in a thread of its own (``in_loop``)."""
        self.machine = JobStateMachine()
        self.index = 0
        self.leader_id = leader or node_ids[0]
        self.nodes = {node_id: FakeNode(self, node_id) for node_id in node_ids}
        self.injections: deque[Injection] = deque()
        self.calls: list[tuple[str, ClientCall]] = []
        """Every request, as (node id, call), in arrival order."""
        self.applied: list[Command] = []
        self.clock_offset_ms = 0
        """Added to the leader's clock: tests move cluster time on to expire leases."""

    async def start(self, nursery: trio.Nursery) -> None:
        for node in self.nodes.values():
            await nursery.start(node.serve)

    def in_loop(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the fake's own loop (it runs in another thread) and return its
        value: how a test on another loop touches the fake's Trio objects."""
        assert self.token is not None, "only for a fake started by fake_cluster_in_thread"
        done = threading.Event()
        results: list[outcome.Outcome[T]] = []

        def call() -> None:
            results.append(outcome.capture(function))
            done.set()

        # ``run_sync_soon`` works from any thread, also from another Trio loop's (a test's).
        self.token.run_sync_soon(call)
        assert done.wait(THREAD_START_S), "the fake cluster's loop did not answer"
        return results[0].unwrap()

    @property
    def addresses(self) -> str:
        return ",".join(node.address for node in self.nodes.values())

    def inject(
        self,
        reply: ClientReply,
        *,
        times: int = 1,
        node: str | None = None,
        apply_first: bool = False,
        calls: tuple[type, ...] = (SubmitCommand, GetJob, ListJobs, PageJobs),
    ) -> None:
        for _ in range(times):
            self.injections.append(Injection(reply, node, apply_first, calls))

    def apply(self, command: Command) -> Result:
        """Commit and apply, as the leader would: stamp now, expire overdue leases first."""
        now_ms = START_MS + self.clock_offset_ms + round(trio.current_time() * 1000)
        self.index += 1
        self.machine.apply(self.index, ExpireLeases(now_ms=now_ms))
        self.index += 1
        stamped = attrs.evolve(command, now_ms=now_ms)
        self.applied.append(stamped)
        return self.machine.apply(self.index, stamped)

    def answer(self, node: FakeNode, call: ClientCall) -> ClientReply:
        self.calls.append((node.node_id, call))
        if isinstance(call, GetStatus):
            return node.status()
        injection = self._take_injection(node, call)
        if injection is not None:
            if injection.apply_first and isinstance(call, SubmitCommand):
                self.apply(call.command)
            return injection.reply
        if node.node_id != self.leader_id:
            leader = self.nodes[self.leader_id]
            return Redirect(leader_id=leader.node_id, leader_address=leader.address)
        if isinstance(call, SubmitCommand):
            return CommandReply(result=self.apply(call.command))
        if isinstance(call, GetJob):
            return JobReply(job=self.machine.get(call.job_id))
        if isinstance(call, PageJobs):
            views, cursor = self.machine.page_jobs(
                state=call.state or None,
                queue=call.queue or None,
                job_type=call.type or None,
                cursor=call.cursor,
                limit=call.limit,
                newest_first=call.newest_first,
            )
            return JobsPage(jobs=tuple(views), cursor=cursor)
        return JobsReply(
            jobs=tuple(
                self.machine.list_jobs(
                    state=call.state or None, queue=call.queue or None, limit=call.limit
                )
            )
        )

    def _take_injection(self, node: FakeNode, call: ClientCall) -> Injection | None:
        for injection in self.injections:
            if injection.node in (None, node.node_id) and isinstance(call, injection.calls):
                self.injections.remove(injection)
                return injection
        return None

    def submitted(self, kind: type) -> list[Command]:
        return [c for c in self.applied if isinstance(c, kind)]


class FakeNode:
    def __init__(self, cluster: FakeCluster, node_id: str) -> None:
        self.cluster = cluster
        self.node_id = node_id
        self.address = ""
        self.clients = 0
        self._scope = trio.CancelScope()
        self.delay: Callable[[ClientCall], float] = lambda call: 0.0
        """Seconds to sit on a request before answering (a slow or stuck node)."""

    async def serve(self, *, task_status: trio.TaskStatus[int]) -> None:
        identity = Identity(
            cluster_id=CLUSTER_ID,
            node_id=NodeId(self.node_id),
            peers={NodeId(n) for n in self.cluster.nodes},
            secret=self.cluster.secret,
        )
        handler = functools.partial(
            connections.accept,
            identity=identity,
            statistics=TransportStatistics(),
            guard=HandshakeGuard(),
            on_peer=self._no_peers,
            on_client=self._serve_client,
        )

        with self._scope:
            async with trio.open_nursery() as nursery:
                network = TcpNetwork(self.cluster.tls)
                port = await nursery.start(network.serve, "127.0.0.1:0", handler)
                self.address = f"127.0.0.1:{port}"
                task_status.started(port)

    def stop(self) -> None:
        """Crash: stop listening and drop every connection."""
        self._scope.cancel()

    def status(self) -> StatusReply:
        machine = self.cluster.machine
        return StatusReply(
            node_id=self.node_id,
            address=self.address,
            role="leader" if self.node_id == self.cluster.leader_id else "follower",
            term=3,
            leader_id=self.cluster.leader_id,
            commit_index=self.cluster.index,
            applied_index=self.cluster.index,
            jobs=machine.state_counts(),
            queues={
                name: QueueStatus(paused=machine.is_paused(name), counts=counts)
                for name, counts in machine.queue_counts().items()
            },
            fsync=True,
        )

    async def _no_peers(self, peer: NodeId, connection: FramedConnection) -> None:
        raise AssertionError("no peers in a fake cluster")

    async def _serve_client(self, connection: FramedConnection) -> None:
        self.clients += 1
        send_lock = trio.Lock()
        async with trio.open_nursery() as nursery:
            while (request := await connection.receive()) is not None:
                assert isinstance(request, ClientRequest), request
                nursery.start_soon(self._answer, connection, send_lock, request)

    async def _answer(
        self, connection: FramedConnection, send_lock: trio.Lock, request: ClientRequest
    ) -> None:
        delay = self.delay(request.call)
        if delay:
            await trio.sleep(delay)
        reply = self.cluster.answer(self, request.call)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async with send_lock:
                await connection.send(ClientResponse(request_id=request.request_id, reply=reply))


def failure(code: str) -> Failure:
    return Failure(code=code, message=f"injected {code}")


@contextlib.contextmanager
def fake_cluster_in_thread(fake: FakeCluster) -> Iterator[FakeCluster]:
    """Run ``fake`` in a thread with its own ``trio.run`` until the block ends, so that a test
    on any event loop (asyncio too) can talk to it over TCP. Stopped and joined on the way out,
    also when the block fails."""
    ready = threading.Event()
    failures: list[BaseException] = []
    stop: list[trio.Event] = []

    async def main() -> None:
        stop.append(trio.Event())
        async with trio.open_nursery() as nursery:
            await fake.start(nursery)
            fake.token = trio.lowlevel.current_trio_token()
            ready.set()
            await stop[0].wait()
            nursery.cancel_scope.cancel()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as error:  # handed to the test thread, which raises it
            failures.append(error)
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="fake-cluster", daemon=True)
    thread.start()
    try:
        if not ready.wait(THREAD_START_S) or failures:
            raise RuntimeError(f"the fake cluster did not start: {failures}")
        yield fake
    finally:
        if fake.token is not None and thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError):
                fake.token.run_sync_soon(stop[0].set)
        thread.join(THREAD_START_S)
        assert not thread.is_alive(), "the fake cluster's thread did not stop"
    if failures:
        raise failures[0]
