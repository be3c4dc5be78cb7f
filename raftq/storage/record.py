"""WAL record framing, sans-IO: ``u32 length | u32 crc32c | body``, little-endian.

The checksum covers the length field and the body, so a flipped bit in either is caught.
``scan`` walks a segment's bytes and says where the valid records end and why: a clean end, a
torn tail (the last write was cut short or zero-filled by a crash), or corruption (bytes that
no crash of ours can produce). It decides nothing about files; the WAL does.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator

import attrs
from crc32c import crc32c

from raftq import limits
from raftq.errors import LocalProtocolError

HEADER = struct.Struct("<II")
LENGTH = struct.Struct("<I")


def checksum(length: int, body: bytes | memoryview) -> int:
    return crc32c(body, crc32c(LENGTH.pack(length)))


def frame(body: bytes) -> bytes:
    """One record around ``body``."""
    length = len(body)
    if not 0 < length <= limits.WAL_RECORD_BYTES_MAX:
        raise LocalProtocolError(
            f"record of {length} bytes outside 1..{limits.WAL_RECORD_BYTES_MAX}: cut entries "
            "smaller before they reach the log"
        )
    return HEADER.pack(length, checksum(length, body)) + body


class TailKind(enum.Enum):
    CLEAN = "clean"
    """Every byte belongs to a valid record."""
    TORN = "torn"
    """After the valid records: a record cut short, or zeroes to the end (a crash mid-write)."""
    CORRUPT = "corrupt"
    """A damaged record that a crash cannot explain: the data cannot be trusted."""


@attrs.frozen(kw_only=True)
class ScanEnd:
    """Where and why a scan stopped. ``offset`` is the end of the last valid record."""

    kind: TailKind
    offset: int
    reason: str = ""


def scan(data: bytes | memoryview, end: list[ScanEnd]) -> Iterator[tuple[int, memoryview]]:
    """Yield ``(offset, body)`` for each valid record, then append how the scan ended to ``end``.

    A bad record is a torn tail only if it is the last thing in ``data``: its header or body
    runs past the end, or everything from inside it to the end is zero. A bad checksum with
    non-zero bytes after the record, or a length no writer could produce, is corruption.
    """
    view = memoryview(data)
    size = len(view)
    offset = 0
    while offset < size:
        if size - offset < HEADER.size:
            if _all_zero(view[offset:]):
                end.append(ScanEnd(kind=TailKind.TORN, offset=offset, reason="zero-filled tail"))
            else:
                end.append(ScanEnd(kind=TailKind.TORN, offset=offset, reason="partial header"))
            return
        length, stored = HEADER.unpack_from(view, offset)
        body_start = offset + HEADER.size
        body_end = body_start + length
        if length == 0 or length > limits.WAL_RECORD_BYTES_MAX:
            if _all_zero(view[offset:]):
                end.append(ScanEnd(kind=TailKind.TORN, offset=offset, reason="zero-filled tail"))
            else:
                end.append(
                    ScanEnd(
                        kind=TailKind.CORRUPT,
                        offset=offset,
                        reason=f"record length {length} is impossible",
                    )
                )
            return
        if body_end > size:
            if _length_bit_flipped(view, offset, length, stored):
                end.append(
                    ScanEnd(kind=TailKind.CORRUPT, offset=offset, reason="length field damaged")
                )
            else:
                end.append(ScanEnd(kind=TailKind.TORN, offset=offset, reason="record cut short"))
            return
        body = view[body_start:body_end]
        if checksum(length, body) != stored:
            if _zero_from_inside(view, offset, body_end):
                end.append(ScanEnd(kind=TailKind.TORN, offset=offset, reason="zero-filled tail"))
            else:
                end.append(
                    ScanEnd(kind=TailKind.CORRUPT, offset=offset, reason="checksum mismatch")
                )
            return
        yield offset, body
        offset = body_end
    end.append(ScanEnd(kind=TailKind.CLEAN, offset=offset))


def _length_bit_flipped(view: memoryview, offset: int, length: int, stored: int) -> bool:
    """Would this record be intact if one bit of its length field were flipped back?

    A record that runs past the end is normally a torn write; but a flipped length bit in a
    record that was synced long ago looks the same, and would silently drop every record after
    it. One checksum per bit tells the two apart.
    """
    body_start = offset + HEADER.size
    room = len(view) - body_start
    for bit in range(32):
        candidate = length ^ (1 << bit)
        intact = 0 < candidate <= room and (
            checksum(candidate, view[body_start : body_start + candidate]) == stored
        )
        if intact:
            return True
    return False


def _all_zero(view: memoryview) -> bool:
    return view.tobytes().count(0) == len(view)


def _zero_from_inside(view: memoryview, start: int, record_end: int) -> bool:
    """Is this record the last one, with its end zeroed (a write whose blocks never landed)?"""
    if not _all_zero(view[record_end:]):
        return False
    return view[record_end - 1] == 0 and record_end > start
