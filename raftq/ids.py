"""Identifiers that cross process and disk boundaries, and their validation.

Ids are plain strings and ints on the wire; ``NewType`` keeps them apart for the type checker.
Validation lives here so every edge (CLI, client, transport, state machine) applies the same rule.
"""

from __future__ import annotations

import re
from typing import NewType

from raftq import limits
from raftq.errors import ConfigError

NodeId = NewType("NodeId", str)
"""A cluster member, chosen by the operator (``--id``): letters, digits, ``_`` and ``-``."""

JobId = NewType("JobId", str)
"""A job, given by the client or derived from the log index of its enqueue."""

Term = NewType("Term", int)
"""A Raft term: starts at 0, only grows."""

LogIndex = NewType("LogIndex", int)
"""A Raft log position: the first entry is 1; 0 means "before the log"."""

_NODE_ID = re.compile(r"[A-Za-z0-9_-]+")


def parse_node_id(text: str) -> NodeId:
    """Validate an operator-given node id, or raise ``ConfigError`` saying what is wrong."""
    if not 0 < len(text) <= limits.NODE_ID_CHARS_MAX:
        raise ConfigError(
            f"node id {text!r} must be 1 to {limits.NODE_ID_CHARS_MAX} characters long"
        )
    if _NODE_ID.fullmatch(text) is None:
        raise ConfigError(f"node id {text!r} may contain only letters, digits, '_' and '-'")
    return NodeId(text)


def derived_job_id(index: int, position: int) -> JobId:
    """The id of the ``position``-th job of the enqueue committed at log ``index``.

    Log indexes are unique and monotonic across the whole cluster, so the id is unique without
    any coordination and sorts (numerically) in enqueue order.
    """
    assert index > 0, index
    assert position >= 0, position
    return JobId(f"j{index}-{position}")
