"""Hostile bytes against every decoder a stranger can reach (issue 8): the frame decoder and
``decode_wire`` for every message type. Whatever arrives, the only outcome besides a valid
message is ``RemoteProtocolError``: never another exception, never a hang (hypothesis'
deadline), never memory out of proportion to the input (tracemalloc).

Three kinds of input: arbitrary bytes; valid frames with bytes flipped; and valid messages
whose fields were swapped for arbitrary CBOR values (the structural mutations that bit flips
rarely reach: a huge integer where bytes go, a float for an int, a map for a list, ...).
"""

from __future__ import annotations

import tracemalloc
import typing
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftq import codec, limits
from raftq.errors import RemoteProtocolError
from raftq.transport.framing import LENGTH, FrameDecoder, frame
from raftq.transport.wire import WireMessage, decode_wire, encode_wire
from tests.test_codec import STRATEGIES

MEMORY_PER_INPUT_BYTE = 64
"""Decoding may build objects several times the size of their encoding; not more."""
MEMORY_SLACK_BYTES = 256 * 1024

wire_messages = STRATEGIES[WireMessage]

cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.sampled_from([2**20, 2**24])  # sizes: cattrs' bytes(n) would allocate n zeroes
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
"""Any CBOR value, including big integers (bignums), floats, NaN and nesting."""


@contextmanager
def bounded_memory(input_bytes: int) -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= MEMORY_SLACK_BYTES + MEMORY_PER_INPUT_BYTE * input_bytes, peak


def decode_all(stream: bytes, max_bytes: int = limits.FRAME_BYTES_MAX) -> list[WireMessage]:
    """Every message in ``stream``, or ``RemoteProtocolError``."""
    decoder = FrameDecoder(max_bytes)
    decoder.feed(stream)
    decoder.close()
    messages = []
    while (body := decoder.next_frame()) is not None:
        messages.append(decode_wire(body))
    return messages


def only_protocol_errors(stream: bytes) -> None:
    with suppress(RemoteProtocolError):  # the first run may build cattrs' structure functions
        decode_all(stream)
    with bounded_memory(len(stream)), suppress(RemoteProtocolError):
        decode_all(stream)


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    only_protocol_errors(data)
    only_protocol_errors(frame(data))  # ... and as a well-framed body


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(wire_messages, st.data())
def test_valid_frames_with_bytes_flipped_inserted_or_cut(
    message: WireMessage, data: st.DataObject
) -> None:
    stream = bytearray(frame(encode_wire(message)))
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(stream) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            stream[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "insert":
            stream[position:position] = data.draw(st.binary(min_size=1, max_size=9))
        elif len(stream) > 1:
            del stream[position]
    only_protocol_errors(bytes(stream))


def _replace_somewhere(value: object, replacement: object, path: list[int]) -> object:
    """``value`` with one nested item (chosen by ``path``) replaced by ``replacement``."""
    if not path:
        return replacement
    if isinstance(value, dict) and value:
        keys = sorted(value, key=str)
        key = keys[path[0] % len(keys)]
        return {**value, key: _replace_somewhere(value[key], replacement, path[1:])}
    if isinstance(value, list) and value:
        index = path[0] % len(value)
        changed = list(value)
        changed[index] = _replace_somewhere(value[index], replacement, path[1:])
        return changed
    return replacement


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    wire_messages,
    cbor_values,
    st.lists(st.integers(0, 2**16), min_size=1, max_size=6),
)
def test_valid_messages_with_a_field_swapped_for_any_cbor_value(
    message: WireMessage, replacement: object, path: list[int]
) -> None:
    raw = codec.unstructure(message, WireMessage)
    body = cbor2.dumps(_replace_somewhere(raw, replacement, path))
    only_protocol_errors(frame(body))


@settings(max_examples=50)
@given(st.sampled_from(typing.get_args(WireMessage)), st.integers(0, 2**32 - 1))
def test_an_announced_length_never_buffers_more_than_the_limit(
    message_type: type, length: int
) -> None:
    decoder = FrameDecoder(max_bytes=4096)
    decoder.feed(LENGTH.pack(length) + message_type.__name__.encode())
    try:
        decoder.next_frame()
    except RemoteProtocolError:
        assert length > 4096
    assert decoder.buffered_bytes <= LENGTH.size + len(message_type.__name__)
