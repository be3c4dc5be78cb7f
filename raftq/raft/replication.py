"""The leader's side: replication to each follower, commit, heartbeats, snapshots to send,
leadership transfer, ReadIndex and membership checks. Functions of the ``RaftCore``.

Sends are coalesced: handling a proposal or a response only marks replication as due, and
``flush`` (called by ``ready()``) sends each follower as much as its window allows, many
entries per message. So a round of many proposals and responses costs one batch of messages.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from raftq import limits
from raftq.errors import LogCompacted, MembershipChangeError
from raftq.ids import NodeId
from raftq.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    TimeoutNow,
)
from raftq.raft.progress import Progress, ProgressState
from raftq.raft.ready import PendingRead, ReadState, Role
from raftq.raft.types import Membership

if TYPE_CHECKING:
    from raftq.raft.core import RaftCore


def step_leader(core: RaftCore, message: Message) -> None:
    progress = core.progress.get(message.sender)
    if progress is None:
        return  # not (or no longer) a member
    progress.heard = True
    progress.recent_active = True
    if isinstance(message, AppendEntriesResponse):
        _handle_append_response(core, message, progress)
    elif isinstance(message, HeartbeatResponse):
        _handle_heartbeat_response(core, message, progress)
    elif isinstance(message, InstallSnapshotResponse):
        _handle_snapshot_response(core, message, progress)
    elif isinstance(message, ReadIndexRequest) and (
        reads_waiting(core) < limits.RAFT_READS_PENDING_MAX
    ):
        # Past the bound a forwarded read is dropped: its client times out and retries.
        handle_read(core, message.context, message.sender)


def _handle_append_response(
    core: RaftCore, message: AppendEntriesResponse, progress: Progress
) -> None:
    if message.reject:
        next_probe = message.hint_index
        if message.hint_term > 0:
            next_probe, _ = core.log.find_conflict_by_term(message.hint_index, message.hint_term)
        if progress.maybe_decrease_to(message.index, next_probe):
            if progress.state is ProgressState.REPLICATE:
                progress.become_probe()
            core.replication_due = True
        return
    if message.index > core.log.last_index():
        return  # claims entries we never sent: ignore
    updated = progress.maybe_update(message.index)
    if progress.state is ProgressState.SNAPSHOT:
        _snapshot_answered(core, progress)
    elif not updated:
        return
    elif progress.state is ProgressState.PROBE:
        progress.become_replicate()
    else:
        progress.inflights.free_to(message.index)
    if not updated:
        return
    maybe_commit(core)
    core.replication_due = True
    if message.sender == core.transfer_target:
        maybe_send_timeout_now(core)


def _snapshot_answered(core: RaftCore, progress: Progress) -> None:
    """A follower being sent a snapshot answered an append (having installed the snapshot, or
    being past it). Replicate if the log reaches back to its match; else, once it holds the
    snapshot, probe: the probe finds the log compacted past it and sends the newer snapshot.
    Waiting in SNAPSHOT instead would resend the same old snapshot forever (the storage keeps
    the previous snapshot readable, so nothing else ends the transfer; etcd-io/raft probes
    on ``ReportSnapshot``). Found by the simulator (seed 12094 of the 12000 sweep)."""
    transfer = progress.snapshot
    reaches = progress.match + 1 >= core.log.first_index()
    if reaches or (transfer is not None and progress.match >= transfer.meta.index):
        progress.become_probe()
        if reaches:
            progress.become_replicate()
        core.replication_due = True


def _handle_heartbeat_response(
    core: RaftCore, message: HeartbeatResponse, progress: Progress
) -> None:
    progress.probe_sent = False
    if progress.state is ProgressState.REPLICATE and progress.inflights.full():
        # If every append in the window was lost, no answer will ever free it: free one slot
        # so the append below goes out (as etcd-io/raft's FreeFirstOne does).
        progress.inflights.free_first()
    if progress.match < core.log.last_index():
        # Even with nothing new to send: an empty append re-probes, and the follower's
        # rejection reveals appends lost in flight (it resets the window).
        _maybe_send_append(core, message.sender, progress, send_if_empty=True)
        core.replication_due = True
    if message.applied > progress.applied:
        progress.applied = message.applied
        maybe_hand_over(core)
        if core.role is not Role.LEADER:
            return
    read_round = round_of(message.context)
    if progress.read_round < read_round <= core.read_round:
        progress.read_round = read_round
        release_reads(core)


def _handle_snapshot_response(
    core: RaftCore, message: InstallSnapshotResponse, progress: Progress
) -> None:
    transfer = progress.snapshot
    if progress.state is not ProgressState.SNAPSHOT or transfer is None:
        return
    if message.meta != transfer.meta or message.received_bytes > transfer.total_bytes:
        return
    transfer.acknowledged_bytes = message.received_bytes
    transfer.idle_ticks = 0
    if transfer.acknowledged_bytes < transfer.total_bytes:
        _send_snapshot_chunk(core, message.sender, progress)
    # When the last chunk is in, the follower installs it and answers with AppendEntries-
    # Response, which moves this progress back to probing.


# --- sending ------------------------------------------------------------------------------------


def flush(core: RaftCore) -> None:
    """Send every follower what is due: new entries up to its window, or (with
    ``commit_notices``) the new commit."""
    if not core.replication_due:
        return
    core.replication_due = False
    notices = core.config.commit_notices
    for peer, progress in core.progress.items():
        if peer == core.id:
            continue
        sent = False
        while _maybe_send_append(core, peer, progress, send_if_empty=False):
            sent = True
        if not sent and notices and progress.commit_sent < core.log.committed:
            _maybe_send_append(core, peer, progress, send_if_empty=True)


def _maybe_send_append(
    core: RaftCore, peer: NodeId, progress: Progress, *, send_if_empty: bool
) -> bool:
    """Send one AppendEntries if the window allows; True if it carried entries."""
    if progress.is_paused():
        return False
    prev_index = progress.next - 1
    try:
        prev_term = core.log.term(prev_index)
        entries = core.log.entries(
            progress.next, core.log.last_index() + 1, core.config.append_bytes_max
        )
    except LogCompacted:
        _start_snapshot(core, peer, progress)
        return False
    if not entries and not send_if_empty:
        return False
    core.early_messages.append(
        AppendEntries(
            term=core.term,
            sender=core.id,
            recipient=peer,
            prev_index=prev_index,
            prev_term=prev_term,
            entries=tuple(entries),
            commit=core.log.committed,
            commit_only=(
                not entries
                and progress.state is ProgressState.REPLICATE
                and progress.match == prev_index
            ),
        )
    )
    progress.sent_entries(entries[-1].index if entries else None)
    progress.commit_sent = core.log.committed
    return bool(entries)


def _start_snapshot(core: RaftCore, peer: NodeId, progress: Progress) -> None:
    """The follower needs entries we compacted: send the snapshot instead (figure 13)."""
    storage = core.log.storage
    meta = storage.snapshot_meta
    progress.become_snapshot(meta, storage.snapshot_size(meta))
    _send_snapshot_chunk(core, peer, progress)


def _send_snapshot_chunk(core: RaftCore, peer: NodeId, progress: Progress) -> None:
    transfer = progress.snapshot
    assert transfer is not None
    try:
        data = core.log.storage.snapshot_chunk(
            transfer.meta, transfer.acknowledged_bytes, core.config.snapshot_chunk_bytes
        )
    except LogCompacted:
        progress.become_probe()  # a newer snapshot replaced it: start over with that one
        core.replication_due = True
        return
    transfer.idle_ticks = 0
    core.early_messages.append(
        InstallSnapshot(
            term=core.term,
            sender=core.id,
            recipient=peer,
            meta=transfer.meta,
            offset=transfer.acknowledged_bytes,
            total_bytes=transfer.total_bytes,
            data=data,
        )
    )


def tick_snapshot_transfers(core: RaftCore) -> None:
    """Send a chunk again if the follower has been silent on it for half an election timeout
    (the chunk or its acknowledgement was lost); the follower ignores a duplicate."""
    for peer, progress in core.progress.items():
        transfer = progress.snapshot
        if progress.state is ProgressState.SNAPSHOT and transfer is not None:
            transfer.idle_ticks += 1
            if transfer.idle_ticks >= max(2, core.config.election_ticks // 2):
                _send_snapshot_chunk(core, peer, progress)


def broadcast_heartbeat(core: RaftCore) -> None:
    """Heartbeat every follower; the context names the newest ReadIndex round pending, so
    the acknowledgements of this heartbeat confirm every read queued before it was sent."""
    context = round_context(core.pending_reads[-1].round) if core.pending_reads else b""
    for peer, progress in core.progress.items():
        if peer != core.id:
            core.early_messages.append(
                Heartbeat(
                    term=core.term,
                    sender=core.id,
                    recipient=peer,
                    commit=min(progress.match, core.log.committed),
                    context=context,
                )
            )


def maybe_send_timeout_now(core: RaftCore) -> None:
    target = core.transfer_target
    if target is None:
        return
    progress = core.progress.get(target)
    if progress is not None and progress.match == core.log.last_index():
        core.early_messages.append(TimeoutNow(term=core.term, sender=core.id, recipient=target))


# --- commit -------------------------------------------------------------------------------------


def maybe_commit(core: RaftCore) -> bool:
    """Commit the highest index a quorum of voters has persisted, if it is of this term.

    An entry of an earlier term is never committed by counting replicas (5.4.2, figure 8); it
    is committed with the first entry of this term, the leader's no-op.
    """
    voters = core.membership.voters
    matches = sorted(
        (core.progress[voter].match for voter in voters if voter in core.progress), reverse=True
    )
    quorum = core.quorum()
    if len(matches) < quorum:
        return False
    index = matches[quorum - 1]
    if index <= core.log.committed or not core.log.match_term(index, core.term):
        return False
    first_of_term = not core.committed_in_current_term()
    core.log.commit_to(index)
    while core.uncommitted and core.uncommitted[0][0] <= index:
        core.uncommitted_bytes -= core.uncommitted.popleft()[1]
    core.replication_due = True
    if first_of_term:
        waiting, core.reads_before_commit = core.reads_before_commit, []
        for context, requester in waiting:
            handle_read(core, context, requester)
    return True


def quorum_active(core: RaftCore) -> bool:
    """Check-quorum: has a majority of voters been heard from this round? Starts the next."""
    active = sum(
        1
        for voter in core.membership.voters
        if voter == core.id or (voter in core.progress and core.progress[voter].recent_active)
    )
    for peer, progress in core.progress.items():
        if peer != core.id:
            progress.active_last_round = progress.recent_active
            progress.recent_active = False
    return active >= core.quorum()


def answering(core: RaftCore, voter: NodeId) -> bool:
    """Has ``voter`` been heard from by this leader, and within the last check-quorum round or
    two (the leader itself: always)?"""
    if voter == core.id:
        return True
    progress = core.progress.get(voter)
    if progress is None or not progress.heard:
        return False
    return progress.recent_active or progress.active_last_round


def awaited(core: RaftCore, voter: NodeId) -> bool:
    """Not heard from yet by this leader, which took office (or which the voter joined) less
    than a check-quorum round or two ago (the round flags still hold their grace): its answer
    is likely on the way."""
    if voter == core.id:
        return False
    progress = core.progress.get(voter)
    return (
        progress is not None
        and not progress.heard
        and (progress.recent_active or progress.active_last_round)
    )


# --- ReadIndex (thesis 6.4) ---------------------------------------------------------------------
#
# As etcd-io/raft's read_only.go does: each read gets a round number unique at this leader
# (the requester's context is only echoed back; nodes number their reads independently, so
# contexts of different requesters may be equal). A heartbeat carries the newest pending
# round; a follower's acknowledgement of round R shows it still followed this leader after
# every read of round <= R was queued. A read is released once a quorum of voters has
# acknowledged its round or a later one, never by a round sent before it.

ROUND_BYTES = 8


def round_context(read_round: int) -> bytes:
    return read_round.to_bytes(ROUND_BYTES, "big")


def round_of(context: bytes) -> int:
    """The round a heartbeat acknowledgement carries (0: none, or not a round of ours)."""
    return int.from_bytes(context, "big") if len(context) == ROUND_BYTES else 0


def reads_waiting(core: RaftCore) -> int:
    return len(core.pending_reads) + len(core.reads_before_commit)


def handle_read(core: RaftCore, context: bytes, requester: NodeId) -> None:
    """Record a read at the current commit index; it is released once a quorum confirms
    this node still leads. A new leader first commits its no-op: until then its commit
    index may lag entries a previous leader committed."""
    if not core.committed_in_current_term():
        core.reads_before_commit.append((context, requester))
        return
    if core.membership.voters == (core.id,):
        _answer_read(core, context, core.log.committed, requester)
        return
    core.read_round += 1
    core.pending_reads.append(
        PendingRead(
            round=core.read_round,
            index=core.log.committed,
            requester=requester,
            context=context,
        )
    )
    broadcast_heartbeat(core)


def release_reads(core: RaftCore) -> None:
    """Answer every pending read whose round a quorum of voters has acknowledged."""
    rounds = sorted(
        (
            core.read_round if voter == core.id else core.progress[voter].read_round
            for voter in core.membership.voters
            if voter == core.id or voter in core.progress
        ),
        reverse=True,
    )
    quorum = core.quorum()
    if len(rounds) < quorum:
        return
    confirmed = rounds[quorum - 1]
    while core.pending_reads and core.pending_reads[0].round <= confirmed:
        read = core.pending_reads.popleft()
        _answer_read(core, read.context, read.index, read.requester)


def _answer_read(core: RaftCore, context: bytes, index: int, requester: NodeId) -> None:
    if requester == core.id:
        core.read_states.append(ReadState(context=context, index=index))
    else:
        core.early_messages.append(
            ReadIndexResponse(
                term=core.term, sender=core.id, recipient=requester, context=context, index=index
            )
        )


# --- membership -----------------------------------------------------------------------------------


def check_membership_change(core: RaftCore, proposed: Membership) -> None:
    """Refuse anything but a single-server change (thesis 4.1), and the promotion of a
    learner that has not caught up with the commit index."""
    current = core.membership

    def role(membership: Membership, node: NodeId) -> str:
        if node in membership.voters:
            return "voter"
        return "learner" if node in membership.learners else "absent"

    nodes = sorted(set(current.voters + current.learners + proposed.voters + proposed.learners))
    changed = [node for node in nodes if role(current, node) != role(proposed, node)]
    if len(changed) != 1:
        raise MembershipChangeError(
            f"change one server at a time; this changes {len(changed)}: {changed}"
        )
    if not proposed.voters:
        raise MembershipChangeError("a cluster needs at least one voter")
    (node,) = changed
    if core.stall_rounds:
        raise MembershipChangeError(
            "this leader could not run for a while (a stall): it has not heard its voters "
            "live for a check-quorum round since, so it cannot tell which of them are up; retry",
            retryable=True,
        )
    up = [voter for voter in proposed.voters if answering(core, voter)]
    if len(up) < len(proposed.voters) // 2 + 1:
        awaiting = sorted(voter for voter in proposed.voters if awaited(core, voter))
        if len(up) + len(awaiting) >= len(proposed.voters) // 2 + 1:
            raise MembershipChangeError(
                f"this leader has not heard from {awaiting} yet (it was just elected, or they "
                "just joined); retry",
                retryable=True,
            )
        down = sorted(set(proposed.voters) - set(up))
        raise MembershipChangeError(
            f"changing {node} would leave voters {sorted(proposed.voters)} of which {down} "
            "have not answered for an election timeout: without a majority of them the "
            "cluster could never elect a leader again. Bring them back, or remove one that "
            "is gone for good first"
        )
    if role(current, node) == "learner" and role(proposed, node) == "voter":
        progress = core.progress.get(node)
        match = progress.match if progress is not None else 0
        if match < core.log.committed:
            raise MembershipChangeError(
                f"learner {node} has not caught up (has {match} of {core.log.committed}); "
                "promote it once it has",
                retryable=True,
            )


def maybe_hand_over(core: RaftCore) -> None:
    """A leader that applied its own removal (at ``leaving_index``) steps down once a quorum
    of the new voters has applied it too, so they elect among themselves without it (and,
    with the change applied, durably: a restart does not make them wait for the removed
    voter again). It sends TimeoutNow to the most up-to-date of them first, so the new
    leader takes over at once instead of after an election timeout."""
    index = core.leaving_index
    if not index:
        return
    voters = [voter for voter in core.membership.voters if voter in core.progress]
    applied = sum(1 for voter in voters if core.progress[voter].applied >= index)
    if not voters or applied < core.quorum():
        return
    target = max(voters, key=lambda voter: (core.progress[voter].match, voter))
    if core.progress[target].match == core.log.last_index():
        core.early_messages.append(TimeoutNow(term=core.term, sender=core.id, recipient=target))
    core.handed_over_index = index
    core.become_follower(core.term, None)


def reconcile_progress(core: RaftCore) -> None:
    """Track exactly the members of the applied configuration (and ourselves, as a leader
    removed by it keeps leading until it hands over)."""
    members = core.membership.voters + core.membership.learners
    for peer in list(core.progress):
        if peer not in members and peer != core.id:
            del core.progress[peer]
            core.pending_reads = deque(
                read for read in core.pending_reads if read.requester != peer
            )
    for peer in members:
        if peer not in core.progress:
            core.progress[peer] = core._new_progress(peer, core.log.last_index() + 1)
            core.replication_due = True
        core.progress[peer].learner = peer in core.membership.learners
    release_reads(core)  # the quorum may be smaller now
