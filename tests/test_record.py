"""WAL record framing: what ``scan`` calls clean, torn and corrupt (pure, no files)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftq import limits
from raftq.storage.record import HEADER, ScanEnd, TailKind, frame, scan

BODIES = [b"first record", b"second", b"third and last record body"]


def records(data: bytes) -> tuple[list[bytes], ScanEnd]:
    ends: list[ScanEnd] = []
    bodies = [body.tobytes() for _, body in scan(data, ends)]
    return bodies, ends[0]


def test_clean_log_yields_every_record_with_its_offset() -> None:
    data = b"".join(frame(body) for body in BODIES)
    ends: list[ScanEnd] = []
    found = [(offset, body.tobytes()) for offset, body in scan(data, ends)]
    assert [body for _, body in found] == BODIES
    assert found[1][0] == HEADER.size + len(BODIES[0])
    assert ends == [ScanEnd(kind=TailKind.CLEAN, offset=len(data))]


def test_every_truncation_of_the_last_record_is_a_torn_tail() -> None:
    good = b"".join(frame(body) for body in BODIES[:-1])
    last = frame(BODIES[-1])
    for cut in range(1, len(last)):
        bodies, end = records(good + last[:cut])
        assert bodies == BODIES[:-1], cut
        assert end.kind is TailKind.TORN, cut
        assert end.offset == len(good)


@pytest.mark.parametrize("zeroes", [1, 7, 8, 9, 100, 4096])
def test_zero_filled_tail_is_torn(zeroes: int) -> None:
    good = b"".join(frame(body) for body in BODIES)
    bodies, end = records(good + bytes(zeroes))
    assert bodies == BODIES
    assert end.kind is TailKind.TORN
    assert end.offset == len(good)


def test_last_record_zeroed_from_inside_is_torn() -> None:
    good = frame(BODIES[0])
    last = frame(BODIES[1])
    for start in range(HEADER.size, len(last)):
        damaged = last[:start] + bytes(len(last) - start)
        bodies, end = records(good + damaged + bytes(50))
        assert bodies == BODIES[:1], start
        assert end.kind is TailKind.TORN, start


def test_flipped_bit_before_a_valid_record_is_corruption() -> None:
    data = bytearray(b"".join(frame(body) for body in BODIES))
    first_length = HEADER.size + len(BODIES[0])
    for bit in range(first_length * 8):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        bodies, end = records(bytes(damaged))
        assert bodies == [], bit
        assert end.kind is TailKind.CORRUPT, (bit, end)
        assert end.offset == 0


def test_flipped_length_bit_in_the_last_record_is_corruption_not_a_torn_write() -> None:
    data = bytearray(frame(BODIES[0]) + frame(BODIES[1]))
    start = HEADER.size + len(BODIES[0])
    for bit in range(32):
        damaged = bytearray(data)
        damaged[start + bit // 8] ^= 1 << (bit % 8)
        _, end = records(bytes(damaged))
        assert end.kind is TailKind.CORRUPT, bit


def test_impossible_length_is_corruption() -> None:
    header = HEADER.pack(limits.WAL_RECORD_BYTES_MAX + 1, 0)
    _, end = records(frame(b"ok") + header + b"junk")
    assert end.kind is TailKind.CORRUPT
    assert "impossible" in end.reason


@given(st.lists(st.binary(min_size=1, max_size=64), max_size=8), st.binary(max_size=64))
def test_scan_never_raises_and_never_invents_records(bodies: list[bytes], junk: bytes) -> None:
    data = b"".join(frame(body) for body in bodies)
    found, end = records(data + junk)
    assert found[: len(bodies)] == bodies[: len(found)]
    assert end.kind in TailKind
