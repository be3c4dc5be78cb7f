"""The run's trace: every significant event with its virtual time, a rolling hash over all of
them (two runs of one seed must end with the same hash), and the last lines kept for reports."""

from __future__ import annotations

import collections
import hashlib

import trio

TRACE_LINES_KEPT = 400
"""Lines kept for the failure report (and the determinism diff); the hash covers every line."""


class Trace:
    def __init__(self, *, keep_all: bool = False) -> None:
        self._hash = hashlib.sha256()
        self.events = 0
        self.last: collections.deque[str] = collections.deque(maxlen=TRACE_LINES_KEPT)
        self.all_lines: list[str] | None = [] if keep_all else None
        """Every line, for ``--check-determinism`` (which must name the first divergence)."""

    def record(self, kind: str, text: str) -> None:
        line = f"{trio.current_time():12.6f} {kind:<10} {text}"
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self.events += 1
        self.last.append(line)
        if self.all_lines is not None:
            self.all_lines.append(line)

    def mix(self, text: str) -> None:
        """Fold a fine-grained event (a network delivery) into the hash without keeping a line:
        the ``status`` lines carry the hash so far, which localises a divergence to them."""
        self._hash.update(text.encode())

    @property
    def hash(self) -> str:
        return self._hash.hexdigest()[:32]
