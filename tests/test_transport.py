"""The transport on real TCP (127.0.0.1, free ports): peers exchange Raft messages, and every
kind of bad input gets an ErrorFrame and a closed connection while the listener keeps serving."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

import pytest
import trio

from raftq.backoff import Backoff
from raftq.errors import RemoteProtocolError
from raftq.ids import NodeId
from raftq.raft.messages import Heartbeat, Message
from raftq.transport import connections
from raftq.transport.connections import HandshakeGuard, Identity, PeerLink, TransportStatistics
from raftq.transport.framing import LENGTH, FrameDecoder, frame
from raftq.transport.network import FramedConnection, TcpNetwork, parse_address
from raftq.transport.wire import (
    PROTOCOL_VERSION,
    ErrorFrame,
    Hello,
    Welcome,
    decode_wire,
    encode_wire,
)
from tests.node_helpers import free_ports

CLUSTER = "test-cluster"
MEMBERS = {NodeId("n1"), NodeId("n2")}


class Listener:
    """A node's listening side, delivering peer messages into ``received``."""

    def __init__(self, node: str, handshake_timeout_ms: int = 5000) -> None:
        self.identity = Identity(cluster_id=CLUSTER, node_id=NodeId(node), peers=MEMBERS)
        self.statistics = TransportStatistics()
        self.guard = HandshakeGuard()
        self.received: list[Message] = []
        self.clients = 0
        self.port = 0
        self.handshake_timeout_ms = handshake_timeout_ms

    async def on_peer(self, peer: NodeId, connection: FramedConnection) -> None:
        await connections.receive_peer_messages(
            peer, connection, self.received.append, idle_timeout_ms=60_000
        )

    async def on_client(self, connection: FramedConnection) -> None:
        self.clients += 1
        while await connection.receive() is not None:
            pass

    async def serve(self, *, task_status: trio.TaskStatus[int]) -> None:
        handler = functools.partial(
            connections.accept,
            identity=self.identity,
            statistics=self.statistics,
            guard=self.guard,
            on_peer=self.on_peer,
            on_client=self.on_client,
            handshake_timeout_ms=self.handshake_timeout_ms,
        )
        await TcpNetwork().serve("127.0.0.1:0", handler, task_status=task_status)


@pytest.fixture
async def listener(nursery: trio.Nursery) -> Listener:
    node = Listener("n2", handshake_timeout_ms=300)
    node.port = await nursery.start(node.serve)
    return node


def heartbeat(sequence: int) -> Heartbeat:
    return Heartbeat(term=1, sender=NodeId("n1"), recipient=NodeId("n2"), commit=sequence)


async def wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    """Poll (real time: these tests run real sockets) until ``condition`` holds."""
    with trio.fail_after(seconds):
        for _ in range(int(seconds * 100)):
            if condition():
                return
            await trio.sleep(0.01)


async def raw_exchange(port: int, data: bytes, answers_max: int = 10) -> list[object]:
    """Send raw bytes; return the frames the node answers with before it closes (or once
    ``answers_max`` arrived)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    answers: list[object] = []
    async with stream:
        if data:
            await stream.send_all(data)
        decoder = FrameDecoder()
        with trio.fail_after(10):
            while len(answers) < answers_max and (chunk := await stream.receive_some(65536)):
                decoder.feed(chunk)
                while (body := decoder.next_frame()) is not None:
                    answers.append(decode_wire(body))
    return answers


def hello(**overrides: object) -> bytes:
    fields: dict[str, object] = {
        "protocol_version": PROTOCOL_VERSION,
        "cluster_id": CLUSTER,
        "node_id": "n1",
    }
    fields.update(overrides)
    return frame(encode_wire(Hello(**fields)))  # type: ignore[arg-type]


async def test_a_peer_link_delivers_messages_in_order(listener: Listener) -> None:
    identity = Identity(cluster_id=CLUSTER, node_id=NodeId("n1"), peers=MEMBERS)
    link = PeerLink(
        TcpNetwork(), identity, NodeId("n2"), f"127.0.0.1:{listener.port}", random.Random(1)
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        for sequence in range(500):
            link.send_nowait(heartbeat(sequence))
        await wait_for(lambda: len(listener.received) == 500)
        nursery.cancel_scope.cancel()
    assert [m.commit for m in listener.received] == list(range(500))  # type: ignore[union-attr]
    assert link.connects == 1
    assert link.dropped == 0


async def test_a_peer_link_reconnects_after_the_peer_restarts() -> None:
    identity = Identity(cluster_id=CLUSTER, node_id=NodeId("n1"), peers=MEMBERS)
    first = Listener("n2")
    async with trio.open_nursery() as nursery:
        serving = trio.CancelScope()

        async def serve_first(*, task_status: trio.TaskStatus[int]) -> None:
            with serving:
                await first.serve(task_status=task_status)

        port = await nursery.start(serve_first)
        link = PeerLink(TcpNetwork(), identity, NodeId("n2"), f"127.0.0.1:{port}", random.Random(2))
        await nursery.start(link.run)
        link.send_nowait(heartbeat(1))
        await wait_for(lambda: len(first.received) == 1)
        serving.cancel()  # the peer goes away (its connections with it)
        await trio.sleep(0.05)
        second = Listener("n2")

        async def serve_second(*, task_status: trio.TaskStatus[int]) -> None:
            handler = functools.partial(
                connections.accept,
                identity=second.identity,
                statistics=second.statistics,
                guard=second.guard,
                on_peer=second.on_peer,
                on_client=second.on_client,
            )
            listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
            task_status.started(port)
            await trio.serve_listeners(handler, listeners)

        await nursery.start(serve_second)
        for sequence in range(2, 6):
            link.send_nowait(heartbeat(sequence))
            await trio.sleep(0.02)
        await wait_for(lambda: any(m.commit == 5 for m in second.received))  # type: ignore[union-attr]
        assert link.connects >= 2
        nursery.cancel_scope.cancel()


async def test_a_peer_that_connects_to_us_wakes_our_link_out_of_its_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restarted follower connects to its leader at once; the leader's link to it, backing
    off after its failed reconnects, must not make it wait out the backoff (up to 3 s): the
    inbound connection wakes the link (``PeerLink.wake``, called by the node's peer handler)."""
    monkeypatch.setattr(connections, "RECONNECT_BACKOFF", Backoff(min_s=60, max_s=60))
    identity = Identity(cluster_id=CLUSTER, node_id=NodeId("n1"), peers=MEMBERS)
    (port,) = free_ports(1)
    link = PeerLink(TcpNetwork(), identity, NodeId("n2"), f"127.0.0.1:{port}", random.Random(4))
    peer = Listener("n2")
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        link.send_nowait(heartbeat(1))
        await trio.sleep(0.2)  # refused: the link now sleeps 30 to 90 s before it tries again
        assert not link.connected

        async def serve_peer(*, task_status: trio.TaskStatus[int]) -> None:
            handler = functools.partial(
                connections.accept,
                identity=peer.identity,
                statistics=peer.statistics,
                guard=peer.guard,
                on_peer=peer.on_peer,
                on_client=peer.on_client,
            )
            listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
            task_status.started(port)
            await trio.serve_listeners(handler, listeners)

        await nursery.start(serve_peer)
        link.wake()
        await wait_for(lambda: len(peer.received) == 1, seconds=5)
        assert link.connects == 1
        nursery.cancel_scope.cancel()


async def test_a_full_queue_drops_instead_of_blocking() -> None:
    identity = Identity(cluster_id=CLUSTER, node_id=NodeId("n1"), peers=MEMBERS)
    link = PeerLink(
        TcpNetwork(), identity, NodeId("n2"), "127.0.0.1:9", random.Random(3), queue_max=10
    )
    for sequence in range(25):
        link.send_nowait(heartbeat(sequence))  # nobody is pumping: never blocks
    assert link.dropped == 15


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x00\x01garbage that is no frame at all" * 3, "bad_frame"),
        (LENGTH.pack(2**31), "bad_frame"),  # an oversized frame, refused before its body
        (LENGTH.pack(5000) + b"x" * 5000, "bad_frame"),  # over 4 KiB before the handshake
        (frame(b"\xff\xfe not cbor"), "bad_frame"),
        (hello(protocol_version=99), "bad_version"),
        (hello(cluster_id="another-cluster"), "wrong_cluster"),
        (hello(node_id="n9"), "unknown_peer"),
        (frame(encode_wire(Welcome(node_id="n1"))), "unexpected"),
        (b"", "handshake_timeout"),  # half-open: connects, says nothing
        (hello() + frame(encode_wire(Welcome(node_id="x"))), "bad_frame"),  # wrong kind
        (
            hello() + frame(encode_wire(heartbeat(1)).replace(b"Heartbeat", b"Heartbeet")),
            "bad_frame",
        ),
    ],
    ids=[
        "garbage",
        "oversized",
        "large-before-handshake",
        "not-cbor",
        "version",
        "cluster",
        "unknown-peer",
        "not-hello",
        "half-open",
        "wrong-kind",
        "unknown-type",
    ],
)
async def test_bad_input_is_refused_and_the_node_keeps_serving(
    listener: Listener, data: bytes, code: str
) -> None:
    answers = await raw_exchange(listener.port, data)
    errors = [answer for answer in answers if isinstance(answer, ErrorFrame)]
    assert [error.code for error in errors] == [code], answers
    assert errors[0].message
    assert listener.statistics.refused == {code: 1}
    # ... and a well-behaved peer is still served.
    good = hello() + frame(encode_wire(heartbeat(7)))
    assert await raw_exchange(listener.port, good, answers_max=1) == [Welcome(node_id="n2")]
    await wait_for(lambda: bool(listener.received))
    assert listener.received[-1] == heartbeat(7)


async def test_a_client_handshake_reaches_the_client_handler(listener: Listener) -> None:
    answers = await raw_exchange(listener.port, hello(node_id=""), answers_max=1)
    assert answers == [Welcome(node_id="n2")]
    await wait_for(lambda: listener.clients == 1)


def test_addresses_are_checked() -> None:
    from raftq.errors import ConfigError

    assert parse_address("127.0.0.1:7100") == ("127.0.0.1", 7100)
    assert parse_address("[::1]:7100") == ("::1", 7100)
    assert parse_address("localhost:0", any_port=True) == ("localhost", 0)
    for bad in ("7100", "host:", ":7100", "host:70000", "host:port", "host:0"):
        with pytest.raises(ConfigError):
            parse_address(bad)


async def test_handshakes_past_the_bound_are_refused_at_once(listener: Listener) -> None:
    listener.guard.slots = trio.Semaphore(1)  # one handshake at a time
    async with await trio.open_tcp_stream("127.0.0.1", listener.port):  # half-open, holds it
        await wait_for(lambda: listener.statistics.accepted == 1)
        answers = await raw_exchange(listener.port, b"")
        assert [getattr(answer, "code", None) for answer in answers] == ["busy"]
        await wait_for(lambda: listener.statistics.refused.get("handshake_timeout") == 1)
    assert await raw_exchange(listener.port, hello(), answers_max=1) == [Welcome(node_id="n2")]


async def test_a_peer_silent_for_the_idle_timeout_is_dropped_and_each_message_restarts_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``receive_peer_messages`` keeps one idle scope and moves its deadline at each message:
    a peer sending every 0.8 idle timeouts stays connected for many timeouts, and the first
    silence of a whole timeout ends the connection with a clear error."""
    ours, theirs = trio.testing.memory_stream_pair()
    received: list[Message] = []
    started = trio.current_time()

    async def peer() -> None:
        sender = FramedConnection(ours)
        for sequence in range(10):
            await sender.send(heartbeat(sequence))
            await trio.sleep(0.8)
        await trio.sleep_forever()  # silent, connection open

    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer)
        with pytest.raises(RemoteProtocolError, match="peer n1 silent for 1000 ms"):
            await connections.receive_peer_messages(
                NodeId("n1"), FramedConnection(theirs), received.append, idle_timeout_ms=1000
            )
        nursery.cancel_scope.cancel()
    assert [message.commit for message in received if isinstance(message, Heartbeat)] == list(
        range(10)
    )
    # The last heartbeat at 7.2 s, then a whole timeout of silence.
    assert trio.current_time() - started == pytest.approx(8.2)
