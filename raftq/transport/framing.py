"""Frames on a byte stream, sans-IO (in the manner of h11): ``u32 length | cbor body``.

``FrameDecoder`` takes whatever bytes arrived (``feed``) and hands out complete frame bodies
(``next_frame``); it holds at most one frame's worth of bytes and refuses an announced length
above the maximum before reading the body, so a stranger cannot make a node buffer gigabytes.
"""

from __future__ import annotations

import struct

from raftq import limits
from raftq.errors import LocalProtocolError, RemoteProtocolError

LENGTH = struct.Struct("<I")


def frame(body: bytes, max_bytes: int = limits.FRAME_BYTES_MAX) -> bytes:
    if len(body) > max_bytes:
        raise LocalProtocolError(f"frame of {len(body)} bytes exceeds {max_bytes}")
    return LENGTH.pack(len(body)) + body


class FrameDecoder:
    def __init__(self, max_bytes: int = limits.FRAME_BYTES_MAX) -> None:
        self._max_bytes = max_bytes
        self._buffer = bytearray()
        self._closed = False

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        """Raise or lower the limit for the frames to come (small until a handshake is done)."""
        assert value > 0, value
        self._max_bytes = value

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise LocalProtocolError("feed after end of stream")
        self._buffer += data

    def close(self) -> None:
        """The stream ended; ``next_frame`` raises if a frame was cut off."""
        self._closed = True

    def next_frame(self) -> bytes | None:
        """The next complete frame body, or None until more bytes arrive."""
        buffer = self._buffer
        if len(buffer) < LENGTH.size:
            if self._closed and buffer:
                raise RemoteProtocolError("stream ended inside a frame header")
            return None
        (length,) = LENGTH.unpack_from(buffer)
        if length > self._max_bytes:
            raise RemoteProtocolError(
                f"frame of {length} bytes announced; the limit is {self._max_bytes}"
            )
        end = LENGTH.size + length
        if len(buffer) < end:
            if self._closed:
                raise RemoteProtocolError("stream ended inside a frame")
            return None
        body = bytes(buffer[LENGTH.size : end])
        del buffer[:end]
        return body
