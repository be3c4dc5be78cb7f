"""Frames and wire messages: round trips, and hostile bytes only ever raise
RemoteProtocolError (never another exception, never unbounded buffering)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftq import limits
from raftq.errors import LocalProtocolError, RemoteProtocolError
from raftq.ids import NodeId
from raftq.raft.messages import AppendEntries, Heartbeat
from raftq.raft.types import Entry
from raftq.transport.framing import LENGTH, FrameDecoder, frame
from raftq.transport.wire import (
    PROTOCOL_VERSION,
    ErrorFrame,
    Hello,
    Welcome,
    WireMessage,
    decode_wire,
    encode_wire,
)

SAMPLES: list[WireMessage] = [
    Hello(protocol_version=PROTOCOL_VERSION, cluster_id="c1", node_id="n1"),
    Hello(protocol_version=PROTOCOL_VERSION, cluster_id="c1", node_id=""),
    Welcome(node_id="n2", leader_id="n1"),
    ErrorFrame(code="bad_version", message="speak version 1"),
    Heartbeat(term=3, sender=NodeId("n1"), recipient=NodeId("n2"), commit=7, context=b"r"),
    AppendEntries(
        term=3,
        sender=NodeId("n1"),
        recipient=NodeId("n2"),
        prev_index=4,
        prev_term=2,
        entries=(Entry(index=5, term=3, data=b"x" * 100),),
        commit=4,
    ),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_wire_messages_round_trip_through_frames(message: WireMessage) -> None:
    decoder = FrameDecoder()
    decoder.feed(frame(encode_wire(message)))
    body = decoder.next_frame()
    assert body is not None
    assert decode_wire(body) == message
    assert decoder.next_frame() is None


@given(st.lists(st.binary(max_size=300), max_size=10), st.data())
def test_frames_survive_any_split_of_the_stream(bodies: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(frame(body) for body in bodies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    decoder = FrameDecoder()
    received = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        decoder.feed(stream[previous:cut])
        previous = cut
        while (body := decoder.next_frame()) is not None:
            received.append(body)
    assert received == bodies
    assert decoder.buffered_bytes == 0


def test_an_oversized_announced_length_is_refused_before_the_body() -> None:
    decoder = FrameDecoder(max_bytes=1000)
    decoder.feed(LENGTH.pack(1001))
    with pytest.raises(RemoteProtocolError, match="limit is 1000"):
        decoder.next_frame()
    with pytest.raises(LocalProtocolError):
        frame(b"x" * 1001, max_bytes=1000)


def test_a_stream_that_ends_inside_a_frame_is_an_error() -> None:
    for cut in (2, LENGTH.size + 3):
        decoder = FrameDecoder()
        decoder.feed(frame(b"hello world")[:cut])
        decoder.close()
        with pytest.raises(RemoteProtocolError, match="stream ended"):
            decoder.next_frame()


@given(st.binary(max_size=512))
def test_arbitrary_bytes_only_ever_raise_remote_protocol_error(garbage: bytes) -> None:
    decoder = FrameDecoder(max_bytes=4096)
    decoder.feed(garbage)
    decoder.close()
    try:
        while (body := decoder.next_frame()) is not None:
            decode_wire(body)
    except RemoteProtocolError:
        pass
    assert decoder.buffered_bytes <= len(garbage)


@given(st.sampled_from(SAMPLES), st.data())
def test_mutated_valid_frames_only_ever_raise_remote_protocol_error(
    message: WireMessage, data: st.DataObject
) -> None:
    body = bytearray(encode_wire(message))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(body) - 1))
        body[position] = data.draw(st.integers(0, 255))
    with contextlib.suppress(RemoteProtocolError):
        decode_wire(bytes(body))


def test_unknown_message_types_and_bad_fields_are_remote_errors() -> None:
    import cbor2

    for raw in (
        {"_t": "Shutdown", "now": True},
        {"_t": "Hello", "protocol_version": 1, "cluster_id": "c" * 1000, "node_id": "n"},
        [1, 2, 3],
        "just a string",
    ):
        with pytest.raises(RemoteProtocolError):
            decode_wire(cbor2.dumps(raw))


def test_the_frame_limit_fits_the_largest_messages() -> None:
    assert limits.FRAME_BYTES_MAX > 2 * limits.RAFT_APPEND_BYTES_MAX
    assert limits.FRAME_BYTES_MAX > 2 * limits.SNAPSHOT_CHUNK_BYTES


@pytest.mark.parametrize(
    "field_value",
    [
        ("context", 2**40),  # cattrs' default bytes(n) would allocate a terabyte of zeroes
        ("term", 2**70),  # a CBOR bignum: every carried integer fits in 64 bits
        ("term", 1.5),  # no silent truncation of a float
        ("term", True),  # a bool is not an integer here
        ("sender", 7),  # nor an integer a node id
    ],
    ids=lambda value: f"{value[0]}={value[1]!r}"[:24],
)
def test_fields_take_only_their_own_type(field_value: tuple[str, object]) -> None:
    import cbor2

    raw = {"_t": "Heartbeat", "term": 1, "sender": "a", "recipient": "b", "commit": 1}
    raw[field_value[0]] = field_value[1]
    with pytest.raises(RemoteProtocolError):
        decode_wire(cbor2.dumps(raw))
