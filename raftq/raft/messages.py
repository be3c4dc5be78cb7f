"""Messages between Raft peers: frozen values, one tagged ``Message`` union for the codec.

Every message carries the sender's ``term``, its ``sender`` and its ``recipient``. Names follow
the Raft paper (AppendEntries, RequestVote, InstallSnapshot) with etcd-io/raft's extensions:
separate heartbeats, pre-vote, fast log back-off hints, TimeoutNow for leadership transfer and
ReadIndex for linearizable reads.
"""

from __future__ import annotations

import attrs

from raftq import codec
from raftq.ids import NodeId
from raftq.raft.types import Entry, SnapshotMeta


@codec.register
@attrs.frozen(kw_only=True)
class AppendEntries:
    """Replicate ``entries`` after (``prev_index``, ``prev_term``); may be empty (a probe).

    ``commit_only``: no entries, sent only to pass on a new commit index to a follower known to
    hold ``prev_index`` already (its acknowledged match). Success would tell the leader nothing,
    so the follower answers only a rejection: at low load this halves the messages per commit.
    """

    term: int
    sender: NodeId
    recipient: NodeId
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    commit_only: bool = False


@codec.register
@attrs.frozen(kw_only=True)
class AppendEntriesResponse:
    """Success: ``index`` is the follower's last matching entry. Reject: ``index`` is the
    rejected ``prev_index`` and (``hint_index``, ``hint_term``) the follower's last entry that
    could still match (its largest index <= the probe whose term <= ``prev_term``), so the
    leader skips a whole term of conflicting entries per round trip (fast back-off)."""

    term: int
    sender: NodeId
    recipient: NodeId
    index: int
    reject: bool = False
    hint_index: int = 0
    hint_term: int = 0


@codec.register
@attrs.frozen(kw_only=True)
class Heartbeat:
    """Leader liveness; ``commit`` is capped at the follower's match so it never points past
    the follower's log. ``context`` confirms a pending ReadIndex round."""

    term: int
    sender: NodeId
    recipient: NodeId
    commit: int
    context: bytes = b""


@codec.register
@attrs.frozen(kw_only=True)
class HeartbeatResponse:
    """``applied``: the follower's applied index. A membership change at or below it has
    taken effect there and survives its restart (``Ready.commit_durable``)."""

    term: int
    sender: NodeId
    recipient: NodeId
    context: bytes = b""
    applied: int = 0


@codec.register
@attrs.frozen(kw_only=True)
class RequestVote:
    """``pre_vote``: asks "would you vote for me?" for ``term`` without anyone changing term
    (thesis 9.6). ``transfer``: sent on a leader's TimeoutNow, so voters waive their lease."""

    term: int
    sender: NodeId
    recipient: NodeId
    last_index: int
    last_term: int
    pre_vote: bool = False
    transfer: bool = False


@codec.register
@attrs.frozen(kw_only=True)
class RequestVoteResponse:
    term: int
    sender: NodeId
    recipient: NodeId
    granted: bool
    pre_vote: bool = False


@codec.register
@attrs.frozen(kw_only=True)
class InstallSnapshot:
    """One chunk of the leader's snapshot ``meta``: ``data`` starts at byte ``offset`` of
    ``total_bytes``. Chunks are acknowledged one by one, so a transfer resumes where it
    stopped after a lost message or a new connection."""

    term: int
    sender: NodeId
    recipient: NodeId
    meta: SnapshotMeta
    offset: int
    total_bytes: int
    data: bytes


@codec.register
@attrs.frozen(kw_only=True)
class InstallSnapshotResponse:
    """The follower holds ``received_bytes`` of snapshot ``meta``: send from there."""

    term: int
    sender: NodeId
    recipient: NodeId
    meta: SnapshotMeta
    received_bytes: int


@codec.register
@attrs.frozen(kw_only=True)
class TimeoutNow:
    """From a leader handing over: start an election now, without pre-vote."""

    term: int
    sender: NodeId
    recipient: NodeId


@codec.register
@attrs.frozen(kw_only=True)
class ReadIndexRequest:
    """A follower asks the leader for a read index on behalf of its own client."""

    term: int
    sender: NodeId
    recipient: NodeId
    context: bytes


@codec.register
@attrs.frozen(kw_only=True)
class ReadIndexResponse:
    """Reads under ``context`` are linearizable once the follower has applied ``index``."""

    term: int
    sender: NodeId
    recipient: NodeId
    context: bytes
    index: int


Message = (
    AppendEntries
    | AppendEntriesResponse
    | Heartbeat
    | HeartbeatResponse
    | RequestVote
    | RequestVoteResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
    | ReadIndexRequest
    | ReadIndexResponse
)
codec.register_union(Message)
