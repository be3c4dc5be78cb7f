"""What travels in frames: the handshake, errors, and the Raft messages between peers.

The first frame on every connection is a ``Hello`` (protocol version, cluster id, who is
calling); the node answers ``Welcome`` or an ``ErrorFrame`` and closes. Every frame body is one
``WireMessage``, tagged by class name (``raftq.codec``).
"""

from __future__ import annotations

import attrs

from raftq import codec, limits
from raftq.errors import DecodeError, RemoteProtocolError
from raftq.raft.messages import Message

PROTOCOL_VERSION = 1


@codec.register
@attrs.frozen(kw_only=True)
class Hello:
    """``node_id`` is the calling peer's id, or "" for a client."""

    protocol_version: int
    cluster_id: str = attrs.field(validator=attrs.validators.max_len(limits.NAME_CHARS_MAX))
    node_id: str = attrs.field(validator=attrs.validators.max_len(limits.NODE_ID_CHARS_MAX))


@codec.register
@attrs.frozen(kw_only=True)
class Welcome:
    node_id: str
    leader_id: str = ""


@codec.register
@attrs.frozen(kw_only=True)
class ErrorFrame:
    """Sent before closing a connection: ``code`` is one of bad_frame, bad_version,
    wrong_cluster, unknown_peer, handshake_timeout, unexpected."""

    code: str
    message: str


WireMessage = Hello | Welcome | ErrorFrame | Message
codec.register_union(WireMessage)


def encode_wire(message: WireMessage) -> bytes:
    return codec.encode(message, WireMessage)


def decode_wire(body: bytes) -> WireMessage:
    """Decode a frame body; anything else than a valid message is ``RemoteProtocolError``."""
    try:
        message: WireMessage = codec.decode(body, WireMessage)
    except DecodeError as error:
        raise RemoteProtocolError(f"bad frame: {error}") from None
    return message
