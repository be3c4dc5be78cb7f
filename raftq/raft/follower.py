"""A follower's handling of its leader's messages: AppendEntries (with the log-matching check
and fast back-off hints), heartbeats, snapshot chunks, TimeoutNow and ReadIndex answers.
Functions of the ``RaftCore``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from raftq import limits
from raftq.ids import NodeId
from raftq.raft.log import IncomingSnapshot
from raftq.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    ReadIndexResponse,
    TimeoutNow,
)
from raftq.raft.ready import ReadState, Role
from raftq.raft.types import SnapshotMeta

if TYPE_CHECKING:
    from raftq.raft.core import RaftCore


@attrs.define(eq=False)
class SnapshotReceiver:
    """The chunks of one leader snapshot received so far (in memory, bounded by its size)."""

    meta: SnapshotMeta
    total_bytes: int
    chunks: list[bytes] = attrs.field(factory=list)
    received_bytes: int = 0


def step_follower(core: RaftCore, message: Message) -> None:
    """Any role but leader, for messages of the current term (candidates have already
    stepped down if the message came from a leader)."""
    if isinstance(message, AppendEntries | Heartbeat | InstallSnapshot):
        core.election_elapsed = 0
        core.leader = message.sender
        core.forward_waiting_reads()
        if isinstance(message, AppendEntries):
            _handle_append(core, message)
        elif isinstance(message, Heartbeat):
            _handle_heartbeat(core, message)
        else:
            _handle_snapshot_chunk(core, message)
    elif isinstance(message, TimeoutNow):
        if core.role is Role.FOLLOWER and core.promotable():
            core.campaign(transfer=True)  # the leader hands over: no pre-vote, no lease
    elif isinstance(message, ReadIndexResponse) and message.context in core.forwarded_reads:
        # Only an answer to a read asked in this term (a read unanswered at a change of term
        # is asked again of the next leader: ``forward_waiting_reads``).
        core.forwarded_reads.discard(message.context)
        core.read_states.append(ReadState(context=message.context, index=message.index))


def _respond(
    core: RaftCore,
    recipient: NodeId,
    index: int,
    *,
    reject: bool = False,
    hint_index: int = 0,
    hint_term: int = 0,
) -> None:
    core.send(
        AppendEntriesResponse(
            term=core.term,
            sender=core.id,
            recipient=recipient,
            index=index,
            reject=reject,
            hint_index=hint_index,
            hint_term=hint_term,
        )
    )


def _handle_append(core: RaftCore, message: AppendEntries) -> None:
    if not _well_formed(message):
        return  # entries out of sequence or from a future term: a broken or hostile peer
    log = core.log
    if message.prev_index < log.committed:
        # Older than what we know is committed: say how far we are, the leader moves on.
        _respond(core, message.sender, log.committed)
        return
    last_new = log.maybe_append(
        message.prev_index, message.prev_term, message.commit, message.entries
    )
    if last_new is not None:
        if not message.commit_only:
            _respond(core, message.sender, last_new)
        return
    # 5.3: the logs differ at prev_index. Hint the leader at our last entry that could still
    # match, skipping every entry of a term later than prev_term (etcd's fast back-off).
    hint_index, hint_term = log.find_conflict_by_term(
        min(message.prev_index, log.last_index()), message.prev_term
    )
    _respond(
        core,
        message.sender,
        message.prev_index,
        reject=True,
        hint_index=hint_index,
        hint_term=hint_term,
    )


def _well_formed(message: AppendEntries) -> bool:
    expected = message.prev_index + 1
    for entry in message.entries:
        if entry.index != expected or entry.term > message.term:
            return False
        expected += 1
    return message.prev_term <= message.term


def _handle_heartbeat(core: RaftCore, message: Heartbeat) -> None:
    # The leader caps the commit at our match index, so it never points past our log's
    # agreement with it.
    core.log.commit_to(min(message.commit, core.log.last_index()))
    core.send(
        HeartbeatResponse(
            term=core.term,
            sender=core.id,
            recipient=message.sender,
            context=message.context,
            applied=core.log.applied,
        )
    )


def _handle_snapshot_chunk(core: RaftCore, message: InstallSnapshot) -> None:
    meta = message.meta
    if meta.index <= core.log.committed:
        core.receiver = None
        _respond(core, message.sender, core.log.committed)  # stale: we are past it already
        return
    if message.total_bytes > limits.SNAPSHOT_BYTES_MAX or meta.term > message.term:
        return
    receiver = core.receiver
    if receiver is None or receiver.meta != meta or receiver.total_bytes != message.total_bytes:
        if message.offset != 0:
            _acknowledge_chunk(core, message, 0)  # a transfer we do not have: from the start
            return
        receiver = core.receiver = SnapshotReceiver(meta=meta, total_bytes=message.total_bytes)
    if message.offset == receiver.received_bytes:
        if receiver.received_bytes + len(message.data) > receiver.total_bytes:
            core.receiver = None
            return
        receiver.chunks.append(message.data)
        receiver.received_bytes += len(message.data)
    if receiver.received_bytes < receiver.total_bytes:
        _acknowledge_chunk(core, message, receiver.received_bytes)  # duplicates re-ack too
        return
    core.receiver = None
    snapshot = IncomingSnapshot(meta=meta, data=b"".join(receiver.chunks))
    if _install(core, snapshot):
        _respond(core, message.sender, meta.index)
    else:
        # Only the commit index moved: entries after it may still differ from the leader's,
        # so claim no more than what is committed.
        _respond(core, message.sender, core.log.committed)


def _acknowledge_chunk(core: RaftCore, message: InstallSnapshot, received: int) -> None:
    core.send(
        InstallSnapshotResponse(
            term=core.term,
            sender=core.id,
            recipient=message.sender,
            meta=message.meta,
            received_bytes=received,
        )
    )


def _install(core: RaftCore, snapshot: IncomingSnapshot) -> bool:
    """Raft figure 13 steps 6-8: keep the log if it already holds the snapshot's last entry
    (only the commit index moves: False); otherwise the snapshot replaces the whole log."""
    meta = snapshot.meta
    if core.log.match_term(meta.index, meta.term):
        core.log.commit_to(meta.index)
        return False
    core.log.restore(snapshot)
    core.membership = meta.membership
    return True
