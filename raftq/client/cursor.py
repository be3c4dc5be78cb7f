"""Page cursors as callers see them: opaque strings, the same for the HTTP API
(``GET /api/v1/jobs?cursor=``) and ``raftq jobs --cursor``, so one can go on from the other.

Inside is the enqueue order of the last job a page examined and the order it was paged in
(``v1:oldest:1234``, base64url without padding); a cursor made for one order is refused for
the other, since it would skip or repeat jobs there.
"""

from __future__ import annotations

import base64
import re

from raftq.errors import ConfigError

ORDERS = ("oldest", "newest")
CURSOR_CHARS_MAX = 64
"""Longer than any cursor ``encode_cursor`` makes (about 40 characters): a longer one is
refused before it is decoded."""

_PATTERN = re.compile(r"v1:(oldest|newest):([1-9][0-9]{0,17})")


def encode_cursor(position: int, order: str) -> str:
    """The cursor that goes on after enqueue position ``position``, paging in ``order``."""
    assert position > 0, position
    assert order in ORDERS, order
    return base64.urlsafe_b64encode(f"v1:{order}:{position}".encode()).decode().rstrip("=")


def decode_cursor(text: str, order: str) -> int:
    """The position a cursor made for ``order`` stands for; ``ConfigError`` saying what is
    wrong with any other string."""
    try:
        if len(text) > CURSOR_CHARS_MAX:
            raise ValueError
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    match = _PATTERN.fullmatch(decoded)
    if match is None:
        raise ConfigError(f"{text[:CURSOR_CHARS_MAX]!r} is not a cursor that raftq made")
    if match.group(1) != order:
        raise ConfigError(f"the cursor was made for order={match.group(1)}, not {order}")
    return int(match.group(2))
