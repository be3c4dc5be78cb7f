"""Wall time reaches a node only through ``Clock``: the leader stamps commands with it.

Timeouts and ticks use Trio's clock (``trio.current_time``), which the simulator replaces
with a ``MockClock``; the simulator also replaces this one with a virtual, skewed clock.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...


class WallClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000
