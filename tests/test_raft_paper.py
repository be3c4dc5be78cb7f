"""The Raft paper's claims, one test each, against the pure core in ``raftq.raft``.

Each test names the section of "In Search of an Understandable Consensus Algorithm
(Extended Version)" (Ongaro and Ousterhout) whose sentences it checks. The scenarios follow
the ones etcd-io/raft keeps in ``raft_paper_test.go``: a core is set up in a plain state,
stepped with hand-made messages, and its outputs (the ``Ready``) and state are checked.

Pre-vote and check-quorum are extensions from Ongaro's thesis that the paper does not have,
so most tests turn them off to see the paper's plain behaviour; the tests that matter with
them on say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pytest

from raftq.errors import NotLeader
from raftq.ids import NodeId
from raftq.raft.core import RaftCore
from raftq.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    Message,
    ReadIndexRequest,
    RequestVote,
    RequestVoteResponse,
)
from raftq.raft.ready import Ready, Role
from raftq.raft.storage import MemoryStorage
from raftq.raft.types import Entry, EntryKind, HardState, Membership
from tests.raft_cluster import Peer, persist

ELECTION_TICKS = 10
N1, N2, N3, N4, N5 = (NodeId(f"n{number}") for number in range(1, 6))


# --- helpers ------------------------------------------------------------------------------------


def node_ids(count: int) -> tuple[NodeId, ...]:
    return tuple(NodeId(f"n{number}") for number in range(1, count + 1))


def log_of_terms(*terms: int, first_index: int = 1) -> list[Entry]:
    """Entries with the given terms, one per index from ``first_index``."""
    return [Entry(index=first_index + offset, term=term) for offset, term in enumerate(terms)]


def new_peer(
    node: NodeId = N1,
    size: int = 3,
    *,
    entries: Sequence[Entry] = (),
    hard_state: HardState | None = None,
    seed: int = 0,
    **config: object,
) -> Peer:
    """One peer of a cluster of ``size`` voters (n1..n<size>), starting from the given log and
    hard state. Pre-vote and check-quorum are off unless ``config`` turns them on."""
    storage = MemoryStorage()
    storage.append(list(entries))
    if hard_state is not None:
        storage.hard_state = hard_state
    settings: dict[str, object] = {
        "election_ticks": ELECTION_TICKS,
        "heartbeat_ticks": 1,
        "pre_vote": False,
        "check_quorum": False,
    }
    settings.update(config)
    membership = Membership(voters=node_ids(size))
    return Peer(node, membership, storage=storage, seed=seed, **settings)


def take_ready(peer: Peer) -> Ready:
    """Play the node's part of one Ready (persist, apply, advance) and return it."""
    if not peer.core.has_ready():
        return Ready()
    ready = peer.core.ready()
    persist(peer.storage, ready)
    peer.applied.extend(ready.committed_entries)
    peer.core.advance(ready)
    return ready


def sent(ready: Ready) -> list[Message]:
    """Everything a Ready sends, early messages first."""
    return [*ready.early_messages, *ready.messages]


def by_recipient(messages: Iterable[Message]) -> list[Message]:
    return sorted(messages, key=lambda message: message.recipient)


def vote_from(core: RaftCore, voter: NodeId, *, granted: bool = True) -> RequestVoteResponse:
    return RequestVoteResponse(term=core.term, sender=voter, recipient=core.id, granted=granted)


def accept(message: Message) -> AppendEntriesResponse:
    """A follower's acceptance of ``message`` (an AppendEntries) as it would answer."""
    assert isinstance(message, AppendEntries), message
    return AppendEntriesResponse(
        term=message.term,
        sender=message.recipient,
        recipient=message.sender,
        index=message.prev_index + len(message.entries),
    )


def make_leader(peer: Peer) -> RaftCore:
    """Campaign and win with the votes of every other voter; the no-op stays unsent."""
    core = peer.core
    others = [voter for voter in core.membership.voters if voter != core.id]
    core.campaign()
    take_ready(peer)
    if core.role is Role.PRE_CANDIDATE:
        for voter in others:
            if core.role is Role.PRE_CANDIDATE:
                core.step(
                    RequestVoteResponse(
                        term=core.term + 1,
                        sender=voter,
                        recipient=core.id,
                        granted=True,
                        pre_vote=True,
                    )
                )
        take_ready(peer)
    for voter in others:
        if core.role is Role.CANDIDATE:
            core.step(vote_from(core, voter))
    assert core.role is Role.LEADER, core.status()
    return core


def make_leader_with_committed_noop(peer: Peer) -> RaftCore:
    """A leader whose no-op every follower has acknowledged, with all its output taken."""
    core = make_leader(peer)
    for message in sent(take_ready(peer)):
        core.step(accept(message))
    take_ready(peer)
    assert core.log.committed == core.log.last_index()
    return core


def heartbeat_from(sender: NodeId, recipient: NodeId, term: int, commit: int = 0) -> Heartbeat:
    return Heartbeat(term=term, sender=sender, recipient=recipient, commit=commit)


def log_entries(core: RaftCore) -> list[Entry]:
    return core.log.entries(1, core.log.last_index() + 1)


def terms_of(core: RaftCore) -> list[int]:
    return [entry.term for entry in log_entries(core)]


class Network:
    """Peers wired together by hand: a crashed peer neither runs nor receives, and each
    delivery can drop or rewrite messages."""

    def __init__(self, peers: Iterable[Peer]) -> None:
        self.peers = {peer.id: peer for peer in peers}
        self.down: set[NodeId] = set()

    def core(self, node: NodeId) -> RaftCore:
        return self.peers[node].core

    def crash(self, node: NodeId) -> None:
        self.down.add(node)

    def restart(self, node: NodeId) -> None:
        """Back from a crash with what it had persisted (it restarts as a follower)."""
        self.down.discard(node)
        self.peers[node].restart()

    def deliver(
        self,
        *,
        allow: Callable[[Message], bool] = lambda message: True,
        rewrite: Callable[[Message], Message] = lambda message: message,
        rounds_max: int = 100,
    ) -> None:
        """Run every live peer's Ready and deliver what they send until all is quiet."""
        for _ in range(rounds_max):
            outgoing: list[Message] = []
            for peer in self.peers.values():
                if peer.id not in self.down:
                    outgoing.extend(peer.handle_ready())
            if not outgoing:
                return
            for message in outgoing:
                if message.recipient in self.down or message.recipient not in self.peers:
                    continue
                if allow(message):
                    self.peers[message.recipient].core.step(rewrite(message))
        raise AssertionError("the network did not go quiet")


# --- 5.1: terms ---------------------------------------------------------------------------------


def follower_at_term_one() -> Peer:
    return new_peer(hard_state=HardState(term=1))


def candidate_at_term_one() -> Peer:
    peer = new_peer()
    peer.core.campaign()
    take_ready(peer)
    assert peer.core.role is Role.CANDIDATE
    return peer


def leader_at_term_one() -> Peer:
    peer = new_peer()
    make_leader(peer)
    take_ready(peer)
    return peer


ROLE_SETUPS: dict[str, Callable[[], Peer]] = {
    "follower": follower_at_term_one,
    "candidate": candidate_at_term_one,
    "leader": leader_at_term_one,
}

MESSAGES_OF_TERM_TWO: dict[str, Message] = {
    "append-entries": AppendEntries(term=2, sender=N2, recipient=N1, prev_index=0, prev_term=0),
    "heartbeat": heartbeat_from(N2, N1, term=2),
    "request-vote": RequestVote(term=2, sender=N2, recipient=N1, last_index=5, last_term=1),
    "vote-denied": RequestVoteResponse(term=2, sender=N2, recipient=N1, granted=False),
    "append-response": AppendEntriesResponse(term=2, sender=N2, recipient=N1, index=0),
    "heartbeat-response": HeartbeatResponse(term=2, sender=N2, recipient=N1),
    "read-index-request": ReadIndexRequest(term=2, sender=N2, recipient=N1, context=b"read"),
}
FROM_A_LEADER = ("append-entries", "heartbeat")


@pytest.mark.parametrize("role", list(ROLE_SETUPS))
@pytest.mark.parametrize("kind", list(MESSAGES_OF_TERM_TWO))
def test_any_message_with_a_higher_term_updates_the_term_and_makes_a_follower(
    role: str, kind: str
) -> None:
    """Raft paper 5.1: if a server's current term is smaller than another's, it updates its
    term to the larger value; a candidate or leader that finds its term out of date reverts
    to follower at once. This holds for every kind of message."""
    peer = ROLE_SETUPS[role]()
    core = peer.core
    assert core.term == 1

    core.step(MESSAGES_OF_TERM_TWO[kind])

    assert core.term == 2
    assert core.role is Role.FOLLOWER
    assert core.leader == (N2 if kind in FROM_A_LEADER else None)
    assert take_ready(peer).hard_state == HardState(
        term=2, vote=N2 if kind == "request-vote" else None, commit=0
    )


@pytest.mark.parametrize("role", ["pre-candidate", "leader"])
@pytest.mark.parametrize("kind", FROM_A_LEADER)
def test_a_leader_of_a_higher_term_deposes_with_pre_vote_and_check_quorum_on(
    role: str, kind: str
) -> None:
    """Raft paper 5.1 with the thesis extensions on: pre-vote and check-quorum change how
    vote requests are treated, but a leader's message from a later term still makes a
    pre-candidate or a leader a follower of that term."""
    peer = new_peer(hard_state=HardState(term=1), pre_vote=True, check_quorum=True)
    core = peer.core
    if role == "leader":
        core.campaign()  # pre-vote first, then the real election of term 2
        core.step(RequestVoteResponse(term=2, sender=N2, recipient=N1, granted=True, pre_vote=True))
        core.step(vote_from(core, N2))
        assert core.role is Role.LEADER
    else:
        core.campaign()
        assert core.role is Role.PRE_CANDIDATE
    take_ready(peer)
    higher = core.term + 1
    message = (
        AppendEntries(term=higher, sender=N2, recipient=N1, prev_index=0, prev_term=0)
        if kind == "append-entries"
        else heartbeat_from(N2, N1, term=higher)
    )

    core.step(message)

    assert (core.term, core.role, core.leader) == (higher, Role.FOLLOWER, N2)


def test_with_check_quorum_a_vote_request_does_not_depose_a_live_leader() -> None:
    """Raft paper 5.1, with the thesis' check-quorum on (thesis 4.2.3): the one exception to
    adopting a higher term. A follower that heard from its leader within the election
    timeout ignores a vote request of a later term, so a server cut off and back cannot
    depose a healthy leader. (Without check-quorum the same request is adopted: see the
    term-update test above.)"""
    peer = new_peer(hard_state=HardState(term=1), check_quorum=True)
    core = peer.core
    core.step(heartbeat_from(N2, N1, term=1))
    take_ready(peer)
    request = RequestVote(term=2, sender=N3, recipient=N1, last_index=5, last_term=1)

    for _ in range(ELECTION_TICKS - 1):
        core.tick()
        take_ready(peer)
        core.step(request)

        assert (core.term, core.vote, core.leader, core.role) == (1, None, N2, Role.FOLLOWER)
        assert sent(take_ready(peer)) == []


def test_a_pre_vote_request_changes_neither_term_nor_vote() -> None:
    """Raft paper 5.1/5.2, with the thesis' pre-vote on (thesis 9.6): a pre-vote asks about
    the next term without anyone moving to it; the voter answers in that term but keeps its
    own term and its vote."""
    peer = new_peer(hard_state=HardState(term=1, vote=N2), pre_vote=True)
    core = peer.core

    core.step(
        RequestVote(term=2, sender=N3, recipient=N1, last_index=0, last_term=0, pre_vote=True)
    )

    assert (core.term, core.vote) == (1, N2)
    assert sent(take_ready(peer)) == [
        RequestVoteResponse(term=2, sender=N1, recipient=N3, granted=True, pre_vote=True)
    ]


def test_a_message_with_a_stale_term_is_ignored() -> None:
    """Raft paper 5.1: if a server receives a request with a stale term number, it rejects
    the request. (Without pre-vote and check-quorum, like etcd-io/raft, the core ignores it:
    no change to its log, term or leader, and no answer.)"""
    peer = new_peer(entries=log_of_terms(1, 2), hard_state=HardState(term=2))
    core = peer.core
    core.step(heartbeat_from(N2, N1, term=2))
    take_ready(peer)

    core.step(
        AppendEntries(
            term=1,
            sender=N3,
            recipient=N1,
            prev_index=1,
            prev_term=1,
            entries=(Entry(index=2, term=1, data=b"stale"),),
            commit=2,
        )
    )
    core.step(heartbeat_from(N3, N1, term=1, commit=2))
    core.step(RequestVote(term=1, sender=N3, recipient=N1, last_index=9, last_term=1))

    assert (core.term, core.vote, core.leader, core.role) == (2, None, N2, Role.FOLLOWER)
    assert terms_of(core) == [1, 2]
    assert core.log.committed == 0
    assert not core.has_ready()


def test_a_stale_vote_response_does_not_count() -> None:
    """Raft paper 5.1/5.2: a vote granted in an earlier term is stale; a candidate of a
    later term must not count it towards its majority."""
    peer = new_peer()
    core = peer.core
    core.campaign()
    core.campaign()  # the first election went nowhere: a second one, in term 2
    take_ready(peer)
    assert (core.term, core.role) == (2, Role.CANDIDATE)

    core.step(RequestVoteResponse(term=1, sender=N2, recipient=N1, granted=True))
    assert core.status().role is Role.CANDIDATE

    core.step(RequestVoteResponse(term=2, sender=N2, recipient=N1, granted=True))
    assert core.status().role is Role.LEADER


@pytest.mark.parametrize(("pre_vote", "check_quorum"), [(True, False), (False, True)])
def test_a_deposed_leader_steps_down_on_the_answer_to_its_stale_message(
    pre_vote: bool, check_quorum: bool
) -> None:
    """Raft paper 5.1: a server that receives a stale request rejects it, and the stale
    sender, on seeing the current term, steps down. With pre-vote or check-quorum on (where
    the higher term might never reach an old leader otherwise), a stale heartbeat is answered
    with the current term."""
    old_leader_peer = new_peer(N1, pre_vote=pre_vote, check_quorum=check_quorum)
    old_leader = make_leader(old_leader_peer)
    take_ready(old_leader_peer)
    follower_peer = new_peer(
        N2, hard_state=HardState(term=5), pre_vote=pre_vote, check_quorum=check_quorum
    )
    old_leader.tick()
    heartbeats = [
        message for message in sent(take_ready(old_leader_peer)) if message.recipient == N2
    ]
    assert heartbeats
    assert isinstance(heartbeats[0], Heartbeat)

    follower_peer.core.step(heartbeats[0])
    answers = sent(take_ready(follower_peer))

    assert follower_peer.core.term == 5
    assert len(answers) == 1
    assert answers[0].recipient == N1
    assert answers[0].term == 5
    old_leader.step(answers[0])
    assert (old_leader.term, old_leader.role) == (5, Role.FOLLOWER)


# --- 5.2: leader election -----------------------------------------------------------------------


def test_a_server_starts_as_a_follower() -> None:
    """Raft paper 5.2: when servers start up, they begin as followers."""
    core = new_peer().core
    status = core.status()
    assert (status.role, status.term, status.vote, status.leader) == (
        Role.FOLLOWER,
        0,
        None,
        None,
    )


@pytest.mark.parametrize("heartbeat_ticks", [1, 3])
def test_the_leader_broadcasts_heartbeats(heartbeat_ticks: int) -> None:
    """Raft paper 5.2: leaders send periodic heartbeats (AppendEntries carrying no entries)
    to all followers to maintain their authority, every heartbeat interval."""
    peer = new_peer(heartbeat_ticks=heartbeat_ticks)
    core = make_leader(peer)
    take_ready(peer)
    for _ in range(heartbeat_ticks - 1):
        core.tick()
        assert sent(take_ready(peer)) == []

    core.tick()

    assert by_recipient(sent(take_ready(peer))) == [
        heartbeat_from(N1, N2, term=1, commit=0),
        heartbeat_from(N1, N3, term=1, commit=0),
    ]


def test_a_heartbeat_never_carries_a_commit_index_past_the_followers_log() -> None:
    """Raft paper 5.3 and figure 2: a follower sets its commit index to min(leaderCommit,
    index of its last new entry); a heartbeat carries no entries, so the leader tells each
    follower at most what it knows that follower holds (here: n2 has the committed no-op,
    n3 has nothing yet)."""
    peer = new_peer()
    core = make_leader(peer)
    for message in sent(take_ready(peer)):
        if message.recipient == N2:
            core.step(accept(message))
    take_ready(peer)
    assert core.log.committed == 1

    core.tick()

    assert by_recipient(sent(take_ready(peer))) == [
        heartbeat_from(N1, N2, term=1, commit=1),
        heartbeat_from(N1, N3, term=1, commit=0),
    ]


def test_a_new_leader_sends_append_entries_to_every_follower_at_once() -> None:
    """Raft paper 5.2: once a candidate wins an election it becomes leader and sends
    AppendEntries to all of the other servers to establish its authority (here carrying the
    no-op of its term, section 8)."""
    peer = new_peer(size=5)
    core = make_leader(peer)

    messages = by_recipient(take_ready(peer).early_messages)

    noop = Entry(index=1, term=1, kind=EntryKind.NOOP, data=N1.encode())  # names its leader
    assert messages == [
        AppendEntries(
            term=1, sender=N1, recipient=recipient, prev_index=0, prev_term=0, entries=(noop,)
        )
        for recipient in (N2, N3, N4, N5)
    ]
    assert core.log.entries(1, 2) == [noop]


@pytest.mark.parametrize("role", ["follower", "candidate"])
def test_a_timed_out_follower_or_candidate_starts_an_election(role: str) -> None:
    """Raft paper 5.2: a follower that hears nothing over an election timeout begins an
    election: it increments its term, becomes a candidate, votes for itself and sends
    RequestVote to every other server; a candidate that wins no majority times out and starts
    a new election the same way."""
    peer = new_peer(entries=log_of_terms(1), hard_state=HardState(term=1))
    core = peer.core
    if role == "follower":
        core.step(heartbeat_from(N2, N1, term=1))
    else:
        core.campaign()
        core.step(vote_from(core, N2, granted=False))  # undecided: one of two others denied
        assert core.role is Role.CANDIDATE
    take_ready(peer)
    term_before = core.term

    for _ in range(2 * ELECTION_TICKS - 1):
        core.tick()
    ready = take_ready(peer)

    assert core.term == term_before + 1
    assert core.role is Role.CANDIDATE
    assert core.vote == N1
    assert core.votes == {N1: True}
    assert ready.hard_state == HardState(term=term_before + 1, vote=N1, commit=0)
    assert ready.must_sync
    assert ready.early_messages == ()
    assert by_recipient(ready.messages) == [
        RequestVote(term=term_before + 1, sender=N1, recipient=voter, last_index=1, last_term=1)
        for voter in (N2, N3)
    ]


def test_with_pre_vote_a_timed_out_follower_asks_first_without_changing_term() -> None:
    """Raft paper 5.2, with the thesis' pre-vote on: a follower that times out asks whether
    it could win the next term before it increments its own term or votes."""
    peer = new_peer(hard_state=HardState(term=1), pre_vote=True)
    core = peer.core
    core.step(heartbeat_from(N2, N1, term=1))
    take_ready(peer)

    for _ in range(2 * ELECTION_TICKS - 1):
        core.tick()
    ready = take_ready(peer)

    assert (core.term, core.vote, core.role) == (1, None, Role.PRE_CANDIDATE)
    assert by_recipient(sent(ready)) == [
        RequestVote(term=2, sender=N1, recipient=voter, last_index=0, last_term=0, pre_vote=True)
        for voter in (N2, N3)
    ]


ONE_ROUND_ELECTIONS: list[tuple[int, dict[int, bool], Role]] = [
    # A majority of votes wins.
    (1, {}, Role.LEADER),
    (2, {2: True}, Role.LEADER),
    (3, {2: True, 3: True}, Role.LEADER),
    (3, {2: True}, Role.LEADER),
    (4, {2: True, 3: True}, Role.LEADER),
    (4, {2: True, 3: True, 4: False}, Role.LEADER),
    (5, {2: True, 3: True, 4: True, 5: True}, Role.LEADER),
    (5, {2: True, 3: True, 4: True}, Role.LEADER),
    (5, {2: True, 3: True}, Role.LEADER),
    # A majority of denials loses: back to follower.
    (2, {2: False}, Role.FOLLOWER),
    (3, {2: False, 3: False}, Role.FOLLOWER),
    (4, {2: False, 3: False}, Role.FOLLOWER),
    (5, {2: False, 3: False, 4: False, 5: False}, Role.FOLLOWER),
    (5, {2: True, 3: False, 4: False, 5: False}, Role.FOLLOWER),
    # Neither: still a candidate, waiting.
    (2, {}, Role.CANDIDATE),
    (3, {}, Role.CANDIDATE),
    (3, {2: False}, Role.CANDIDATE),
    (4, {2: True}, Role.CANDIDATE),
    (4, {2: False}, Role.CANDIDATE),
    (5, {2: True}, Role.CANDIDATE),
    (5, {2: False, 3: False}, Role.CANDIDATE),
    (5, {}, Role.CANDIDATE),
]


@pytest.mark.parametrize(("size", "votes", "expected"), ONE_ROUND_ELECTIONS)
def test_election_in_one_round_is_won_lost_or_undecided(
    size: int, votes: dict[int, bool], expected: Role
) -> None:
    """Raft paper 5.2: a candidate wins if it receives votes from a majority of the servers
    in the full cluster for the same term; it returns to follower when a majority denies it;
    otherwise neither happens and it remains a candidate."""
    peer = new_peer(size=size)
    core = peer.core
    core.campaign()
    take_ready(peer)

    for voter, granted in votes.items():
        core.step(vote_from(core, NodeId(f"n{voter}"), granted=granted))

    assert core.role is expected
    assert core.term == 1


@pytest.mark.parametrize(
    ("voted_for", "candidate", "granted"),
    [
        (None, N2, True),
        (None, N3, True),
        (N2, N2, True),
        (N3, N3, True),
        (N2, N3, False),
        (N3, N2, False),
    ],
)
def test_a_follower_votes_for_at_most_one_candidate_per_term(
    voted_for: NodeId | None, candidate: NodeId, granted: bool
) -> None:
    """Raft paper 5.2: each server votes for at most one candidate in a given term, on a
    first-come-first-served basis (a repeated request from the same candidate is granted
    again)."""
    peer = new_peer(hard_state=HardState(term=1, vote=voted_for))
    core = peer.core

    core.step(RequestVote(term=1, sender=candidate, recipient=N1, last_index=0, last_term=0))
    ready = take_ready(peer)

    assert ready.early_messages == ()
    assert list(ready.messages) == [
        RequestVoteResponse(term=1, sender=N1, recipient=candidate, granted=granted)
    ]
    assert core.vote == (candidate if granted else voted_for)


def test_a_vote_is_durable_before_it_is_answered() -> None:
    """Raft paper 5.2 and figure 2: first come, first served; votedFor is persistent state,
    updated on stable storage before responding, so a restart cannot vote twice."""
    peer = new_peer(hard_state=HardState(term=1))
    core = peer.core

    core.step(RequestVote(term=1, sender=N2, recipient=N1, last_index=0, last_term=0))
    ready = core.ready()
    assert ready.hard_state == HardState(term=1, vote=N2, commit=0)
    assert ready.must_sync
    assert ready.early_messages == ()
    assert [message.recipient for message in ready.messages] == [N2]
    persist(peer.storage, ready)
    core.advance(ready)

    peer.restart()
    peer.core.step(RequestVote(term=1, sender=N3, recipient=N1, last_index=5, last_term=1))
    assert list(take_ready(peer).messages) == [
        RequestVoteResponse(term=1, sender=N1, recipient=N3, granted=False)
    ]
    assert peer.core.vote == N2


@pytest.mark.parametrize("leader_term", [1, 2])
@pytest.mark.parametrize("kind", FROM_A_LEADER)
def test_a_candidate_falls_back_to_follower_on_a_legitimate_leader(
    leader_term: int, kind: str
) -> None:
    """Raft paper 5.2: while waiting for votes, a candidate that receives AppendEntries from
    a server claiming to be leader, with a term at least as large as its own, recognizes the
    leader as legitimate and returns to follower state."""
    peer = new_peer()
    core = peer.core
    core.campaign()
    assert (core.role, core.term) == (Role.CANDIDATE, 1)

    if kind == "append-entries":
        core.step(
            AppendEntries(term=leader_term, sender=N2, recipient=N1, prev_index=0, prev_term=0)
        )
    else:
        core.step(heartbeat_from(N2, N1, term=leader_term))

    assert (core.role, core.term, core.leader) == (Role.FOLLOWER, leader_term, N2)


def test_a_candidate_ignores_append_entries_from_an_older_term() -> None:
    """Raft paper 5.2: if the term in the RPC is smaller than the candidate's current term,
    the candidate rejects the RPC and continues in candidate state."""
    peer = new_peer(hard_state=HardState(term=3))
    core = peer.core
    core.campaign()
    assert (core.role, core.term) == (Role.CANDIDATE, 4)

    core.step(AppendEntries(term=3, sender=N2, recipient=N1, prev_index=0, prev_term=0))

    assert (core.role, core.term, core.leader) == (Role.CANDIDATE, 4, None)


def ticks_until_campaign(peer: Peer, ticks_max: int) -> int | None:
    """Tick until the peer asks for votes; the number of ticks, or None within ``ticks_max``."""
    for ticks in range(1, ticks_max + 1):
        peer.core.tick()
        if any(isinstance(message, RequestVote) for message in sent(take_ready(peer))):
            return ticks
    return None


def reset_to(peer: Peer, role: str) -> None:
    """Start a fresh election period as a follower of a newer term or as a candidate."""
    core = peer.core
    if role == "follower":
        core.become_follower(core.term + 1, None)
    else:
        core.campaign()
        assert core.role is Role.CANDIDATE
    take_ready(peer)


@pytest.mark.parametrize("role", ["follower", "candidate"])
def test_election_timeouts_are_randomized_over_one_timeout_interval(role: str) -> None:
    """Raft paper 5.2: election timeouts are chosen randomly from a fixed interval (here
    ``[election_ticks, 2 * election_ticks)``), for followers and candidates alike."""
    peer = new_peer(seed=11)
    seen: set[int] = set()
    for _ in range(50 * ELECTION_TICKS):
        reset_to(peer, role)
        ticks = ticks_until_campaign(peer, 2 * ELECTION_TICKS)
        assert ticks is not None, "no election within two election timeouts"
        seen.add(ticks)

    assert seen == set(range(ELECTION_TICKS, 2 * ELECTION_TICKS))


@pytest.mark.parametrize("role", ["follower", "candidate"])
def test_randomized_timeouts_rarely_fire_together(role: str) -> None:
    """Raft paper 5.2: randomized election timeouts spread the servers out so that in most
    cases only a single server times out, which makes split votes rare."""
    rounds = 1000
    peers = [new_peer(node, size=5, seed=3) for node in node_ids(5)]
    conflicts = 0
    for _ in range(rounds):
        for peer in peers:
            reset_to(peer, role)
        timed_out = 0
        for _ in range(2 * ELECTION_TICKS):
            for peer in peers:
                peer.core.tick()
                if any(isinstance(message, RequestVote) for message in sent(take_ready(peer))):
                    timed_out += 1
            if timed_out:
                break
        assert timed_out, "nobody timed out within two election timeouts"
        if timed_out > 1:
            conflicts += 1

    assert conflicts / rounds <= 0.3


# --- 5.3: log replication -----------------------------------------------------------------------


def test_the_leader_appends_a_proposal_and_sends_it_to_every_follower() -> None:
    """Raft paper 5.3: the leader appends the command to its log as a new entry, then issues
    AppendEntries in parallel to each of the other servers; each carries the index and term
    of the entry just before the new ones. The new entry is also written to stable storage."""
    peer = new_peer()
    core = make_leader_with_committed_noop(peer)
    last = core.log.last_index()

    proposal = core.propose([b"some data"])

    assert (proposal.term, proposal.first_index, proposal.last_index) == (1, last + 1, last + 1)
    assert core.log.last_index() == last + 1
    assert core.log.committed == last
    ready = take_ready(peer)
    new_entry = Entry(index=last + 1, term=1, data=b"some data")
    assert ready.entries == (new_entry,)
    assert by_recipient(ready.early_messages) == [
        AppendEntries(
            term=1,
            sender=N1,
            recipient=recipient,
            prev_index=last,
            prev_term=1,
            entries=(new_entry,),
            commit=last,
        )
        for recipient in (N2, N3)
    ]


def test_only_the_leader_accepts_proposals() -> None:
    """Raft paper 5.1/5.3: the leader handles all client requests; a follower redirects the
    client to the leader it knows."""
    peer = new_peer(hard_state=HardState(term=1))
    peer.core.step(heartbeat_from(N2, N1, term=1))

    with pytest.raises(NotLeader) as raised:
        peer.core.propose([b"some data"])

    assert raised.value.leader_id == N2
    assert peer.core.log.last_index() == 0


def test_the_leader_commits_a_replicated_entry_and_tells_the_followers() -> None:
    """Raft paper 5.3: once the entry is safely replicated the leader applies it; it keeps
    the highest index it knows committed and includes it in future AppendEntries so the
    other servers find out."""
    peer = new_peer()
    core = make_leader_with_committed_noop(peer)
    last = core.log.last_index()
    core.propose([b"some data"])

    for message in sent(take_ready(peer)):
        core.step(accept(message))
    ready = take_ready(peer)

    assert core.log.committed == last + 1
    assert ready.committed_entries == (Entry(index=last + 1, term=1, data=b"some data"),)
    messages = by_recipient(ready.early_messages)
    assert [message.recipient for message in messages] == [N2, N3]
    for message in messages:
        assert isinstance(message, AppendEntries)
        assert message.commit == last + 1


ACKNOWLEDGED_COMMITS: list[tuple[int, tuple[int, ...], bool]] = [
    (1, (), True),
    (2, (), False),
    (2, (2,), True),
    (3, (), False),
    (3, (2,), True),
    (3, (2, 3), True),
    (4, (2,), False),
    (4, (2, 3), True),
    (4, (2, 3, 4), True),
    (5, (), False),
    (5, (2,), False),
    (5, (2, 3), True),
    (5, (2, 3, 4), True),
    (5, (2, 3, 4, 5), True),
]


@pytest.mark.parametrize(("size", "acceptors", "committed"), ACKNOWLEDGED_COMMITS)
def test_an_entry_is_committed_once_a_majority_has_it(
    size: int, acceptors: tuple[int, ...], committed: bool
) -> None:
    """Raft paper 5.3: a log entry is committed once the leader that created it has
    replicated it on a majority of the servers (the leader counting itself)."""
    peer = new_peer(size=size)
    core = make_leader_with_committed_noop(peer)
    last = core.log.last_index()
    core.propose([b"some data"])

    for message in sent(take_ready(peer)):
        if int(message.recipient.removeprefix("n")) in acceptors:
            core.step(accept(message))
    take_ready(peer)

    assert (core.log.committed > last) is committed
    assert (peer.applied[-1].index == last + 1) is committed


@pytest.mark.parametrize(
    "previous_log",
    [(), (2,), (1, 2), (1,), (1, 1, 2, 2)],
    ids=["empty", "t2", "t1-t2", "t1", "t1-t1-t2-t2"],
)
def test_committing_an_entry_commits_all_preceding_entries(previous_log: tuple[int, ...]) -> None:
    """Raft paper 5.3: when the leader commits an entry it also commits all preceding
    entries in its log, including entries created by previous leaders, and applies them in
    log order."""
    peer = new_peer(entries=log_of_terms(*previous_log), hard_state=HardState(term=2))
    core = make_leader(peer)
    assert core.term == 3
    core.propose([b"some data"])

    for _ in range(5):
        messages = sent(take_ready(peer))
        if not messages:
            break
        for message in messages:
            if isinstance(message, AppendEntries) and message.entries:
                core.step(accept(message))

    last = len(previous_log)
    assert peer.applied == [
        *log_of_terms(*previous_log),
        Entry(index=last + 1, term=3, kind=EntryKind.NOOP, data=N1.encode()),
        Entry(index=last + 2, term=3, data=b"some data"),
    ]


@pytest.mark.parametrize(
    ("data", "commit"),
    [([b"one"], 1), ([b"one", b"two"], 2), ([b"two", b"one"], 2), ([b"one", b"two"], 1)],
)
def test_a_follower_applies_what_the_leader_says_is_committed(
    data: list[bytes], commit: int
) -> None:
    """Raft paper 5.3: once a follower learns that a log entry is committed, it applies the
    entry to its state machine, in log order (and nothing beyond the commit index)."""
    peer = new_peer(hard_state=HardState(term=1))
    entries = tuple(
        Entry(index=index, term=1, data=command) for index, command in enumerate(data, start=1)
    )

    peer.core.step(
        AppendEntries(
            term=1,
            sender=N2,
            recipient=N1,
            prev_index=0,
            prev_term=0,
            entries=entries,
            commit=commit,
        )
    )
    ready = take_ready(peer)

    assert peer.core.log.committed == commit
    assert ready.committed_entries == entries[:commit]


FOLLOWER_CHECKS: list[tuple[int, int, AppendEntriesResponse]] = [
    # prev_index/prev_term match a committed entry (or the start of the log).
    (0, 0, AppendEntriesResponse(term=2, sender=N1, recipient=N2, index=1)),
    (1, 1, AppendEntriesResponse(term=2, sender=N1, recipient=N2, index=1)),
    # ...or an uncommitted one.
    (2, 2, AppendEntriesResponse(term=2, sender=N1, recipient=N2, index=2)),
    # The entry at prev_index has another term: reject, hint at entry 1 (term 1).
    (
        2,
        1,
        AppendEntriesResponse(
            term=2, sender=N1, recipient=N2, index=2, reject=True, hint_index=1, hint_term=1
        ),
    ),
    # There is no entry at prev_index: reject, hint at our last entry.
    (
        3,
        2,
        AppendEntriesResponse(
            term=2, sender=N1, recipient=N2, index=3, reject=True, hint_index=2, hint_term=2
        ),
    ),
]


@pytest.mark.parametrize(("prev_index", "prev_term", "expected"), FOLLOWER_CHECKS)
def test_a_follower_accepts_appends_only_where_its_log_matches(
    prev_index: int, prev_term: int, expected: AppendEntriesResponse
) -> None:
    """Raft paper 5.3: when sending AppendEntries the leader includes the index and term of
    the entry preceding the new ones; if the follower has no entry there with that term, it
    refuses the new entries, otherwise it accepts (the consistency check)."""
    peer = new_peer(entries=log_of_terms(1, 2), hard_state=HardState(term=2, commit=1))

    peer.core.step(
        AppendEntries(term=2, sender=N2, recipient=N1, prev_index=prev_index, prev_term=prev_term)
    )

    assert list(take_ready(peer).messages) == [expected]
    assert terms_of(peer.core) == [1, 2]


FOLLOWER_APPENDS: list[tuple[int, int, list[Entry], list[int], list[Entry]]] = [
    # (prev_index, prev_term, entries sent, terms of the log after, entries to persist)
    (2, 2, log_of_terms(3, first_index=3), [1, 2, 3], log_of_terms(3, first_index=3)),
    (1, 1, log_of_terms(3, 4, first_index=2), [1, 3, 4], log_of_terms(3, 4, first_index=2)),
    (0, 0, log_of_terms(1), [1, 2], []),
    (0, 0, log_of_terms(3), [3], log_of_terms(3)),
]


@pytest.mark.parametrize(
    ("prev_index", "prev_term", "entries", "expected_terms", "to_persist"), FOLLOWER_APPENDS
)
def test_a_follower_deletes_conflicting_entries_and_appends_the_new_ones(
    prev_index: int,
    prev_term: int,
    entries: list[Entry],
    expected_terms: list[int],
    to_persist: list[Entry],
) -> None:
    """Raft paper 5.3 and figure 2: if an existing entry conflicts with a new one (same
    index, different term), the follower deletes it and all that follow, then appends any new
    entries not already in its log, and writes them to stable storage. Entries it already
    has are left alone."""
    peer = new_peer(entries=log_of_terms(1, 2), hard_state=HardState(term=4))

    peer.core.step(
        AppendEntries(
            term=4,
            sender=N2,
            recipient=N1,
            prev_index=prev_index,
            prev_term=prev_term,
            entries=tuple(entries),
        )
    )

    assert terms_of(peer.core) == expected_terms
    ready = take_ready(peer)
    assert list(ready.entries) == to_persist
    assert [entry.term for entry in peer.storage.entries(1, peer.storage.last_index() + 1)] == (
        expected_terms
    )
    assert list(ready.messages) == [
        AppendEntriesResponse(
            term=4, sender=N1, recipient=N2, index=prev_index + len(entries), reject=False
        )
    ]


FIGURE_7_LEADER = (1, 1, 1, 4, 4, 5, 5, 6, 6, 6)
FIGURE_7_FOLLOWERS = {
    "a": (1, 1, 1, 4, 4, 5, 5, 6, 6),
    "b": (1, 1, 1, 4),
    "c": (1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6),
    "d": (1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7),
    "e": (1, 1, 1, 4, 4, 4, 4),
    "f": (1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3),
}


@pytest.mark.parametrize("follower_log", list(FIGURE_7_FOLLOWERS.values()), ids=list("abcdef"))
def test_the_leader_brings_each_figure_7_follower_to_its_log(
    follower_log: tuple[int, ...],
) -> None:
    """Raft paper 5.3, figure 7: a follower may miss entries (a, b), have extra uncommitted
    entries (c, d) or both (e, f). The leader of term 8 forces its log on the follower: it
    finds the latest entry where the two logs agree, the follower deletes everything after
    it and takes the leader's entries from there on."""
    leader_peer = new_peer(N1, entries=log_of_terms(*FIGURE_7_LEADER), hard_state=HardState(term=8))
    follower_peer = new_peer(N2, entries=log_of_terms(*follower_log), hard_state=HardState(term=7))
    network = Network([leader_peer, follower_peer])
    leader = leader_peer.core

    leader.campaign()
    network.deliver()  # n2 may deny the vote (logs c and d are more up to date)...
    leader.step(vote_from(leader, N3))  # ...and n3, which plays no further part, grants it
    assert (leader.role, leader.term) == (Role.LEADER, 9)
    leader.propose([b"some data"])
    network.deliver()

    follower = follower_peer.core
    assert log_entries(follower) == log_entries(leader)
    assert terms_of(leader) == [*FIGURE_7_LEADER, 9, 9]
    assert leader.log.committed == follower.log.committed == leader.log.last_index()
    assert follower_peer.applied == log_entries(leader)


@pytest.mark.parametrize(("log_terms", "expected_term"), [((1,), 2), ((1, 2), 3)])
def test_a_vote_request_carries_the_candidates_last_log_entry(
    log_terms: tuple[int, ...], expected_term: int
) -> None:
    """Raft paper 5.4.1: the RequestVote RPC includes information about the candidate's log
    (the index and term of its last entry), and is sent to all the other servers."""
    peer = new_peer()
    core = peer.core
    core.step(
        AppendEntries(
            term=expected_term - 1,
            sender=N2,
            recipient=N1,
            prev_index=0,
            prev_term=0,
            entries=tuple(log_of_terms(*log_terms)),
        )
    )
    take_ready(peer)

    for _ in range(2 * ELECTION_TICKS - 1):
        core.tick()

    assert by_recipient(take_ready(peer).messages) == [
        RequestVote(
            term=expected_term,
            sender=N1,
            recipient=voter,
            last_index=len(log_terms),
            last_term=log_terms[-1],
        )
        for voter in (N2, N3)
    ]


VOTER_CHECKS: list[tuple[tuple[int, ...], int, int, bool]] = [
    # (voter's log terms, candidate's last_term, candidate's last_index, granted)
    # Same last term: the longer log (or an equal one) is at least as up to date.
    ((1,), 1, 1, True),
    ((1,), 1, 2, True),
    ((1, 1), 1, 1, False),
    # The candidate's last term is later: it wins whatever the lengths.
    ((1,), 2, 1, True),
    ((1,), 2, 2, True),
    ((1, 1), 2, 1, True),
    # The voter's last term is later: denied whatever the lengths.
    ((2,), 1, 1, False),
    ((2,), 1, 2, False),
    ((2, 2), 1, 1, False),
    ((1, 2), 1, 5, False),
    # An empty log votes for anyone; an empty candidate convinces no one with a log.
    ((), 0, 0, True),
    ((1,), 0, 0, False),
]


@pytest.mark.parametrize(("voter_log", "last_term", "last_index", "granted"), VOTER_CHECKS)
def test_a_voter_denies_a_candidate_whose_log_is_less_up_to_date(
    voter_log: tuple[int, ...], last_term: int, last_index: int, granted: bool
) -> None:
    """Raft paper 5.4.1: the voter denies its vote if its own log is more up to date than
    the candidate's: a later last term wins, and with equal last terms the longer log."""
    peer = new_peer(size=2, entries=log_of_terms(*voter_log))

    peer.core.step(
        RequestVote(term=3, sender=N2, recipient=N1, last_index=last_index, last_term=last_term)
    )

    assert list(take_ready(peer).messages) == [
        RequestVoteResponse(term=3, sender=N1, recipient=N2, granted=granted)
    ]
    assert peer.core.vote == (N2 if granted else None)


# --- 5.4.2 and figure 8: committing entries from previous terms ---------------------------------


@pytest.mark.parametrize(("acknowledged", "expected_commit"), [(1, 0), (2, 0), (3, 3)])
def test_the_leader_commits_by_counting_replicas_only_entries_of_its_term(
    acknowledged: int, expected_commit: int
) -> None:
    """Raft paper 5.4.2: Raft never commits log entries from previous terms by counting
    replicas; only entries from the leader's current term are committed that way."""
    peer = new_peer(size=2, entries=log_of_terms(1, 2), hard_state=HardState(term=2))
    core = make_leader(peer)
    take_ready(peer)
    assert terms_of(core) == [1, 2, 3]

    core.step(AppendEntriesResponse(term=core.term, sender=N2, recipient=N1, index=acknowledged))
    take_ready(peer)

    assert core.status().peers[N2].match == acknowledged
    assert core.log.committed == expected_commit


def entries_before_term(term: int) -> Callable[[Message], Message]:
    """Rewrite a leader's AppendEntries to carry only its entries of terms before ``term``,
    as if it had sent those alone so far."""

    def rewrite(message: Message) -> Message:
        if isinstance(message, AppendEntries):
            kept = tuple(entry for entry in message.entries if entry.term < term)
            return AppendEntries(
                term=message.term,
                sender=message.sender,
                recipient=message.recipient,
                prev_index=message.prev_index,
                prev_term=message.prev_term,
                entries=kept,
                commit=message.commit,
            )
        return message

    return rewrite


def not_involving(*nodes: NodeId) -> Callable[[Message], bool]:
    return lambda message: message.sender not in nodes and message.recipient not in nodes


def campaign_until_leader(
    network: Network,
    node: NodeId,
    *,
    allow: Callable[[Message], bool] = lambda message: True,
    rewrite: Callable[[Message], Message] = lambda message: message,
    attempts: int = 3,
) -> RaftCore:
    """Campaign (again, in a new term, while undecided) until ``node`` leads."""
    core = network.core(node)
    for _ in range(attempts):
        core.campaign()
        network.deliver(allow=allow, rewrite=rewrite)
        if core.role is Role.LEADER:
            return core
    raise AssertionError(f"{node} did not win: {core.status()}")


def figure_8_situation_c() -> Network:
    """Figure 8 up to (c): S1 leads term 4 and has replicated index 2 (term 2) to a
    majority (S1, S2, S3), but nothing of term 4 yet; S5 holds index 2 of term 3."""
    network = Network([new_peer(node, size=5) for node in node_ids(5)])
    # Index 1 (term 1) everywhere and committed.
    campaign_until_leader(network, N1, attempts=1)
    assert all(network.core(node).log.committed == 1 for node in node_ids(5))

    # (a) S1 leads term 2 and replicates index 2 (its no-op) to S2 only.
    network.restart(N1)
    s1 = campaign_until_leader(
        network,
        N1,
        allow=lambda message: (
            not (isinstance(message, AppendEntries) and message.recipient in (N3, N4, N5))
        ),
        attempts=1,
    )
    assert s1.term == 2
    assert terms_of(network.core(N2)) == [1, 2]
    assert s1.log.committed == 1

    # (b) S1 crashes; S5 is elected in term 3 by S3, S4 and itself, and appends index 2 of
    # term 3, then crashes before replicating it.
    network.crash(N1)
    s5 = campaign_until_leader(
        network, N5, allow=lambda message: not isinstance(message, AppendEntries), attempts=1
    )
    assert s5.term == 3
    assert terms_of(s5) == [1, 3]
    network.crash(N5)

    # (c) S1 restarts and is elected in term 4 (by S2 and S3: in term 3 S3 had voted for
    # S5), then replicates index 2 to S3; its own entry of term 4 reaches no one yet. S4 is
    # out of reach.
    network.restart(N1)
    s1 = campaign_until_leader(network, N1, allow=not_involving(N4), rewrite=entries_before_term(4))
    assert s1.term == 4
    return network


def test_figure_8_an_entry_of_an_earlier_term_on_a_majority_is_not_committed() -> None:
    """Raft paper 5.4.2, figure 8 (c)-(d): an entry of an earlier term stored on a majority
    is not committed by the new leader; rightly, since S5 can still be elected (its last term
    3 beats their 2) and overwrite it everywhere. Had S1 committed and applied it, a committed
    entry would be lost."""
    network = figure_8_situation_c()
    s1 = network.core(N1)
    status = s1.status()
    assert terms_of(s1) == [1, 2, 4]
    assert (status.peers[N2].match, status.peers[N3].match) == (2, 2)
    assert s1.log.committed == 1
    for node in (N1, N2, N3):
        assert terms_of(network.core(node))[:2] == [1, 2]

    # (d) S1 crashes; S5 restarts, wins with the votes of S2, S3 and S4, and overwrites
    # index 2 with its own entry of term 3 everywhere.
    network.crash(N1)
    network.restart(N5)
    s5 = campaign_until_leader(network, N5)
    network.deliver()

    assert s5.log.committed == 3
    for node in (N2, N3, N4, N5):
        assert terms_of(network.core(node)) == [1, 3, s5.term]
    for node in node_ids(5):
        applied = network.peers[node].applied
        assert (2, 2) not in [(entry.index, entry.term) for entry in applied], node


def test_figure_8_an_entry_of_the_current_term_commits_the_earlier_ones() -> None:
    """Raft paper 5.4.2, figure 8 (e): once the leader replicates an entry of its own term
    to a majority, that entry and every entry before it (index 2, of term 2) are committed,
    and S5 can no longer be elected: the majority's logs are more up to date than its own."""
    network = figure_8_situation_c()
    s1 = network.core(N1)

    s1.tick()  # a heartbeat: its answers show the followers lack index 3, which S1 resends
    network.deliver(allow=not_involving(N4))

    assert s1.log.committed == 3
    assert [entry.term for entry in network.peers[N1].applied] == [1, 2, 4]

    network.crash(N1)
    network.restart(N5)
    s5 = network.core(N5)
    for _ in range(3):
        s5.campaign()
        network.deliver()
        assert s5.role is not Role.LEADER
    for node in (N2, N3):
        assert terms_of(network.core(node)) == [1, 2, 4]
