"""``RaftCore``: one Raft peer as a pure state machine.

Inputs are method calls: ``tick()``, ``step(message)``, ``propose(...)``,
``propose_membership(...)``, ``transfer_leadership(...)``, ``read_index(...)``, and
``stalled()`` when the node could not tick for a while. Outputs wait in
a ``Ready`` until the node takes them with ``ready()`` and, once it has done what the Ready
asks, calls ``advance(ready)``. No clock (time is ticks), no I/O (the node does it), no global
random (an injected ``random.Random`` draws election timeouts): the same inputs always give
the same outputs, which is what lets the simulator replay a seed.

This module holds the state, the term rules every message passes through, elections and the
Ready cycle. The leader's side of replication lives in ``replication.py``, the follower's
handling of the leader's messages in ``follower.py``.
"""

from __future__ import annotations

import operator
import random
from collections import deque
from collections.abc import Sequence

import attrs

from raftq import codec, limits
from raftq.errors import Busy, LocalProtocolError, MembershipChangeError, NotLeader
from raftq.ids import NodeId
from raftq.raft import follower, replication
from raftq.raft.log import RaftLog
from raftq.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    RequestVote,
    RequestVoteResponse,
)
from raftq.raft.progress import Inflights, Progress
from raftq.raft.ready import PendingRead, Proposal, ReadState, Ready, Role, SoftState
from raftq.raft.storage import LogStorage, entries_size
from raftq.raft.types import Entry, EntryKind, HardState, Membership


@attrs.frozen(kw_only=True)
class RaftConfig:
    """How one peer behaves. Ticks are the node's unit of time (``tick_ms`` each)."""

    node_id: NodeId
    election_ticks: int = 10
    """Followers wait a random ``[election_ticks, 2 * election_ticks)`` ticks for a leader."""
    heartbeat_ticks: int = 1
    append_bytes_max: int = limits.RAFT_APPEND_BYTES_MAX
    inflight_max: int = limits.RAFT_INFLIGHT_MAX
    uncommitted_bytes_max: int = limits.RAFT_UNCOMMITTED_BYTES_MAX
    apply_bytes_max: int = limits.RAFT_APPLY_BYTES_MAX
    snapshot_chunk_bytes: int = limits.SNAPSHOT_CHUNK_BYTES
    pre_vote: bool = True
    check_quorum: bool = True
    commit_notices: bool = True
    """Tell a follower of a new commit index at once (an AppendEntries without entries), as
    etcd-io/raft does. False leaves it to the next heartbeat or append: followers apply up to
    a heartbeat later, and a commit at low load costs two messages and two follower wake-ups
    fewer (the node's choice: see docs/raft.md)."""

    def __attrs_post_init__(self) -> None:
        if not 0 < self.heartbeat_ticks < self.election_ticks:
            raise ValueError("need 0 < heartbeat_ticks < election_ticks")
        if self.inflight_max < 1 or self.append_bytes_max < 1 or self.snapshot_chunk_bytes < 1:
            raise ValueError("inflight_max, append_bytes_max, snapshot_chunk_bytes must be > 0")


@attrs.frozen(kw_only=True)
class PeerStatus:
    match: int
    next: int
    state: str
    learner: bool
    recent_active: bool


@attrs.frozen(kw_only=True)
class Status:
    node_id: NodeId
    role: Role
    term: int
    vote: NodeId | None
    leader: NodeId | None
    commit: int
    applied: int
    last_index: int
    membership: Membership
    peers: dict[NodeId, PeerStatus]


_kind = operator.attrgetter("kind")

STALL_ROUNDS = 2
"""Check-quorum rounds a leader lets pass after a stall before it trusts its round flags for a
membership change (``RaftCore.stalled``): the first round holds the answers that waited in its
inbox and the network during the stall; the second and the one under way are heard live."""

LEAVING_ELECTION_TIMEOUTS = 3
"""A removed leader hands over within this many election timeouts or steps down anyway. The
remaining voters report the change applied in their next heartbeat answers (a tick or two);
a leader still waiting after three timeouts is waiting for something that will not come."""


class RaftCore:
    """One Raft peer; see the module docstring."""

    def __init__(
        self,
        config: RaftConfig,
        storage: LogStorage,
        rng: random.Random,
        *,
        initial_membership: Membership,
    ) -> None:
        self.id = config.node_id
        self.config = config
        self.rng = rng
        state = storage.initial_state()
        self.log = RaftLog(storage, committed=state.hard_state.commit)
        self.term = state.hard_state.term
        self.vote: NodeId | None = state.hard_state.vote
        self.leader: NodeId | None = None
        self.role = Role.FOLLOWER
        self.membership = (
            state.snapshot.membership if state.snapshot.index > 0 else initial_membership
        )
        self._recover_membership()
        self.progress: dict[NodeId, Progress] = {}
        self.votes: dict[NodeId, bool] = {}
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_ticks
        self.pending_membership_index = 0
        self.leaving_index = 0
        """As leader: the index of the applied change that removed us (0: not leaving)."""
        self.leaving_ticks = 0
        self.handed_over_index = 0
        """The last ``leaving_index`` whose hand-over completed (the node acknowledges the
        removal to the operator then: the remaining voters can lead without us)."""
        self.transfer_target: NodeId | None = None
        self.stall_rounds = 0
        """As leader: check-quorum rounds still to pass before its round flags say again who
        answers, after a stall (``stalled``)."""
        self.pending_reads: deque[PendingRead] = deque()
        self.read_round = 0
        """The last ReadIndex round this node numbered as leader (never reused)."""
        self.reads_before_commit: list[tuple[bytes, NodeId]] = []
        self.forwarded_reads: set[bytes] = set()
        """Contexts of reads this follower asked its leader (of this term) for, not yet
        answered."""
        self.reads_to_forward: list[bytes] = []
        """Forwarded reads whose term ended unanswered: asked again of the next leader, or
        served by this node if it is that leader (``forward_waiting_reads``)."""
        self.read_states: list[ReadState] = []
        self.uncommitted: deque[tuple[int, int]] = deque()  # (last index, bytes) per proposal
        self.uncommitted_bytes = 0
        self.replication_due = False
        self.messages: list[Message] = []
        self.early_messages: list[Message] = []
        self.receiver: follower.SnapshotReceiver | None = None
        self._persisted_hard_state = state.hard_state
        self._reported_soft_state = SoftState(leader=None, role=Role.FOLLOWER)
        self._ready_outstanding = False
        self._reset_election_timeout()

    def _recover_membership(self) -> None:
        """Apply the committed MEMBERSHIP entries after the snapshot, as a restart must."""
        low, high = self.log.first_index(), self.log.committed + 1
        while low < high:
            batch = self.log.entries(low, high, self.config.apply_bytes_max)
            for entry in batch:
                if entry.kind is EntryKind.MEMBERSHIP:
                    self.membership = codec.decode(entry.data, Membership)
            low = batch[-1].index + 1

    # --- facts ----------------------------------------------------------------------------------

    def quorum(self) -> int:
        return len(self.membership.voters) // 2 + 1

    def promotable(self) -> bool:
        """Only voters campaign; learners and nodes not (yet) in the cluster never do."""
        return self.id in self.membership.voters and self.log.pending_snapshot is None

    def committed_in_current_term(self) -> bool:
        return self.log.match_term(self.log.committed, self.term)

    def status(self) -> Status:
        return Status(
            node_id=self.id,
            role=self.role,
            term=self.term,
            vote=self.vote,
            leader=self.leader,
            commit=self.log.committed,
            applied=self.log.applied,
            last_index=self.log.last_index(),
            membership=self.membership,
            peers={
                peer: PeerStatus(
                    match=progress.match,
                    next=progress.next,
                    state=progress.state.value,
                    learner=progress.learner,
                    recent_active=progress.recent_active,
                )
                for peer, progress in sorted(self.progress.items())
            },
        )

    # --- role changes ---------------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_election_timeout()
        self.votes = {}
        self.progress = {}
        self.leaving_index = 0
        self.leaving_ticks = 0
        self.transfer_target = None
        self.stall_rounds = 0
        self.pending_reads = deque()
        self.reads_before_commit = []
        # The request or the answer of a forwarded read may have been lost with the term:
        # ask again once a leader is known (a late answer of the old term is dropped).
        self.reads_to_forward.extend(sorted(self.forwarded_reads))
        self.forwarded_reads = set()
        self.uncommitted.clear()
        self.uncommitted_bytes = 0
        self.replication_due = False

    def _reset_election_timeout(self) -> None:
        ticks = self.config.election_ticks
        self.randomized_election_timeout = ticks + self.rng.randrange(ticks)

    def become_follower(self, term: int, leader: NodeId | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _become_pre_candidate(self) -> None:
        # Pre-vote changes neither term nor vote: a node that cannot win disturbs no one.
        self.votes = {}
        self.leader = None
        self.role = Role.PRE_CANDIDATE

    def _become_candidate(self) -> None:
        assert self.role is not Role.LEADER
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        assert self.role is Role.CANDIDATE
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        last = self.log.last_index()
        for peer in self.membership.voters + self.membership.learners:
            self.progress[peer] = self._new_progress(peer, last + 1)
        # The leader's own match is what it has persisted; advance() moves it on.
        own = self.progress[self.id]
        own.match = self.log.unstable_offset - 1 if self.log.unstable else last
        # Any membership entry in the log may still be unapplied: no change until it is.
        self.pending_membership_index = last
        # A no-op of the new term commits everything before it (5.4.2, figure 8). It names
        # this node: the log then says who appended each term's entries (job provenance).
        noop = [Entry(index=last + 1, term=self.term, kind=EntryKind.NOOP, data=self.id.encode())]
        self._append_entries(noop, entries_size(noop))
        self.forward_waiting_reads()

    def _new_progress(self, peer: NodeId, next_index: int) -> Progress:
        return Progress(
            next=next_index,
            inflights=Inflights(capacity=self.config.inflight_max),
            learner=peer in self.membership.learners,
        )

    # --- elections ------------------------------------------------------------------------------

    def campaign(self, *, transfer: bool = False) -> None:
        """Start an election now: with pre-vote if configured, unless a leader handed over
        (``transfer``: voters then waive their lease)."""
        self._start_election(pre_vote=self.config.pre_vote and not transfer, transfer=transfer)

    def _start_election(self, *, pre_vote: bool, transfer: bool) -> None:
        if not self.promotable() or self.role is Role.LEADER:
            return
        if pre_vote:
            self._become_pre_candidate()
            vote_term = self.term + 1
        else:
            self._become_candidate()
            vote_term = self.term
        self.votes = {self.id: True}
        if self._poll() is True:
            self._election_won(pre_vote)
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for voter in self.membership.voters:
            if voter != self.id:
                self.send(
                    RequestVote(
                        term=vote_term,
                        sender=self.id,
                        recipient=voter,
                        last_index=last_index,
                        last_term=last_term,
                        pre_vote=pre_vote,
                        transfer=transfer,
                    )
                )

    def _poll(self) -> bool | None:
        """True: won. False: lost. None: undecided."""
        granted = sum(1 for voter in self.membership.voters if self.votes.get(voter) is True)
        denied = sum(1 for voter in self.membership.voters if self.votes.get(voter) is False)
        if granted >= self.quorum():
            return True
        if denied > len(self.membership.voters) - self.quorum():
            return False
        return None

    def _election_won(self, pre_vote: bool) -> None:
        if pre_vote:
            self._start_election(pre_vote=False, transfer=False)  # pre-vote cleared the way
        else:
            self._become_leader()

    def _handle_vote_request(self, message: RequestVote) -> None:
        can_vote = (
            self.vote == message.sender
            or (self.vote is None and self.leader is None)
            or (message.pre_vote and message.term > self.term)
        )
        granted = can_vote and self.log.is_up_to_date(message.last_index, message.last_term)
        self.send(
            RequestVoteResponse(
                # A granted pre-vote is answered in the term it asks about (the candidate's
                # next term); a refusal in ours, which may tell the candidate it is behind.
                term=message.term if granted else self.term,
                sender=self.id,
                recipient=message.sender,
                granted=granted,
                pre_vote=message.pre_vote,
            )
        )
        if granted and not message.pre_vote:
            self.election_elapsed = 0
            self.vote = message.sender

    def _handle_vote_response(self, message: RequestVoteResponse) -> None:
        expecting_pre_votes = self.role is Role.PRE_CANDIDATE
        if message.pre_vote != expecting_pre_votes:
            return  # an answer to an election phase we have left
        self.votes.setdefault(message.sender, message.granted)
        result = self._poll()
        if result is True:
            self._election_won(message.pre_vote)
        elif result is False:
            self.become_follower(self.term, None)

    # --- time -----------------------------------------------------------------------------------

    def tick(self) -> None:
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self.election_elapsed += 1
            if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
                self.election_elapsed = 0
                self.campaign()

    def stalled(self) -> None:
        """The node could not run for longer than a few ticks (a long fsync, a paused
        process), and its ticks were not all counted. As leader, what it heard meanwhile and
        hears right after (answers that waited in the network while it stood still) says
        nothing of which voters are up now: it accepts no membership change until two
        check-quorum rounds after the stall have passed, each of them heard live
        (``replication.check_membership_change``)."""
        if self.role is Role.LEADER:
            self.stall_rounds = STALL_ROUNDS

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        replication.tick_snapshot_transfers(self)
        if self.leaving_index:
            self.leaving_ticks += 1
            if self.leaving_ticks >= LEAVING_ELECTION_TIMEOUTS * self.config.election_ticks:
                # No quorum of the new voters reported the change applied (they may run a
                # version that does not say): step down rather than refuse proposals forever.
                self.become_follower(self.term, None)
                return
        if self.election_elapsed >= self.config.election_ticks:
            self.election_elapsed = 0
            self.stall_rounds = max(0, self.stall_rounds - 1)
            if self.config.check_quorum and not replication.quorum_active(self):
                self.become_follower(self.term, None)
                return
            self.transfer_target = None  # a transfer that took an election timeout failed
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            replication.broadcast_heartbeat(self)

    # --- messages -------------------------------------------------------------------------------

    def step(self, message: Message) -> None:
        """Feed one message from a peer. Messages for another node or from a stranger are
        dropped; the term rules of 5.1 (with pre-vote and lease exceptions) come first."""
        if message.recipient != self.id or message.sender == self.id:
            return
        if message.term > self.term and not self._accept_higher_term(message):
            return
        if message.term < self.term:
            self._answer_stale(message)
            return
        if isinstance(message, RequestVote):
            self._handle_vote_request(message)
        elif self.role is Role.LEADER:
            replication.step_leader(self, message)
        elif isinstance(message, RequestVoteResponse):
            if self.role in (Role.PRE_CANDIDATE, Role.CANDIDATE):
                self._handle_vote_response(message)
        else:
            from_leader = isinstance(message, AppendEntries | Heartbeat | InstallSnapshot)
            if from_leader and self.role is not Role.FOLLOWER:
                self.become_follower(message.term, message.sender)
            follower.step_follower(self, message)

    def _accept_higher_term(self, message: Message) -> bool:
        """A message from a later term: False to ignore it, else adopt the term if due."""
        if isinstance(message, RequestVote):
            in_lease = (
                self.config.check_quorum
                and self.leader is not None
                and self.election_elapsed < self.config.election_ticks
            )
            if in_lease and not message.transfer:
                # We heard from a leader recently: a vote request now comes from a node that
                # was cut off, and must not depose a healthy leader (thesis 4.2.3).
                return False
            if message.pre_vote:
                return True  # answering a pre-vote never changes our term
        if isinstance(message, RequestVoteResponse) and message.pre_vote and message.granted:
            return True  # the term is adopted when the real election starts
        from_leader = isinstance(message, AppendEntries | Heartbeat | InstallSnapshot)
        self.become_follower(message.term, message.sender if from_leader else None)
        return True

    def _answer_stale(self, message: Message) -> None:
        """Tell a deposed leader that its term is over, so it steps down (with pre-vote or
        check-quorum on, our higher term would otherwise never reach it)."""
        if isinstance(message, AppendEntries | Heartbeat):
            if self.config.check_quorum or self.config.pre_vote:
                self.send(
                    AppendEntriesResponse(
                        term=self.term, sender=self.id, recipient=message.sender, index=0
                    )
                )
        elif isinstance(message, RequestVote) and message.pre_vote:
            self.send(
                RequestVoteResponse(
                    term=self.term,
                    sender=self.id,
                    recipient=message.sender,
                    granted=False,
                    pre_vote=True,
                )
            )

    def send(self, message: Message) -> None:
        self.messages.append(message)

    # --- local requests -------------------------------------------------------------------------

    def propose(self, commands: Sequence[bytes]) -> Proposal:
        """Append commands (one entry each) as leader; raises ``NotLeader`` or ``Busy``."""
        return self._propose([(EntryKind.COMMAND, command) for command in commands])

    def propose_membership(self, membership: Membership) -> Proposal:
        """Propose the next configuration: one server added, removed, promoted or demoted."""
        self._require_leader()
        if self.pending_membership_index > self.log.applied or self.leaving_index:
            raise MembershipChangeError(
                "a membership change is still in progress; retry", retryable=True
            )
        if not self.committed_in_current_term():
            raise MembershipChangeError(
                "a new leader must commit an entry first; retry", retryable=True
            )
        replication.check_membership_change(self, membership)
        proposal = self._propose([(EntryKind.MEMBERSHIP, codec.encode(membership, Membership))])
        self.pending_membership_index = proposal.last_index
        return proposal

    def _propose(self, items: list[tuple[EntryKind, bytes]]) -> Proposal:
        self._require_leader()
        if not items:
            raise LocalProtocolError("nothing to propose")
        if self.transfer_target is not None:
            raise Busy(f"leadership is moving to {self.transfer_target}; retry there")
        if self.leaving_index:
            raise Busy(f"{self.id} was removed and is handing leadership over; retry")
        first = self.log.last_index() + 1
        entries = [
            Entry(index=first + offset, term=self.term, kind=kind, data=data)
            for offset, (kind, data) in enumerate(items)
        ]
        size = entries_size(entries)
        if self.uncommitted_bytes and self.uncommitted_bytes + size > (
            self.config.uncommitted_bytes_max
        ):
            raise Busy(
                f"{self.uncommitted_bytes} bytes proposed and not yet committed; retry later"
            )
        self._append_entries(entries, size)
        return Proposal(term=self.term, first_index=first, last_index=entries[-1].index)

    def _require_leader(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(f"{self.id} is not the leader", leader_id=self.leader)

    def _append_entries(self, entries: list[Entry], size: int) -> None:
        """The leader appends to its own log (unstable until the node persists it)."""
        self.log.append(entries)
        self.uncommitted.append((entries[-1].index, size))
        self.uncommitted_bytes += size
        self.replication_due = True

    def transfer_leadership(self, target: NodeId) -> None:
        """Hand leadership to ``target`` (graceful shutdown): catch it up, then TimeoutNow."""
        self._require_leader()
        if target == self.id:
            return
        if target not in self.membership.voters:
            raise MembershipChangeError(f"{target} is not a voter of this cluster")
        if self.transfer_target == target:
            return
        self.transfer_target = target
        self.election_elapsed = 0  # the transfer is given one election timeout
        replication.maybe_send_timeout_now(self)
        self.replication_due = True

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read point; it arrives as a ``ReadState`` with ``context``.
        Raises ``NotLeader`` (no leader known) or ``Busy`` (too many reads waiting)."""
        if self.role is Role.LEADER:
            if replication.reads_waiting(self) >= limits.RAFT_READS_PENDING_MAX:
                raise Busy("too many reads waiting for a heartbeat round; retry")
            replication.handle_read(self, context, self.id)
        elif self.leader is not None:
            if len(self.forwarded_reads) + len(self.reads_to_forward) >= (
                limits.RAFT_READS_PENDING_MAX
            ):
                raise Busy("too many reads waiting for the leader; retry")
            self._forward_read(context)
        else:
            raise NotLeader("no leader known for a read", leader_id=None)

    def _forward_read(self, context: bytes) -> None:
        assert self.leader is not None
        assert self.leader != self.id, self.leader
        self.forwarded_reads.add(context)
        self.send(
            ReadIndexRequest(term=self.term, sender=self.id, recipient=self.leader, context=context)
        )

    def forward_waiting_reads(self) -> None:
        """Reads forwarded in an earlier term and never answered: ask the leader now known,
        or, as that leader, serve them (after the no-op commits, like any read)."""
        if not self.reads_to_forward or self.leader is None:
            return
        waiting, self.reads_to_forward = self.reads_to_forward, []
        for context in waiting:
            if self.role is Role.LEADER:
                replication.handle_read(self, context, self.id)
            else:
                self._forward_read(context)

    # --- the Ready cycle ------------------------------------------------------------------------

    def has_ready(self) -> bool:
        if self.replication_due or self.messages or self.early_messages or self.read_states:
            return True
        if self.log.unstable or self.log.pending_snapshot is not None:
            return True
        # The fields compared as ``_hard_state() != ...`` would, without building the values:
        # the Raft peer asks after every round (1% of a simulated run, profiled).
        persisted, reported = self._persisted_hard_state, self._reported_soft_state
        if (self.term, self.vote, self.log.committed) != (
            persisted.term,
            persisted.vote,
            persisted.commit,
        ):
            return True
        if (self.leader, self.role) != (reported.leader, reported.role):
            return True
        return self.log.committed > self.log.applied

    def ready(self) -> Ready:
        """Take the pending outputs. Call ``advance`` with the result before the next one."""
        if self._ready_outstanding:
            raise LocalProtocolError("ready() again before advance()")
        if self.role is Role.LEADER:
            replication.flush(self)
        hard_state = self._hard_state()
        soft_state = self._soft_state()
        committed = tuple(self.log.next_committed_entries(self.config.apply_bytes_max))
        commit_durable = bool(committed) and EntryKind.MEMBERSHIP in map(_kind, committed)
        ready = Ready(
            soft_state=soft_state if soft_state != self._reported_soft_state else None,
            hard_state=(
                hard_state if commit_durable or hard_state != self._persisted_hard_state else None
            ),
            entries=tuple(self.log.unstable),
            snapshot=self.log.pending_snapshot,
            early_messages=tuple(self.early_messages),
            messages=tuple(self.messages),
            committed_entries=committed,
            commit_durable=commit_durable,
            read_states=tuple(self.read_states),
            must_sync=bool(self.log.unstable)
            or self.log.pending_snapshot is not None
            or (hard_state.term, hard_state.vote)
            != (self._persisted_hard_state.term, self._persisted_hard_state.vote),
        )
        self.messages = []
        self.early_messages = []
        self.read_states = []
        self._reported_soft_state = soft_state
        self._ready_outstanding = True
        return ready

    def advance(self, ready: Ready) -> None:
        """The node has persisted, sent and applied what ``ready`` asked."""
        if not self._ready_outstanding:
            raise LocalProtocolError("advance() without ready()")
        self._ready_outstanding = False
        if ready.hard_state is not None:
            self._persisted_hard_state = ready.hard_state
        if ready.snapshot is not None and self.log.pending_snapshot == ready.snapshot:
            self.log.snapshot_persisted()
        if ready.entries:
            last = ready.entries[-1]
            self.log.stable_to(last.index, last.term)
            # The leader counts itself only for entries it has persisted.
            if (
                self.role is Role.LEADER
                and self.log.match_term(last.index, last.term)
                and self.progress[self.id].maybe_update(last.index)
            ):
                replication.maybe_commit(self)
        if ready.committed_entries:
            self._applied(ready.committed_entries)

    def _applied(self, entries: tuple[Entry, ...]) -> None:
        self.log.applied_to(entries[-1].index)
        if EntryKind.MEMBERSHIP not in map(_kind, entries):  # the common case, tested in C
            return
        for entry in entries:
            if entry.kind is EntryKind.MEMBERSHIP:
                self._apply_membership(codec.decode(entry.data, Membership), entry.index)

    def _apply_membership(self, membership: Membership, index: int) -> None:
        """A committed configuration takes effect as it is applied (as in etcd-io/raft)."""
        self.membership = membership
        if self.role is not Role.LEADER:
            return
        replication.reconcile_progress(self)
        if self.transfer_target is not None and self.transfer_target not in membership.voters:
            self.transfer_target = None
        replication.maybe_commit(self)
        if self.id not in membership.voters:
            # Removed (or demoted): keep leading the new voters, without counting ourselves,
            # until enough of them have applied the change to elect a leader without us;
            # then hand over (``replication.maybe_hand_over``). Stepping down at once left a
            # survivor of two voters unaware that the change committed: it still needed our
            # vote (issue #14, the class of etcd-io/etcd#10563).
            self.leaving_index = index
            replication.maybe_hand_over(self)

    def _hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def _soft_state(self) -> SoftState:
        return SoftState(leader=self.leader, role=self.role)
