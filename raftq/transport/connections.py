"""Connection actors: the handshake, inbound peer connections, outbound peer links.

Peer traffic is one-way per connection: each node keeps one outbound ``PeerLink`` per peer for
what it sends, and receives what peers send on the connections they opened. So a link is a
simple pump (no request/response matching) and the two directions fail independently.

A connection that breaks the protocol (garbage, an oversized frame, a wrong version or cluster,
an unknown peer, a message of the wrong kind, silence during the handshake) gets an
``ErrorFrame`` saying why and is closed; the node logs it and goes on serving everyone else.
"""

from __future__ import annotations

import contextlib
import logging
import random
import typing
from collections.abc import Awaitable, Callable, Iterator

import attrs
import trio

from raftq import limits
from raftq.errors import RemoteProtocolError
from raftq.ids import NodeId
from raftq.raft.messages import Message
from raftq.transport.network import FramedConnection, Network
from raftq.transport.wire import PROTOCOL_VERSION, ErrorFrame, Hello, Welcome

logger = logging.getLogger("raftq.transport")

RAFT_MESSAGES = typing.get_args(Message)

MESSAGES_PER_WRITE_MAX = 256
"""Queued messages coalesced into one write to a peer."""


@attrs.frozen(kw_only=True)
class Identity:
    """Who this node is, and who may call it as a peer (``peers`` changes with the membership;
    ``raftq.node.peers``)."""

    cluster_id: str
    node_id: NodeId
    peers: set[NodeId]


PeerHandler = Callable[[NodeId, FramedConnection], Awaitable[None]]
ClientHandler = Callable[[FramedConnection], Awaitable[None]]


@attrs.define(eq=False)
class TransportStatistics:
    accepted: int = 0
    refused: dict[str, int] = attrs.field(factory=dict)
    """Connections closed with an ErrorFrame, by its code."""

    def refuse(self, code: str) -> None:
        self.refused[code] = self.refused.get(code, 0) + 1


async def accept(
    stream: trio.abc.Stream,
    identity: Identity,
    statistics: TransportStatistics,
    *,
    on_peer: PeerHandler,
    on_client: ClientHandler,
    handshake_timeout_ms: int = limits.HANDSHAKE_TIMEOUT_MS,
) -> None:
    """Serve one inbound connection: handshake, then hand it to the peer or client handler."""
    connection = FramedConnection(stream)
    statistics.accepted += 1
    try:
        hello = None
        with trio.move_on_after(handshake_timeout_ms / 1000):
            hello = await connection.receive()
        refusal = _check_hello(hello, identity)
        if refusal is not None:
            await _refuse(connection, statistics, *refusal)
            return
        assert isinstance(hello, Hello)
        await connection.send(Welcome(node_id=identity.node_id))
        await _serve_caller(connection, hello.node_id, on_peer, on_client)
    except RemoteProtocolError as error:
        await _refuse(connection, statistics, "bad_frame", str(error))
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
        logger.debug("connection lost error=%r", str(error))
    finally:
        await trio.aclose_forcefully(connection.stream)


CONNECTION_FAILURES = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
    RemoteProtocolError,
)
"""What a caller can do to its own connection: break it, reset it, send garbage."""


async def _serve_caller(
    connection: FramedConnection, caller: str, on_peer: PeerHandler, on_client: ClientHandler
) -> None:
    """Run the handler. A handler's nursery wraps a failure of its connection (a client that
    resets it mid-request) in an exception group; unwrapped here, so that ``accept`` closes
    that one connection instead of the group taking the whole node down."""
    try:
        if caller:
            await on_peer(NodeId(caller), connection)
        else:
            await on_client(connection)
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if leaves and all(isinstance(leaf, CONNECTION_FAILURES) for leaf in leaves):
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exception in group.exceptions:
        if isinstance(exception, BaseExceptionGroup):
            yield from _leaves(exception)
        else:
            yield exception


def _check_hello(hello: object, identity: Identity) -> tuple[str, str] | None:
    if hello is None:
        return "handshake_timeout", "no handshake in time"
    if not isinstance(hello, Hello):
        return "unexpected", f"the first frame must be Hello, not {type(hello).__name__}"
    if hello.protocol_version != PROTOCOL_VERSION:
        return "bad_version", (
            f"protocol version {hello.protocol_version} is not spoken here; "
            f"this node speaks {PROTOCOL_VERSION}"
        )
    if hello.cluster_id != identity.cluster_id:
        return "wrong_cluster", (
            f"this node belongs to cluster {identity.cluster_id!r}, not {hello.cluster_id!r}"
        )
    if hello.node_id and hello.node_id not in identity.peers:
        return "unknown_peer", f"{hello.node_id!r} is not a member of this cluster"
    return None


async def _refuse(
    connection: FramedConnection, statistics: TransportStatistics, code: str, message: str
) -> None:
    statistics.refuse(code)
    logger.warning("connection refused code=%s reason=%r", code, message)
    with trio.move_on_after(1):  # never wait long on a peer we are throwing out
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await connection.send(ErrorFrame(code=code, message=message))


async def receive_peer_messages(
    peer: NodeId,
    connection: FramedConnection,
    deliver: Callable[[Message], None],
    *,
    idle_timeout_ms: int,
) -> None:
    """Pass a peer's Raft messages on until it hangs up, goes silent or misbehaves."""
    while True:
        message = None
        with trio.move_on_after(idle_timeout_ms / 1000):
            message = await connection.receive()
            if message is None:
                return  # the peer closed its side
        if message is None:
            raise RemoteProtocolError(f"peer {peer} silent for {idle_timeout_ms} ms")
        if not isinstance(message, RAFT_MESSAGES) or message.sender != peer:
            raise RemoteProtocolError(f"unexpected {type(message).__name__} from peer {peer}")
        deliver(message)


class PeerLink:
    """Sends to one peer: a bounded queue, and a pump that (re)connects with jittered backoff.

    ``send_nowait`` never blocks the Raft actor: Raft survives lost messages, so when the queue
    is full (the peer is down or slow) the message is dropped and counted.
    """

    def __init__(
        self,
        network: Network,
        identity: Identity,
        peer: NodeId,
        address: str,
        rng: random.Random,
        *,
        queue_max: int = limits.PEER_QUEUE_MESSAGES_MAX,
    ) -> None:
        self.peer = peer
        self.address = address
        self._network = network
        self._identity = identity
        self._rng = rng
        self._sender, self._receiver = trio.open_memory_channel[Message](queue_max)
        self.sent = 0
        self.dropped = 0
        self.connects = 0
        self.connected = False

    def send_nowait(self, message: Message) -> None:
        try:
            self._sender.send_nowait(message)
        except trio.WouldBlock:
            self.dropped += 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        backoff_ms = limits.RECONNECT_BACKOFF_MIN_MS
        while True:
            try:
                connection = await self._connect()
            except (OSError, trio.BrokenResourceError, RemoteProtocolError, trio.TooSlowError) as e:
                logger.debug("peer connect failed peer=%s error=%r", self.peer, str(e))
            else:
                backoff_ms = limits.RECONNECT_BACKOFF_MIN_MS
                try:
                    await self._pump(connection)
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
                    logger.info("peer link lost peer=%s error=%r", self.peer, str(e))
                finally:
                    self.connected = False
                    await trio.aclose_forcefully(connection.stream)
            await trio.sleep(backoff_ms * (0.5 + self._rng.random()) / 1000)
            backoff_ms = min(backoff_ms * 2, limits.RECONNECT_BACKOFF_MAX_MS)

    async def _connect(self) -> FramedConnection:
        with trio.fail_after(limits.HANDSHAKE_TIMEOUT_MS / 1000):
            stream = await self._network.connect(self.address)
            connection = FramedConnection(stream)
            try:
                await connection.send(
                    Hello(
                        protocol_version=PROTOCOL_VERSION,
                        cluster_id=self._identity.cluster_id,
                        node_id=self._identity.node_id,
                    )
                )
                reply = await connection.receive()
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        if not isinstance(reply, Welcome) or reply.node_id != self.peer:
            await trio.aclose_forcefully(stream)
            raise RemoteProtocolError(f"peer {self.peer} at {self.address} answered {reply!r}")
        self.connects += 1
        self.connected = True
        return connection

    async def _pump(self, connection: FramedConnection) -> None:
        while True:
            batch: list[Message] = [await self._receiver.receive()]
            while len(batch) < MESSAGES_PER_WRITE_MAX:
                try:
                    batch.append(self._receiver.receive_nowait())
                except trio.WouldBlock:
                    break
            await connection.send_many(list(batch))
            self.sent += len(batch)
