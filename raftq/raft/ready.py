"""The outputs of the Raft core: the ``Ready`` and the small records inside it."""

from __future__ import annotations

import enum

import attrs

from raftq.ids import NodeId
from raftq.raft.log import IncomingSnapshot
from raftq.raft.messages import Message
from raftq.raft.types import Entry, HardState


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@attrs.frozen(kw_only=True)
class SoftState:
    """Volatile facts worth reporting when they change (metrics, status, redirects)."""

    leader: NodeId | None
    role: Role


@attrs.frozen(kw_only=True)
class ReadState:
    """Reads under ``context`` are linearizable once the node has applied ``index``."""

    context: bytes
    index: int


@attrs.frozen(kw_only=True)
class Proposal:
    """Where proposed entries went: they took effect if, when applied, their term is ``term``."""

    term: int
    first_index: int
    last_index: int


@attrs.frozen(kw_only=True)
class Ready:
    """What the node must do, in this order (etcd-io/raft's contract):

    1. Send ``early_messages`` at any time: AppendEntries from a leader, which may go out
       while the leader's own write of the same entries is in flight (thesis 10.2.1).
    2. Persist ``snapshot``, then ``entries`` (replacing any suffix from their first index),
       then ``hard_state`` (durably if ``commit_durable``); fsync if ``must_sync``.
    3. Only then send ``messages``: votes and acknowledgements promise what was persisted.
    4. Apply ``snapshot`` (if any) and then ``committed_entries`` in index order; serve
       ``read_states`` once applied up to their index.
    5. Call ``advance(ready)``.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: IncomingSnapshot | None = None
    early_messages: tuple[Message, ...] = ()
    messages: tuple[Message, ...] = ()
    committed_entries: tuple[Entry, ...] = ()
    read_states: tuple[ReadState, ...] = ()
    must_sync: bool = False
    commit_durable: bool = False
    """Save ``hard_state`` durably now, even if only its commit index changed (which may
    otherwise be saved lazily: a restart re-learns it from the leader): it covers a
    membership change applied in this Ready, and a node that forgot that after a restart
    could wait forever for a voter that was removed."""


@attrs.frozen(kw_only=True)
class PendingRead:
    """A leader's read waiting for a quorum to confirm its leadership. ``round`` numbers it
    at this leader (unique, increasing; the requester's ``context`` need not be unique
    across nodes): only acknowledgements of a heartbeat carrying a round at least this one,
    sent after the read was queued, release it (etcd-io/raft read_only.go)."""

    round: int
    index: int
    requester: NodeId
    context: bytes
