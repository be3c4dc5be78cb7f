"""Connection actors: the handshake, inbound peer connections, outbound peer links.

Peer traffic is one-way per connection: each node keeps one outbound ``PeerLink`` per peer for
what it sends, and receives what peers send on the connections they opened. So a link is a
simple pump (no request/response matching) and the two directions fail independently.

A connection that breaks the protocol (garbage, an oversized frame, a wrong version or cluster,
an unknown peer, a message of the wrong kind, silence during the handshake) or fails TLS or
authentication (a wrong or missing secret, a replayed handshake, a bad certificate) gets an
``ErrorFrame`` saying why (when the stream can still carry one) and is closed, counted by
reason in ``TransportStatistics.refused``; the node logs it and goes on serving everyone else.
Until the handshake completes, frames are limited to ``HANDSHAKE_FRAME_BYTES_MAX``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
import typing
from collections.abc import Awaitable, Callable, Iterator

import attrs
import trio

from raftq import limits
from raftq.backoff import Backoff
from raftq.errors import AuthenticationError, RemoteProtocolError
from raftq.ids import NodeId
from raftq.raft.messages import Message
from raftq.transport import auth
from raftq.transport.framing import frame
from raftq.transport.network import FramedByteStream, FramedConnection, Network
from raftq.transport.tls import refusal_reason, send_alert, tls_failure
from raftq.transport.wire import (
    PROTOCOL_VERSION,
    Challenge,
    ErrorFrame,
    Hello,
    Proof,
    Welcome,
    encode_wire,
)

logger = logging.getLogger("raftq.transport")

RAFT_MESSAGES = typing.get_args(Message)

MESSAGES_PER_WRITE_MAX = 256
"""Queued messages coalesced into one write to a peer."""

RECONNECT_BACKOFF = Backoff(
    min_s=limits.RECONNECT_BACKOFF_MIN_MS / 1000,
    max_s=limits.RECONNECT_BACKOFF_MAX_MS / 1000,
    jitter=(0.5, 1.5),
)
"""A peer link reconnects after these delays (``limits.RECONNECT_BACKOFF_MIN_MS``)."""


@attrs.frozen(kw_only=True)
class Identity:
    """Who this node is, who may call it as a peer (``peers`` changes with the membership;
    ``raftq.node.peers``), and the cluster secret (None: none)."""

    cluster_id: str
    node_id: NodeId
    peers: set[NodeId]
    secret: bytes | None = attrs.field(default=None, repr=False)


PeerHandler = Callable[[NodeId, FramedConnection], Awaitable[None]]
ClientHandler = Callable[[FramedConnection], Awaitable[None]]


@attrs.define(eq=False)
class TransportStatistics:
    accepted: int = 0
    refused: dict[str, int] = attrs.field(factory=dict)
    """Connections refused, by reason: the ErrorFrame code, or a TLS failure."""

    def refuse(self, code: str) -> None:
        self.refused[code] = self.refused.get(code, 0) + 1


class HandshakeGuard:
    """What a listener's handshakes share: a bound on how many run at once, and the callers'
    recent nonces (a replayed handshake is refused by name)."""

    def __init__(
        self,
        *,
        in_flight_max: int = limits.HANDSHAKES_IN_FLIGHT_MAX,
        nonces_remembered: int = limits.HANDSHAKE_NONCES_REMEMBERED,
    ) -> None:
        self.slots = trio.Semaphore(in_flight_max)
        self.recent_nonces = auth.RecentNonces(nonces_remembered)


class _Refused(Exception):
    """The handshake failed: refuse the connection with this code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def accept(
    stream: trio.abc.Stream,
    identity: Identity,
    statistics: TransportStatistics,
    *,
    guard: HandshakeGuard,
    on_peer: PeerHandler,
    on_client: ClientHandler,
    handshake_timeout_ms: int = limits.HANDSHAKE_TIMEOUT_MS,
) -> None:
    """Serve one inbound connection: TLS and the handshake (authenticated when the cluster has a
    secret), then hand it to the peer or client handler. A connection that fails is refused
    and closed before any frame past the handshake is read."""
    connection = FramedConnection(stream, max_bytes=limits.HANDSHAKE_FRAME_BYTES_MAX)
    statistics.accepted += 1
    try:
        try:
            guard.slots.acquire_nowait()
        except trio.WouldBlock:
            await _refuse(connection, statistics, "busy", "too many connections in handshake")
            return
        try:
            with trio.move_on_after(handshake_timeout_ms / 1000) as timeout:
                caller = await _handshake(connection, identity, guard)
        finally:
            guard.slots.release()
        if timeout.cancelled_caught:
            await _refuse(connection, statistics, "handshake_timeout", "no handshake in time")
            return
        connection.max_bytes = limits.FRAME_BYTES_MAX
        await _serve_caller(connection, caller, on_peer, on_client)
    except _Refused as refusal:
        await _refuse(connection, statistics, refusal.code, refusal.message)
    except RemoteProtocolError as error:
        await _refuse(connection, statistics, "bad_frame", str(error))
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
        failure = tls_failure(error)
        if failure is None:
            logger.debug("connection lost error=%r", str(error))
        else:
            await _refuse_tls(connection, statistics, failure)
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


async def _handshake(
    connection: FramedConnection, identity: Identity, guard: HandshakeGuard
) -> str:
    """The caller's node id ("" for a client), or ``_Refused``."""
    if isinstance(connection.stream, trio.SSLStream):
        await connection.stream.do_handshake()
    hello = await connection.receive()
    refusal = _check_hello(hello, identity)
    if refusal is not None:
        raise _Refused(*refusal)
    assert isinstance(hello, Hello)
    if identity.secret is not None:
        await _authenticate(connection, identity, identity.secret, hello, guard)
    await connection.send(Welcome(node_id=identity.node_id))
    return hello.node_id


async def _authenticate(
    connection: FramedConnection,
    identity: Identity,
    secret: bytes,
    hello: Hello,
    guard: HandshakeGuard,
) -> None:
    """Prove the secret to the caller, then make the caller prove it (module ``auth``)."""
    if len(hello.nonce) != auth.NONCE_BYTES:
        raise _Refused(
            "auth_required",
            "this cluster requires its secret: give the client --secret-file "
            "(or $RAFTQ_SECRET_FILE, or secret= in raftq.connect)",
        )
    if not guard.recent_nonces.first_time(hello.nonce):
        raise _Refused("replayed", "this handshake was seen before: a replay")
    node_nonce = auth.new_nonce()
    transcript = auth.Transcript(
        cluster_id=identity.cluster_id,
        caller_id=hello.node_id,
        node_id=identity.node_id,
        caller_nonce=hello.nonce,
        node_nonce=node_nonce,
    )
    await connection.send(
        Challenge(
            node_id=identity.node_id,
            nonce=node_nonce,
            proof=transcript.proof(secret, auth.ROLE_NODE),
        )
    )
    answer = await connection.receive()
    if not isinstance(answer, Proof):
        what = "nothing" if answer is None else type(answer).__name__
        raise _Refused("bad_auth", f"expected the caller's Proof, got {what}")
    if not auth.proofs_match(transcript.proof(secret, auth.ROLE_CALLER), answer.proof):
        raise _Refused("bad_auth", "the proof does not match: wrong cluster secret")


def _check_hello(hello: object, identity: Identity) -> tuple[str, str] | None:
    if hello is None:
        return "unexpected", "the connection closed before its Hello"
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


async def _refuse_tls(
    connection: FramedConnection, statistics: TransportStatistics, failure: ssl.SSLError
) -> None:
    code = refusal_reason(failure)
    statistics.refuse(code)
    logger.warning("connection refused code=%s reason=%r", code, str(failure))
    stream = connection.stream
    if not isinstance(stream, trio.SSLStream):
        return
    with trio.move_on_after(1):
        if code != "tls_plaintext":
            await send_alert(stream)
            return
        # The caller speaks our framing without TLS: tell it so, in its own language.
        error = ErrorFrame(code=code, message="this node requires TLS: give the client --tls-ca")
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await stream.transport_stream.send_all(frame(encode_wire(error)))


async def introduce(
    connection: FramedConnection | FramedByteStream,
    *,
    cluster_id: str,
    caller_id: str,
    secret: bytes | None,
) -> Welcome | ErrorFrame | None:
    """The caller's side of the handshake: the node's answer (None: it hung up). With a
    secret, the node must prove it first; ``RemoteProtocolError`` if it cannot."""
    caller_nonce = auth.new_nonce() if secret is not None else b""
    await connection.send(
        Hello(
            protocol_version=PROTOCOL_VERSION,
            cluster_id=cluster_id,
            node_id=caller_id,
            nonce=caller_nonce,
        )
    )
    answer = await connection.receive()
    if secret is None:
        if isinstance(answer, Challenge):
            raise AuthenticationError("the node requires the cluster secret, and none is given")
        return _answer(answer)
    if not isinstance(answer, Challenge):
        if isinstance(answer, Welcome):
            raise AuthenticationError(
                f"node {answer.node_id} did not prove the cluster secret (has it none?)"
            )
        return _answer(answer)
    transcript = auth.Transcript(
        cluster_id=cluster_id,
        caller_id=caller_id,
        node_id=answer.node_id,
        caller_nonce=caller_nonce,
        node_nonce=answer.nonce,
    )
    if not auth.proofs_match(transcript.proof(secret, auth.ROLE_NODE), answer.proof):
        raise AuthenticationError(
            f"node {answer.node_id} failed to prove the cluster secret: wrong secret"
        )
    await connection.send(Proof(proof=transcript.proof(secret, auth.ROLE_CALLER)))
    return _answer(await connection.receive())


def _answer(answer: object) -> Welcome | ErrorFrame | None:
    if answer is None or isinstance(answer, Welcome | ErrorFrame):
        return answer
    raise RemoteProtocolError(f"the node answered the handshake with {type(answer).__name__}")


async def receive_peer_messages(
    peer: NodeId,
    connection: FramedConnection,
    deliver: Callable[[Message], None],
    *,
    idle_timeout_ms: int,
) -> None:
    """Pass a peer's Raft messages on until it hangs up, goes silent or misbehaves."""
    # One idle scope whose deadline each message moves on, rather than a scope per message:
    # entering and leaving cancel scopes was a seventh of the simulator's time (profiled), and
    # this loop made a fifth of them.
    with trio.CancelScope() as idle:
        while True:
            idle.deadline = trio.current_time() + idle_timeout_ms / 1000
            message = await connection.receive()
            if message is None:
                return  # the peer closed its side
            if not isinstance(message, RAFT_MESSAGES) or message.sender != peer:
                raise RemoteProtocolError(f"unexpected {type(message).__name__} from peer {peer}")
            deliver(message)
    raise RemoteProtocolError(f"peer {peer} silent for {idle_timeout_ms} ms")


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
        self._woken = trio.Event()

    def wake(self) -> None:
        """The peer has just connected to us, so it is up again: while this link is down,
        reconnect now instead of at the end of its backoff (up to three seconds after a
        restart, during which a restarted follower waited for its leader)."""
        if not self.connected:
            self._woken.set()

    def send_nowait(self, message: Message) -> None:
        try:
            self._sender.send_nowait(message)
        except trio.WouldBlock:
            self.dropped += 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        delays = RECONNECT_BACKOFF.delays(self._rng)
        while True:
            try:
                connection = await self._connect()
            except (OSError, trio.BrokenResourceError, RemoteProtocolError, trio.TooSlowError) as e:
                failure = tls_failure(e)
                if failure is not None or isinstance(e, AuthenticationError):
                    # A misconfiguration (certificate, secret), not a peer that is down: say so.
                    logger.warning(
                        "peer connect refused peer=%s error=%r", self.peer, str(failure or e)
                    )
                else:
                    logger.debug("peer connect failed peer=%s error=%r", self.peer, str(e))
            else:
                delays.reset()
                try:
                    await self._pump(connection)
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
                    logger.info("peer link lost peer=%s error=%r", self.peer, str(e))
                finally:
                    self.connected = False
                    await trio.aclose_forcefully(connection.stream)
            with trio.move_on_after(delays.next_s()):
                await self._woken.wait()
            if self._woken.is_set():
                self._woken = trio.Event()
                delays.reset()

    async def _connect(self) -> FramedConnection:
        with trio.fail_after(limits.HANDSHAKE_TIMEOUT_MS / 1000):
            stream = await self._network.connect(self.address)
            connection = FramedConnection(stream, max_bytes=limits.HANDSHAKE_FRAME_BYTES_MAX)
            try:
                reply = await introduce(
                    connection,
                    cluster_id=self._identity.cluster_id,
                    caller_id=self._identity.node_id,
                    secret=self._identity.secret,
                )
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        if not isinstance(reply, Welcome) or reply.node_id != self.peer:
            await trio.aclose_forcefully(stream)
            raise RemoteProtocolError(f"peer {self.peer} at {self.address} answered {reply!r}")
        connection.max_bytes = limits.FRAME_BYTES_MAX
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
