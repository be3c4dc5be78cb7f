"""Scenario tests for the pure Raft core (``raftq.raft``), driven through ``tests.raft_cluster``.

Each test names the part of the Raft thesis (Ongaro 2014), the Raft paper (Ongaro & Ousterhout
2014) or the etcd-io/raft behaviour it follows. Sections: pre-vote, check-quorum and the leader
lease, chunked snapshots, membership changes, leadership transfer, ReadIndex, and the leader's
proposal rules (redirects, the uncommitted-bytes bound, fast log back-off, self-counting only
after persistence).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import pytest

from raftq.errors import Busy, MembershipChangeError, NotLeader
from raftq.ids import NodeId
from raftq.raft.core import LEAVING_ELECTION_TIMEOUTS, RaftCore
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
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raftq.raft.ready import ReadState, Role
from raftq.raft.replication import round_context
from raftq.raft.types import Entry, EntryKind, HardState, Membership, SnapshotMeta
from tests.raft_cluster import Cluster, Peer, persist

M = TypeVar("M", bound=Message)

ELECTION_TICKS = 10
"""The harness default (``RaftConfig.election_ticks``); heartbeats go out every tick."""


# --- helpers ------------------------------------------------------------------------------------


def node(name: str) -> NodeId:
    return NodeId(name)


def voters(*names: str) -> Membership:
    return Membership(voters=tuple(sorted(node(name) for name in names)))


class Recorder:
    """A cluster filter that drops nothing and remembers messages.

    ``delivered_only``: keep only messages every other filter lets through (what the
    recipient actually stepped); otherwise keep everything that was sent.
    """

    def __init__(self, cluster: Cluster, *, delivered_only: bool = True) -> None:
        self.cluster = cluster
        self.delivered_only = delivered_only
        self.messages: list[Message] = []
        # The cluster stops at the first filter that drops a message: to see every message
        # sent, be the first filter asked.
        if delivered_only:
            cluster.filters.append(self)
        else:
            cluster.filters.insert(0, self)

    def __call__(self, message: Message) -> bool:
        others = [check for check in self.cluster.filters if not isinstance(check, Recorder)]
        if not self.delivered_only or all(check(message) for check in others):
            self.messages.append(message)
        return True

    def of(
        self, kind: type[M], *, sender: str | None = None, recipient: str | None = None
    ) -> list[M]:
        return [
            message
            for message in self.messages
            if isinstance(message, kind)
            and (sender is None or message.sender == sender)
            and (recipient is None or message.recipient == recipient)
        ]

    def clear(self) -> None:
        self.messages.clear()


def heal(cluster: Cluster) -> None:
    """Remove every partition and drop filter, but keep the recorders."""
    cluster.filters = [check for check in cluster.filters if isinstance(check, Recorder)]


def drop(cluster: Cluster, predicate: Callable[[Message], bool]) -> Callable[[Message], bool]:
    """Drop every message for which ``predicate`` holds; returns the filter (to remove it)."""

    def check(message: Message) -> bool:
        return not predicate(message)

    cluster.filters.append(check)
    return check


def drop_once(cluster: Cluster, predicate: Callable[[Message], bool]) -> list[Message]:
    """Drop the first message for which ``predicate`` holds; returns the dropped ones."""
    dropped: list[Message] = []

    def check(message: Message) -> bool:
        if not dropped and predicate(message):
            dropped.append(message)
            return False
        return True

    cluster.filters.append(check)
    return dropped


def tick_until(cluster: Cluster, condition: Callable[[], bool], ticks_max: int) -> int:
    """Tick the whole cluster until ``condition`` holds; the number of ticks it took."""
    for elapsed in range(1, ticks_max + 1):
        cluster.tick()
        if condition():
            return elapsed
    raise AssertionError(f"condition still false after {ticks_max} ticks")


def leader_ids(cluster: Cluster) -> list[str]:
    return sorted(core.id for core in cluster.leaders())


def step_all(cluster: Cluster, messages: Sequence[Message]) -> None:
    """Hand messages straight to their recipients, bypassing the filters."""
    for message in messages:
        cluster.peers[message.recipient].core.step(message)


def log_of(peer: Peer) -> list[Entry]:
    storage = peer.storage
    return storage.entries(storage.first_index(), storage.last_index() + 1)


def snapshot_data(peer: Peer) -> bytes:
    storage = peer.storage
    meta = storage.snapshot_meta
    return storage.snapshot_chunk(meta, 0, storage.snapshot_size(meta))


def preload(peer: Peer, terms: Sequence[int], *, commit: int) -> None:
    """Give ``peer`` a persisted log with these entry terms, then restart it from it."""
    entries = [
        Entry(index=index, term=term, data=f"t{term}-i{index}".encode())
        for index, term in enumerate(terms, start=1)
    ]
    peer.storage.append(entries)
    peer.storage.hard_state = HardState(term=max(terms), commit=commit)
    peer.restart()


def compact_at_applied(cluster: Cluster, name: str, data: bytes) -> SnapshotMeta:
    """The application on ``name`` snapshots at its applied index; the log is compacted."""
    core = cluster[name]
    storage = cluster.peers[node(name)].storage
    applied = core.status().applied
    meta = SnapshotMeta(index=applied, term=storage.term(applied), membership=core.membership)
    storage.create_snapshot(meta, data)
    return meta


# --- 1. pre-vote (thesis 9.6) -------------------------------------------------------------------


def test_rejoining_node_does_not_depose_the_leader_or_bump_terms() -> None:
    """Thesis 9.6: a node partitioned away keeps timing out, but with pre-vote it cannot win
    a pre-election, so its term never grows; when it rejoins, the leader and every term are
    unchanged (etcd-io/raft TestPreVoteWithSplitVote / TestDisruptiveFollowerPreVote)."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.propose("n1", b"before")
    term = cluster["n1"].status().term
    cluster.isolate("n3")
    for _ in range(5 * ELECTION_TICKS):
        cluster.tick()
    assert cluster["n3"].status().term == term
    assert cluster["n3"].status().role is Role.PRE_CANDIDATE
    heal(cluster)
    cluster.tick(3 * ELECTION_TICKS)
    assert leader_ids(cluster) == ["n1"]
    assert {peer.core.status().term for peer in cluster.peers.values()} == {term}
    assert cluster["n3"].status().leader == "n1"


def test_pre_vote_alone_protects_a_leader_whose_log_moved_on() -> None:
    """Thesis 9.6 (pre-vote without check-quorum): the rejoining node asks "would you vote
    for me?" and is refused because the majority's log moved on while it was away, so it
    never starts a real election that would depose the leader."""
    cluster = Cluster(3, check_quorum=False)
    cluster.elect("n1")
    term = cluster["n1"].status().term
    cluster.isolate("n3")
    cluster.propose("n1", b"while n3 was away")
    for _ in range(3 * ELECTION_TICKS):
        cluster.tick()
    recorder = Recorder(cluster)
    heal(cluster)
    cluster["n3"].campaign()  # a pre-election at once, before a heartbeat reaches it
    cluster.deliver()
    answers = recorder.of(RequestVoteResponse, recipient="n3")
    assert answers, "the majority answered the pre-vote"
    assert all(answer.pre_vote and not answer.granted for answer in answers)
    assert not [vote for vote in recorder.of(RequestVote, sender="n3") if not vote.pre_vote]
    cluster.tick(2)
    assert leader_ids(cluster) == ["n1"]
    assert {peer.core.status().term for peer in cluster.peers.values()} == {term}


def test_pre_vote_changes_neither_term_nor_vote_of_the_voter() -> None:
    """Thesis 9.6 / etcd-io/raft: granting a pre-vote answers in the candidate's next term
    but the voter keeps its own term and vote, and persists nothing for it."""
    cluster = Cluster(3, check_quorum=False)  # no lease: n2 answers the pre-vote at once
    cluster.elect("n1")
    before = cluster["n2"].status()
    hard_state = cluster.peers[node("n2")].storage.hard_state
    cluster["n2"].step(
        RequestVote(
            term=before.term + 1,
            sender=node("n3"),
            recipient=node("n2"),
            last_index=before.last_index,
            last_term=before.term,
            pre_vote=True,
        )
    )
    ready = cluster["n2"].ready()
    cluster["n2"].advance(ready)
    (answer,) = ready.messages
    assert isinstance(answer, RequestVoteResponse)
    assert answer.granted
    assert answer.pre_vote
    assert answer.term == before.term + 1
    assert ready.hard_state is None
    after = cluster["n2"].status()
    assert (after.term, after.vote, after.leader) == (before.term, before.vote, before.leader)
    assert cluster.peers[node("n2")].storage.hard_state == hard_state


def test_pre_candidate_keeps_its_own_term_and_vote() -> None:
    """Thesis 9.6: becoming a pre-candidate increments nothing and persists nothing; only
    winning the pre-election leads to a term change (etcd-io/raft becomePreCandidate)."""
    cluster = Cluster(3)
    cluster.elect("n1")
    before = cluster["n3"].status()
    persisted = cluster.peers[node("n3")].storage.hard_state
    cluster.isolate("n3")
    tick_until(cluster, lambda: cluster["n3"].status().role is Role.PRE_CANDIDATE, 3 * 10)
    cluster["n3"].campaign()
    cluster.deliver()
    after = cluster["n3"].status()
    assert (after.term, after.vote) == (before.term, before.vote)
    assert cluster.peers[node("n3")].storage.hard_state == persisted


def test_pre_candidate_that_wins_runs_a_real_election_in_the_next_term() -> None:
    """Thesis 9.6: after a majority grants the pre-vote for term T+1, the node becomes a
    candidate for T+1 (exactly one increment) and wins; no node goes beyond T+1."""
    cluster = Cluster(3)
    cluster.elect("n1")
    term = cluster["n1"].status().term
    recorder = Recorder(cluster)
    cluster.isolate("n1")
    tick_until(cluster, lambda: bool(set(leader_ids(cluster)) - {"n1"}), 6 * ELECTION_TICKS)
    (winner,) = set(leader_ids(cluster)) - {"n1"}
    votes = recorder.of(RequestVote, sender=winner)
    pre_votes = [vote for vote in votes if vote.pre_vote]
    real_votes = [vote for vote in votes if not vote.pre_vote]
    assert pre_votes
    assert real_votes
    assert votes.index(pre_votes[0]) < votes.index(real_votes[0])
    assert {vote.term for vote in real_votes} == {term + 1}
    assert cluster[winner].status().term == term + 1
    assert cluster["n2"].status().term == cluster["n3"].status().term == term + 1


def test_real_election_after_pre_vote_does_not_claim_a_leader_transfer() -> None:
    """etcd-io/raft stepCandidate: a won pre-election continues with
    ``campaign(campaignElection)``, not ``campaignTransfer``. Only a TimeoutNow from the
    leader may ask voters to waive their lease (thesis 3.10, 4.2.3); the real RequestVote after
    a pre-vote must therefore not carry ``transfer``."""
    cluster = Cluster(3)
    cluster.elect("n1")
    recorder = Recorder(cluster)
    cluster.isolate("n1")
    tick_until(cluster, lambda: bool(set(leader_ids(cluster)) - {"n1"}), 6 * ELECTION_TICKS)
    real_votes = [vote for vote in recorder.of(RequestVote) if not vote.pre_vote]
    assert real_votes
    assert not [vote for vote in real_votes if vote.transfer]


def test_pre_vote_refused_by_a_node_with_a_more_up_to_date_log() -> None:
    """Thesis 9.6 with 5.4.1: a pre-vote is granted only if the candidate's log is at least
    as up to date; a node that missed entries is refused and its term does not move, and
    the node with the longer log wins the next election."""
    cluster = Cluster(3, check_quorum=False)  # no lease: n2 answers pre-votes directly
    cluster.elect("n1")
    cluster.isolate("n3")
    cluster.propose("n1", b"n3 misses this")
    term = cluster["n1"].status().term
    heal(cluster)
    cluster.partition(["n1"], ["n2", "n3"])  # the leader is gone; n2 is ahead of n3
    recorder = Recorder(cluster)
    cluster["n3"].campaign()
    cluster.deliver()
    (answer,) = recorder.of(RequestVoteResponse, sender="n2", recipient="n3")
    assert answer.pre_vote
    assert not answer.granted
    assert cluster["n3"].status().term == term
    assert cluster["n2"].status().term == term
    cluster["n2"].campaign()
    cluster.deliver()
    assert cluster["n2"].status().role is Role.LEADER
    assert cluster["n2"].status().term == term + 1


# --- 2. check-quorum and the leader lease (thesis 6.2, 4.2.3) -----------------------------------


def test_leader_cut_off_from_the_majority_steps_down() -> None:
    """Thesis 6.2 (check-quorum): a leader that has not heard from a majority for a whole
    election timeout steps down (etcd-io/raft MsgCheckQuorum). One timeout may already be
    running when the partition starts, so it takes at most two; its term is unchanged."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.tick(3)
    term = cluster["n1"].status().term
    cluster.isolate("n1")
    elapsed = tick_until(
        cluster, lambda: cluster["n1"].status().role is not Role.LEADER, 2 * ELECTION_TICKS
    )
    assert elapsed <= 2 * ELECTION_TICKS
    assert cluster["n1"].status().term == term
    assert cluster["n1"].status().leader is None


def test_leader_with_a_majority_keeps_leading() -> None:
    """Thesis 6.2: check-quorum only counts voters heard from; one follower down of three
    still leaves a majority, so the leader stays for many election timeouts."""
    cluster = Cluster(3)
    cluster.elect("n1")
    term = cluster["n1"].status().term
    cluster.isolate("n3")
    for _ in range(5 * ELECTION_TICKS):
        cluster.tick()
        assert cluster["n1"].status().role is Role.LEADER
    assert cluster["n1"].status().term == term
    assert cluster["n2"].status().term == term


def test_follower_in_lease_ignores_vote_requests() -> None:
    """Thesis 4.2.3: a server that heard from a current leader within the minimum election
    timeout neither updates its term nor grants its vote (etcd-io/raft ``inLease``); the
    request is dropped without an answer."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.tick()
    before = cluster["n2"].status()
    for pre_vote in (True, False):
        cluster["n2"].step(
            RequestVote(
                term=before.term + 5,
                sender=node("n3"),
                recipient=node("n2"),
                last_index=before.last_index + 10,
                last_term=before.term + 4,
                pre_vote=pre_vote,
            )
        )
    assert cluster.peers[node("n2")].handle_ready() == []
    after = cluster["n2"].status()
    assert (after.term, after.vote, after.leader) == (before.term, before.vote, "n1")


def test_follower_in_lease_grants_a_transfer_vote() -> None:
    """Thesis 3.10 / etcd-io/raft campaignTransfer: a RequestVote sent because the leader
    handed over (``transfer``) is not subject to the lease: the follower adopts the term and
    votes."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.tick()
    before = cluster["n2"].status()
    cluster["n2"].step(
        RequestVote(
            term=before.term + 1,
            sender=node("n3"),
            recipient=node("n2"),
            last_index=before.last_index,
            last_term=before.term,
            transfer=True,
        )
    )
    messages = cluster.peers[node("n2")].handle_ready()
    (answer,) = messages
    assert isinstance(answer, RequestVoteResponse)
    assert answer.granted
    assert not answer.pre_vote
    after = cluster["n2"].status()
    assert (after.term, after.vote) == (before.term + 1, "n3")


def test_voter_in_lease_ignores_the_real_election_after_a_pre_vote() -> None:
    """Thesis 4.2.3 and 9.6, etcd-io/raft (the real vote after a pre-vote is a plain
    ``campaignElection``): in five nodes, the leader n1 still reaches n5 only. n2..n4 time out
    and one wins the pre-vote among them; n5, which hears from n1 every tick, must not grant
    the real vote either (it is still in its leader's lease)."""
    cluster = Cluster(5)
    cluster.elect("n1")
    cluster.tick()
    recorder = Recorder(cluster)
    cut = {"n2", "n3", "n4"}
    drop(cluster, lambda m: "n1" in (m.sender, m.recipient) and bool({m.sender, m.recipient} & cut))

    def real_election_started() -> bool:
        return any(not vote.pre_vote for vote in recorder.of(RequestVote))

    tick_until(cluster, real_election_started, 2 * ELECTION_TICKS)
    n5_answers = [
        answer
        for answer in recorder.of(RequestVoteResponse, sender="n5")
        if not answer.pre_vote and answer.granted
    ]
    assert n5_answers == []


def test_stale_leader_is_told_its_term_is_over() -> None:
    """etcd-io/raft (with pre-vote or check-quorum a deposed leader would never see the new
    term otherwise): a heartbeat from an older term is answered with the current term, and
    the stale leader steps down and follows."""
    cluster = Cluster(3, check_quorum=False)  # the old leader does not step down by itself
    cluster.elect("n1")
    old_term = cluster["n1"].status().term
    cluster.isolate("n1")
    cluster["n2"].campaign()
    cluster.deliver()
    assert cluster["n2"].status().role is Role.LEADER
    assert cluster["n1"].status().role is Role.LEADER  # still believes it leads
    recorder = Recorder(cluster)
    heal(cluster)
    cluster["n1"].tick()  # only the stale leader speaks: a heartbeat of the old term
    cluster.deliver()
    answers = recorder.of(AppendEntriesResponse, recipient="n1")
    assert answers
    assert all(answer.term == old_term + 1 for answer in answers)
    status = cluster["n1"].status()
    assert status.role is Role.FOLLOWER
    assert status.term == old_term + 1
    cluster.tick()
    assert leader_ids(cluster) == ["n2"]
    assert cluster["n1"].status().leader == "n2"


# --- 3. snapshots (paper 7, figure 13; etcd-io/raft) --------------------------------------------

SNAPSHOT_DATA = b"the-state-machine-at-the-snapshot/" * 5  # 170 bytes
CHUNK = 8


def lagging_follower_cluster() -> tuple[Cluster, SnapshotMeta]:
    """n3 misses twenty entries; then the leader n1 compacts its log past all of them."""
    cluster = Cluster(3, snapshot_chunk_bytes=CHUNK)
    cluster.elect("n1")
    cluster.isolate("n3")
    for number in range(20):
        cluster.propose("n1", f"command-{number}".encode())
    meta = compact_at_applied(cluster, "n1", SNAPSHOT_DATA)
    assert cluster.peers[node("n1")].storage.first_index() > cluster["n3"].status().last_index
    return cluster, meta


def test_far_behind_follower_gets_the_snapshot_in_chunks_then_replicates() -> None:
    """Paper 7 / figure 13 (InstallSnapshot in chunks at ``offset``): the follower needs
    entries the leader compacted, so it gets the snapshot, one chunk of
    ``snapshot_chunk_bytes`` at a time, installs it, and then replicates normally."""
    cluster, meta = lagging_follower_cluster()
    recorder = Recorder(cluster)
    heal(cluster)
    cluster.tick()
    chunks = recorder.of(InstallSnapshot, recipient="n3")
    assert len(chunks) == math.ceil(len(SNAPSHOT_DATA) / CHUNK)
    assert [chunk.offset for chunk in chunks] == list(range(0, len(SNAPSHOT_DATA), CHUNK))
    assert all(len(chunk.data) <= CHUNK for chunk in chunks)
    follower = cluster.peers[node("n3")]
    assert follower.snapshots_installed == 1
    assert follower.storage.snapshot_meta == meta
    assert snapshot_data(follower) == SNAPSHOT_DATA
    cluster.propose("n1", b"after-the-snapshot")
    assert follower.commands() == [b"after-the-snapshot"]
    assert cluster["n3"].status().commit == cluster["n1"].status().commit
    assert log_of(follower)[-1] == log_of(cluster.peers[node("n1")])[-1]
    assert cluster["n1"].status().peers[node("n3")].state == "replicate"


def test_a_follower_that_installed_a_replaced_snapshot_gets_the_newer_one() -> None:
    """The leader compacts again while a follower is still receiving the older snapshot (the
    durable log keeps the previous snapshot readable, so the transfer completes). Once the
    follower holds it, the leader probes, finds its log compacted past it, and sends the newer
    snapshot; then replication resumes. Before the fix the leader stayed in SNAPSHOT and sent
    the old snapshot again forever (found by the simulator: seed 12094 of the 12000 sweep)."""
    cluster, first = lagging_follower_cluster()
    leader = cluster.peers[node("n1")]
    kept = {first: SNAPSHOT_DATA}  # like DurableLog: the previous snapshot stays readable
    newest_chunk, newest_size = leader.storage.snapshot_chunk, leader.storage.snapshot_size

    def chunk(meta: SnapshotMeta, offset: int, length: int) -> bytes:
        if meta in kept:
            return kept[meta][offset : offset + length]
        return newest_chunk(meta, offset, length)

    def size(meta: SnapshotMeta) -> int:
        return len(kept[meta]) if meta in kept else newest_size(meta)

    leader.storage.snapshot_chunk = chunk  # type: ignore[method-assign]
    leader.storage.snapshot_size = size  # type: ignore[method-assign]
    heal(cluster)
    stalled = drop(cluster, lambda m: isinstance(m, InstallSnapshot) and m.offset >= 3 * CHUNK)
    cluster.tick()  # the transfer of the first snapshot starts, and stalls
    for number in range(5):
        cluster.propose("n1", f"more-{number}".encode())
    second = compact_at_applied(cluster, "n1", SNAPSHOT_DATA + b"and-more")
    assert second.index > first.index
    cluster.filters.remove(stalled)
    follower = cluster.peers[node("n3")]
    tick_until(cluster, lambda: follower.storage.snapshot_meta == second, 4 * ELECTION_TICKS)
    assert follower.snapshots_installed == 2  # the first, then the newer one
    cluster.propose("n1", b"after-both")
    assert follower.commands()[-1] == b"after-both"
    assert cluster["n3"].status().commit == cluster["n1"].status().commit
    assert cluster["n1"].status().peers[node("n3")].state == "replicate"


def test_lost_chunk_is_resent_and_the_transfer_resumes_at_the_acknowledged_offset() -> None:
    """Paper 7 (chunks by offset) / etcd-io/raft progress SNAPSHOT: a lost chunk is sent
    again after the follower stays silent, from the last acknowledged offset; the transfer
    never restarts from zero."""
    cluster, meta = lagging_follower_cluster()
    sent = Recorder(cluster, delivered_only=False)
    heal(cluster)
    lost_offset = 3 * CHUNK
    dropped = drop_once(
        cluster, lambda m: isinstance(m, InstallSnapshot) and m.offset == lost_offset
    )
    cluster.tick()
    assert dropped
    follower = cluster.peers[node("n3")]
    assert follower.snapshots_installed == 0
    tick_until(cluster, lambda: follower.snapshots_installed == 1, 2 * ELECTION_TICKS)
    offsets = [chunk.offset for chunk in sent.of(InstallSnapshot, recipient="n3")]
    assert offsets.count(0) == 1
    assert offsets.count(lost_offset) == 2
    first_resend = offsets.index(lost_offset) + 1
    assert offsets[first_resend] == lost_offset
    assert offsets[first_resend:] == list(range(lost_offset, len(SNAPSHOT_DATA), CHUNK))
    assert snapshot_data(follower) == SNAPSHOT_DATA
    assert follower.storage.snapshot_meta == meta


def test_lost_acknowledgement_is_recovered_without_restarting_the_transfer() -> None:
    """Paper 7: when a chunk's acknowledgement is lost, the leader resends the chunk, the
    follower ignores the duplicate and acknowledges what it holds, and the transfer goes on
    from there (never from offset zero)."""
    cluster, meta = lagging_follower_cluster()
    sent = Recorder(cluster, delivered_only=False)
    heal(cluster)
    drop_once(
        cluster,
        lambda m: isinstance(m, InstallSnapshotResponse) and m.received_bytes == 4 * CHUNK,
    )
    cluster.tick()
    follower = cluster.peers[node("n3")]
    tick_until(cluster, lambda: follower.snapshots_installed == 1, 2 * ELECTION_TICKS)
    offsets = [chunk.offset for chunk in sent.of(InstallSnapshot, recipient="n3")]
    assert offsets.count(0) == 1
    assert min(offsets[offsets.index(3 * CHUNK) + 1 :]) >= 3 * CHUNK
    assert snapshot_data(follower) == SNAPSHOT_DATA
    assert follower.storage.snapshot_meta == meta


def test_follower_discards_a_stale_snapshot() -> None:
    """etcd-io/raft ``restore`` (index <= committed: ignored) / paper figure 13: a snapshot
    at or behind the follower's commit index is dropped; the follower answers with its
    commit index and keeps its log."""
    cluster = Cluster(3)
    cluster.elect("n1")
    for number in range(5):
        cluster.propose("n1", f"command-{number}".encode())
    follower = cluster.peers[node("n2")]
    status = cluster["n2"].status()
    log_before = log_of(follower)
    stale = SnapshotMeta(
        index=status.commit - 2,
        term=follower.storage.term(status.commit - 2),
        membership=status.membership,
    )
    data = b"an old snapshot"
    cluster["n2"].step(
        InstallSnapshot(
            term=status.term,
            sender=node("n1"),
            recipient=node("n2"),
            meta=stale,
            offset=0,
            total_bytes=len(data),
            data=data,
        )
    )
    ready = cluster["n2"].ready()
    cluster["n2"].advance(ready)
    assert ready.snapshot is None
    (answer,) = ready.messages
    assert isinstance(answer, AppendEntriesResponse)
    assert not answer.reject
    assert answer.index == status.commit
    assert follower.storage.snapshot_meta.index == 0
    assert log_of(follower) == log_before
    assert cluster["n2"].status().commit == status.commit


def test_follower_discards_a_snapshot_older_than_its_own() -> None:
    """etcd-io/raft ``restore`` (index <= committed: ignored): a delayed snapshot from
    before the follower's own compaction point must not roll its state back, even though
    the follower no longer holds the entry at the stale snapshot's index to compare terms."""
    cluster = Cluster(3)
    cluster.elect("n1")
    for number in range(6):
        cluster.propose("n1", f"command-{number}".encode())
    follower = cluster.peers[node("n2")]
    status = cluster["n2"].status()
    own = compact_at_applied(cluster, "n2", b"the follower's own snapshot")
    stale = SnapshotMeta(index=own.index - 3, term=own.term, membership=status.membership)
    data = b"an old snapshot"
    cluster["n2"].step(
        InstallSnapshot(
            term=status.term,
            sender=node("n1"),
            recipient=node("n2"),
            meta=stale,
            offset=0,
            total_bytes=len(data),
            data=data,
        )
    )
    ready = cluster["n2"].ready()
    cluster["n2"].advance(ready)
    assert ready.snapshot is None
    (answer,) = ready.messages
    assert isinstance(answer, AppendEntriesResponse)
    assert answer.index == status.commit
    assert follower.storage.snapshot_meta == own
    assert cluster["n2"].status().last_index == status.last_index


def follower_with_uncommitted_tail(cluster: Cluster) -> tuple[int, int]:
    """n2 receives five entries from the leader but not yet their commit; (commit, term)."""
    cluster.elect("n1")
    cluster.propose("n1", b"committed")
    commit, term = cluster["n2"].status().commit, cluster["n1"].status().term
    cluster.isolate("n1")
    cluster["n1"].propose([f"tail-{number}".encode() for number in range(5)])
    appends = [
        message
        for message in cluster.peers[node("n1")].handle_ready()
        if isinstance(message, AppendEntries) and message.recipient == "n2"
    ]
    step_all(cluster, appends)
    cluster.peers[node("n2")].handle_ready()
    assert cluster["n2"].status().last_index == commit + 5
    assert cluster["n2"].status().commit == commit
    return commit, term


def install_single_chunk(cluster: Cluster, target: str, meta: SnapshotMeta) -> Sequence[Message]:
    data = b"snapshot bytes"
    cluster[target].step(
        InstallSnapshot(
            term=cluster[target].status().term,
            sender=node("n1"),
            recipient=node(target),
            meta=meta,
            offset=0,
            total_bytes=len(data),
            data=data,
        )
    )
    ready = cluster[target].ready()
    persist(cluster.peers[node(target)].storage, ready)
    cluster[target].advance(ready)
    assert ready.snapshot is None, "the log already holds the snapshot's last entry"
    return ready.messages


def test_follower_whose_log_contains_the_snapshot_point_keeps_the_following_entries() -> None:
    """Paper figure 13 step 6 (etcd-io/raft ``restore`` fast-forward): if the follower's log
    has an entry with the snapshot's index and term, it keeps the entries after it, only
    its commit index moves up to the snapshot; nothing is replaced."""
    cluster = Cluster(3)
    commit, term = follower_with_uncommitted_tail(cluster)
    follower = cluster.peers[node("n2")]
    log_before = log_of(follower)
    meta = SnapshotMeta(index=commit + 3, term=term, membership=cluster["n2"].membership)
    install_single_chunk(cluster, "n2", meta)
    assert log_of(follower) == log_before
    assert cluster["n2"].status().last_index == commit + 5
    assert cluster["n2"].status().commit == commit + 3
    assert follower.storage.snapshot_meta.index == 0
    assert follower.snapshots_installed == 0


def test_snapshot_fast_forward_acknowledges_only_the_snapshot_point() -> None:
    """etcd-io/raft ``handleSnapshot``: when the snapshot is not restored because the log
    already matches at its index, the answer is ``MsgAppResp{Index: committed}`` (the
    snapshot's index). The snapshot vouches for nothing after its index, so the follower
    must not claim a match for its unverified tail (the leader would count it for commit)."""
    cluster = Cluster(3)
    commit, term = follower_with_uncommitted_tail(cluster)
    meta = SnapshotMeta(index=commit + 3, term=term, membership=cluster["n2"].membership)
    messages = install_single_chunk(cluster, "n2", meta)
    (answer,) = messages
    assert isinstance(answer, AppendEntriesResponse)
    assert not answer.reject
    assert answer.index == meta.index


# --- 4. membership (thesis 4.1-4.2) -------------------------------------------------------------


def test_learner_receives_the_log_but_never_counts_for_commit() -> None:
    """Thesis 4.2.1 (non-voting members) / etcd-io/raft learners: a learner is replicated to
    like any follower, but only voters form the commit quorum."""
    cluster = Cluster(2, learners=1)  # voters n1, n2; learner n3
    cluster.elect("n1")
    cluster.propose("n1", b"first")
    assert cluster.peers[node("n3")].commands() == [b"first"]
    cluster.isolate("n2")
    proposal = cluster["n1"].propose([b"second"])
    cluster.deliver()
    leader = cluster["n1"].status()
    assert leader.peers[node("n3")].match == proposal.last_index
    assert leader.peers[node("n3")].learner
    assert leader.commit < proposal.last_index, "the learner's copy does not commit it"
    heal(cluster)
    cluster.tick()
    assert cluster["n1"].status().commit >= proposal.last_index
    assert cluster.peers[node("n3")].commands() == [b"first", b"second"]


def test_learner_vote_is_not_counted() -> None:
    """Thesis 4.2.1 / etcd-io/raft ``poll`` over voters only: with the other voter away, a
    candidate cannot win on a learner's answer."""
    cluster = Cluster(2, learners=1)
    cluster.isolate("n2")
    cluster["n1"].campaign()
    cluster.deliver()
    assert cluster["n1"].status().role is not Role.LEADER
    assert cluster.leaders() == []


def test_learner_never_campaigns() -> None:
    """Thesis 4.2.1 / etcd-io/raft ``promotable``: a learner never starts an election, even
    after its leader is gone for many election timeouts."""
    cluster = Cluster(3, learners=1)
    cluster.elect("n1")
    recorder = Recorder(cluster, delivered_only=False)
    cluster.isolate("n1")
    for _ in range(6 * ELECTION_TICKS):
        cluster.tick()
        assert cluster["n4"].status().role is Role.FOLLOWER
    cluster["n4"].campaign()
    cluster.deliver()
    assert cluster["n4"].status().role is Role.FOLLOWER
    assert recorder.of(RequestVote, sender="n4") == []
    assert leader_ids(cluster) in (["n2"], ["n3"])
    assert cluster["n4"].status().leader == leader_ids(cluster)[0]


def test_add_learner_then_promote_only_once_caught_up() -> None:
    """Thesis 4.2.1: a new server joins as a learner, catches up, and only then becomes a
    voter; promoting a lagging learner is refused (it would stall commits). Once promoted
    it counts for the quorum (3 of 4)."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.propose("n1", b"a", b"b")
    cluster.add_peer("n4", Membership())
    with_learner = Membership(voters=voters("n1", "n2", "n3").voters, learners=(node("n4"),))
    cluster["n1"].propose_membership(with_learner)
    cluster.deliver()
    cluster.tick()
    assert cluster.peers[node("n4")].commands() == [b"a", b"b"]
    assert cluster["n4"].status().membership == with_learner
    cluster.isolate("n4")
    cluster.propose("n1", b"c")
    promoted = voters("n1", "n2", "n3", "n4")
    with pytest.raises(MembershipChangeError):
        cluster["n1"].propose_membership(promoted)
    heal(cluster)
    cluster.tick(2)
    assert cluster["n1"].status().peers[node("n4")].match == cluster["n1"].status().last_index
    cluster["n1"].propose_membership(promoted)
    cluster.deliver()
    cluster.tick()
    for peer in cluster.peers.values():
        assert peer.core.status().membership == promoted
    cluster.partition(["n1", "n2"], ["n3", "n4"])
    proposal = cluster["n1"].propose([b"needs three of four"])
    cluster.deliver()
    assert cluster["n1"].status().commit < proposal.last_index


def test_remove_a_follower() -> None:
    """Thesis 4.1: removing a follower shrinks the quorum (2 of 2); the leader stops
    replicating to it, and the removed node does not disrupt the cluster."""
    cluster = Cluster(3)
    cluster.elect("n1")
    term = cluster["n1"].status().term
    cluster["n1"].propose_membership(voters("n1", "n2"))
    cluster.deliver()
    assert node("n3") not in cluster["n1"].status().peers
    assert cluster["n1"].status().membership == voters("n1", "n2")
    cluster.isolate("n3")
    proposal = cluster["n1"].propose([b"two of two"])
    cluster.deliver()
    assert cluster["n1"].status().commit >= proposal.last_index
    heal(cluster)
    for _ in range(5 * ELECTION_TICKS):
        cluster.tick()
    assert leader_ids(cluster) == ["n1"]
    assert cluster["n1"].status().term == term


def test_a_change_that_leaves_a_majority_of_its_voters_silent_is_refused() -> None:
    """etcd's strict reconfiguration check: with n2 silent for an election timeout, removing
    n1 or n3 would leave two voters of which one answers, a cluster that could never elect a
    leader again (found by the simulator, seed 2000008: a voter removed while another's disk
    was corrupt). Removing n2 itself, the silent one, is what repairs the cluster."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.isolate("n2")
    for _ in range(2 * ELECTION_TICKS + 1):  # two check-quorum rounds without n2
        cluster.tick()
    assert leader_ids(cluster) == ["n1"]
    for survivors in (voters("n2", "n3"), voters("n1", "n2")):
        with pytest.raises(MembershipChangeError, match=r"of which \['n2'\] have not answered"):
            cluster["n1"].propose_membership(survivors)
    proposal = cluster["n1"].propose_membership(voters("n1", "n3"))
    cluster.deliver()
    assert cluster["n1"].status().commit >= proposal.last_index
    assert cluster["n1"].status().membership == voters("n1", "n3")


def test_a_new_leader_counts_as_answering_only_the_voters_it_has_heard_from() -> None:
    """The strict check's first round: a leader elected while n3 was down took "remove n1",
    leaving voters n2 and n3 with n3's disk corrupt (the simulator's ``rot_remove`` schedule,
    seed 29). A new leader's progress started out as if every voter had just answered, so
    until its first check-quorum round it counted n3 as up. Within those rounds the change
    waits (retryable: n3's answer may be on its way); after them it is refused."""
    cluster = Cluster(3)
    cluster.isolate("n3")
    cluster.elect("n1")
    assert leader_ids(cluster) == ["n1"]
    for survivors in (voters("n2", "n3"), voters("n1", "n3")):
        with pytest.raises(MembershipChangeError, match=r"not heard from \['n3'\] yet") as early:
            cluster["n1"].propose_membership(survivors)
        assert early.value.retryable
    for _ in range(2 * ELECTION_TICKS + 1):  # two check-quorum rounds without n3
        cluster.tick()
    for survivors in (voters("n2", "n3"), voters("n1", "n3")):
        with pytest.raises(
            MembershipChangeError, match=r"of which \['n3'\] have not answered"
        ) as late:
            cluster["n1"].propose_membership(survivors)
        assert not late.value.retryable
    proposal = cluster["n1"].propose_membership(voters("n1", "n2"))
    cluster.deliver()
    assert cluster["n1"].status().commit >= proposal.last_index
    assert cluster["n1"].status().membership == voters("n1", "n2")


def test_after_a_stall_a_leader_takes_no_membership_change_until_two_live_rounds() -> None:
    """Sweep seed 7000117 (session 10): n3's disk died ("rot"), and a second later the leader,
    whose own fsync had stalled it for a second, took "remove n1", leaving voters n2 and
    n3 and no majority ever again. Its check-quorum rounds had stood still during the
    stall (the node counts at most three ticks of it), and an answer of n3's from before
    n3 died, waiting in the network, came right after: n3 looked up. After a stall
    (``RaftCore.stalled``) the leader takes no membership change until two check-quorum
    rounds have passed (retryable meanwhile); by then its flags are the live rounds'."""
    cluster = Cluster(3)
    cluster.elect("n1")
    held: list[Message] = []

    def hold_n3(message: Message) -> bool:
        if message.sender == "n3":
            held.append(message)
            return False
        return True

    cluster.filters.append(hold_n3)
    cluster.tick()  # n3 answers this heartbeat; its answer waits in the network
    cluster.deliver()
    assert any(isinstance(message, HeartbeatResponse) for message in held)
    cluster.isolate("n3")  # and n3 dies
    leader = cluster["n1"]
    leader.stalled()  # the leader stood still; then the answer that waited comes in
    step_all(cluster, held)
    cluster.deliver()
    for survivors in (voters("n2", "n3"), voters("n1", "n3")):
        with pytest.raises(MembershipChangeError, match="could not run for a while") as early:
            leader.propose_membership(survivors)
        assert early.value.retryable
    for _ in range(2 * ELECTION_TICKS + 1):  # two check-quorum rounds, n3 silent
        cluster.tick()
    for survivors in (voters("n2", "n3"), voters("n1", "n3")):
        with pytest.raises(
            MembershipChangeError, match=r"of which \['n3'\] have not answered"
        ) as late:
            leader.propose_membership(survivors)
        assert not late.value.retryable
    proposal = leader.propose_membership(voters("n1", "n2"))
    cluster.deliver()
    assert leader.status().commit >= proposal.last_index


def test_a_stall_changes_nothing_for_a_follower_and_a_leader_without_one_takes_changes() -> None:
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster["n2"].stalled()
    assert cluster["n2"].stall_rounds == 0
    proposal = cluster["n1"].propose_membership(voters("n1", "n2"))
    cluster.deliver()
    assert cluster["n1"].status().membership == voters("n1", "n2")
    assert cluster["n1"].status().commit >= proposal.last_index


def test_remove_the_leader() -> None:
    """Thesis 4.2.2: a leader removed from the configuration manages the cluster until the
    change commits, then steps down; one of the remaining servers becomes leader, and the
    removed server never campaigns."""
    cluster = Cluster(3)
    cluster.elect("n1")
    recorder = Recorder(cluster, delivered_only=False)
    proposal = cluster["n1"].propose_membership(voters("n2", "n3"))
    cluster.deliver()
    assert cluster["n1"].status().commit >= proposal.last_index
    # It hands over once the remaining voters have applied the change (issue #14).
    tick_until(cluster, lambda: cluster["n1"].role is Role.FOLLOWER, 2)
    tick_until(cluster, lambda: len(cluster.leaders()) == 1, 6 * ELECTION_TICKS)
    (new_leader,) = leader_ids(cluster)
    assert new_leader in ("n2", "n3")
    assert cluster[new_leader].status().membership == voters("n2", "n3")
    cluster.propose(new_leader, b"after the leader left")
    assert cluster.peers[node(new_leader)].commands() == [b"after the leader left"]
    assert recorder.of(RequestVote, sender="n1") == []


def stopped_once_not_leading(cluster: Cluster, name: str) -> None:
    """Stop ``name`` the moment it no longer leads (what an operator does once a removal is
    acknowledged): nothing it sends from then on arrives, and nothing reaches it."""
    cluster.filters.append(
        lambda m: name not in (m.sender, m.recipient) or cluster[name].role is Role.LEADER
    )


@pytest.mark.parametrize("commit_notices", [False, True])
def test_removing_the_leader_of_two_voters_leaves_the_survivor_able_to_lead(
    commit_notices: bool,
) -> None:
    """Issue #14 (the class of etcd-io/etcd#10563): with two voters, a leader that applied its
    own removal and stepped down at once left the survivor not knowing the removal
    committed: it still counted the removed voter, and could never be elected without it.
    Thesis 4.2.2: the removed leader manages the cluster until the change commits; here it
    leads until the remaining voters have applied the change, then hands over."""
    cluster = Cluster(2, commit_notices=commit_notices)
    cluster.elect("n1")
    stopped_once_not_leading(cluster, "n1")
    proposal = cluster["n1"].propose_membership(voters("n2"))
    tick_until(cluster, lambda: cluster["n1"].role is not Role.LEADER, 3 * ELECTION_TICKS)
    assert cluster["n1"].status().commit >= proposal.last_index
    assert cluster["n1"].status().membership == voters("n2")
    tick_until(cluster, lambda: leader_ids(cluster) == ["n2"], 3 * ELECTION_TICKS)
    assert cluster["n2"].status().membership == voters("n2")
    cluster.propose("n2", b"alone")
    cluster.tick()  # a lone voter commits on persisting, and applies in the next Ready
    assert cluster.peers[node("n2")].commands() == [b"alone"]


def test_a_removed_leader_hands_over_only_once_the_survivor_applied_the_change() -> None:
    """The hand-over waits for the survivor's applied index (reported in its heartbeat
    answers): while the answers saying it applied the change are lost, the removed leader
    keeps leading (refusing proposals); once one arrives, it hands over."""
    cluster = Cluster(2, commit_notices=False)
    cluster.elect("n1")
    index = cluster["n1"].status().last_index + 1
    lost = drop(cluster, lambda m: isinstance(m, HeartbeatResponse) and m.applied >= index)
    proposal = cluster["n1"].propose_membership(voters("n2"))
    assert proposal.last_index == index
    cluster.deliver()
    cluster.tick(ELECTION_TICKS // 2)  # less than check-quorum's round
    assert cluster["n1"].status().applied >= proposal.last_index
    assert cluster["n1"].role is Role.LEADER
    with pytest.raises(Busy):
        cluster["n1"].propose([b"refused while handing over"])
    cluster.filters.remove(lost)
    stopped_once_not_leading(cluster, "n1")
    tick_until(cluster, lambda: leader_ids(cluster) == ["n2"], 3 * ELECTION_TICKS)


def test_a_removed_leader_that_cannot_hand_over_steps_down_within_a_bound() -> None:
    """Bounded like every wait: if no answer ever says the change was applied (here lost;
    check-quorum off, so nothing else deposes it), the removed leader steps down after
    ``LEAVING_ELECTION_TIMEOUTS`` election timeouts instead of refusing proposals forever.
    It did not hand over, so the node does not acknowledge the removal."""
    cluster = Cluster(2, commit_notices=False, check_quorum=False)
    cluster.elect("n1")
    index = cluster["n1"].status().last_index + 1
    drop(cluster, lambda m: isinstance(m, HeartbeatResponse) and m.applied >= index)
    cluster["n1"].propose_membership(voters("n2"))
    cluster.deliver()
    bound = LEAVING_ELECTION_TIMEOUTS * ELECTION_TICKS
    cluster.tick(bound - 2)
    assert cluster["n1"].role is Role.LEADER
    tick_until(cluster, lambda: cluster["n1"].role is not Role.LEADER, 3)
    assert cluster["n1"].handed_over_index == 0


def test_a_removed_leader_that_crashes_before_handing_over_lets_the_survivor_lead() -> None:
    """One crash: the removed leader applied its removal (so it never campaigns again) and
    crashed before the survivor applied it. Once it is back, it votes for the survivor, whose
    first commit applies the removal; the survivor then leads alone."""
    cluster = Cluster(2, commit_notices=False)
    cluster.elect("n1")
    lost = drop(cluster, lambda m: m.sender == "n1" and isinstance(m, Heartbeat))
    proposal = cluster["n1"].propose_membership(voters("n2"))
    cluster.deliver()
    assert cluster["n1"].status().applied >= proposal.last_index
    assert cluster["n2"].status().membership == voters("n1", "n2")
    cluster.filters.remove(lost)
    cluster.peers[node("n1")].restart()
    assert cluster["n1"].status().membership == voters("n2")
    tick_until(cluster, lambda: leader_ids(cluster) == ["n2"], 6 * ELECTION_TICKS)
    cluster.tick()
    assert cluster["n2"].status().membership == voters("n2")
    cluster.isolate("n1")
    cluster.propose("n2", b"alone")
    cluster.tick()  # a lone voter commits on persisting, and applies in the next Ready
    assert cluster.peers[node("n2")].commands() == [b"alone"]


class CrashingPeer(Peer):
    """A peer that crashes at its ``crash_at``-th Ready: ``"before persist"`` (its early
    messages, a leader's appends, are out; nothing is written), ``"before messages"``
    (written, nothing else sent) or ``"before advance"`` (written and sent, not applied)."""

    crash_at = -1
    crash_point = ""
    readies = 0

    def handle_ready(self) -> list[Message]:
        if not self.core.has_ready():
            return []
        self.readies += 1
        if self.readies != self.crash_at:
            return super().handle_ready()
        ready = self.core.ready()
        sent: list[Message] = list(ready.early_messages)
        if self.crash_point != "before persist":
            persist(self.storage, ready)
            if self.crash_point == "before advance":
                sent += ready.messages
        self.restart()
        return sent


SHRINK_FAULTS = [
    *[("lose message", k) for k in range(1, 25)],
    *[
        (f"crash {name} {point}", k)
        for name in ("n1", "n2")
        for point in ("before persist", "before messages", "before advance")
        for k in range(1, 9)
    ],
]


@pytest.mark.parametrize("removed", ["n1", "n2"], ids=["remove-leader", "remove-follower"])
@pytest.mark.parametrize(("fault", "k"), SHRINK_FAULTS)
def test_shrinking_two_voters_to_one_survives_one_lost_message_or_one_crash(
    removed: str, fault: str, k: int
) -> None:
    """Issue #14's invariants: no single lost message and no single crash (at any Ready, at
    any point of the Ready contract) while two voters shrink to one leaves the cluster unable
    to elect a leader once the failed node is back; and once the removal is acknowledged,
    the removed node may be stopped for good: the survivor still leads and commits."""
    cluster = Cluster(2, commit_notices=False)
    for name in ("n1", "n2"):
        peer = CrashingPeer(node(name), cluster.membership)
        cluster.peers[peer.id] = peer
    cluster.elect("n1")
    if fault == "lose message":
        drop_count = [0]

        def lose_kth(message: Message) -> bool:
            drop_count[0] += 1
            return drop_count[0] != k

        cluster.filters.append(lose_kth)
    else:
        _, name, *point = fault.split(" ")
        crashing = cluster.peers[node(name)]
        assert isinstance(crashing, CrashingPeer)
        crashing.crash_at, crashing.crash_point = crashing.readies + k, " ".join(point)
    survivor = "n2" if removed == "n1" else "n1"
    index = cluster["n1"].status().last_index + 1
    acknowledged: list[bool] = []

    def stop_removed_once_acknowledged(message: Message) -> bool:
        # The node acknowledges a removal of another node once the leader applied it, and
        # its own removal once it handed over (``handed_over_index``).
        leader = cluster["n1"]
        if removed == "n1":
            done = leader.handed_over_index >= index
        else:
            done = leader.role is Role.LEADER and leader.log.applied >= index
        if done:
            acknowledged.append(True)
        return not acknowledged or removed not in (message.sender, message.recipient)

    cluster.filters.insert(0, stop_removed_once_acknowledged)
    with contextlib.suppress(NotLeader, MembershipChangeError):
        cluster["n1"].propose_membership(voters(survivor))
    cluster.tick(3 * ELECTION_TICKS)
    heal(cluster)
    if acknowledged:
        cluster.isolate(removed)
    # A crash set for a late Ready may hit the leader found first: ask again, a bounded time.
    for _ in range(3):
        tick_until(cluster, lambda: len(cluster.leaders()) == 1, 6 * ELECTION_TICKS)
        (leader,) = leader_ids(cluster)
        with contextlib.suppress(NotLeader, Busy):
            cluster.propose(leader, b"after")
        cluster.tick(2)
        if b"after" in cluster.peers[node(leader)].commands():
            break
    else:
        raise AssertionError(f"no leader commits after {fault} #{k}")


def test_a_membership_change_is_saved_durably_when_applied() -> None:
    """The commit index is saved lazily (a restart re-learns it from the leader), but not one
    that covers a membership change: a survivor that forgot the removal of the only other
    voter would wait for it forever. The Ready applying the change asks to save it."""
    cluster = Cluster(2, commit_notices=False)
    cluster.elect("n1")
    proposal = cluster["n1"].propose_membership(voters("n2"))
    readies = []
    for _ in range(3 * ELECTION_TICKS):
        for peer in cluster.peers.values():
            peer.core.tick()
        for _ in range(100):
            for peer in cluster.peers.values():
                if peer.core.has_ready():
                    ready = peer.core.ready()
                    readies.append((peer.id, ready))
                    persist(peer.storage, ready)
                    peer.applied.extend(ready.committed_entries)
                    peer.core.advance(ready)
                    cluster.in_flight.extend([*ready.early_messages, *ready.messages])
            batch, cluster.in_flight = cluster.in_flight, []
            if not batch:
                break
            step_all(cluster, batch)
    applying = [
        (peer, ready)
        for peer, ready in readies
        if any(entry.index == proposal.last_index for entry in ready.committed_entries)
    ]
    assert {peer for peer, _ in applying} == {"n1", "n2"}
    for _, ready in applying:
        assert ready.commit_durable
        assert ready.hard_state is not None
        assert ready.hard_state.commit >= proposal.last_index


def test_one_membership_change_at_a_time() -> None:
    """Thesis 4.1 / etcd-io/raft ``pendingConfIndex``: a second change is refused while one
    is not yet applied, and accepted once it is."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.add_peer("n4", Membership())
    cluster["n1"].propose_membership(
        Membership(voters=voters("n1", "n2", "n3").voters, learners=(node("n4"),))
    )
    with pytest.raises(MembershipChangeError):
        cluster["n1"].propose_membership(voters("n1", "n2"))  # one server off the applied one
    cluster.deliver()
    cluster["n1"].propose_membership(
        Membership(voters=voters("n1", "n2").voters, learners=(node("n4"),))
    )


def test_new_leader_must_commit_its_no_op_before_a_membership_change() -> None:
    """Thesis 4.1 (the bug fix of the raft-dev 2015 post) / etcd-io/raft: a new leader may not
    start a configuration change until it has committed an entry of its own term."""
    cluster = Cluster(3)
    held_back = drop(cluster, lambda m: isinstance(m, AppendEntries))
    cluster.elect("n1")
    assert cluster["n1"].status().commit < cluster["n1"].status().last_index
    cluster.add_peer("n4", Membership())
    change = Membership(voters=voters("n1", "n2", "n3").voters, learners=(node("n4"),))
    with pytest.raises(MembershipChangeError):
        cluster["n1"].propose_membership(change)
    cluster.filters.remove(held_back)
    cluster.tick()
    assert cluster["n1"].status().commit == cluster["n1"].status().last_index
    cluster["n1"].propose_membership(change)


@pytest.mark.parametrize(
    "proposed",
    [
        pytest.param(voters("n1"), id="remove-two-voters"),
        pytest.param(voters("n1", "n2", "n3", "n4", "n5"), id="add-two-voters"),
        pytest.param(
            Membership(voters=voters("n1", "n2", "n3").voters, learners=(node("n4"), node("n5"))),
            id="add-two-learners",
        ),
        pytest.param(voters("n1", "n2", "n4"), id="replace-a-voter"),
        pytest.param(voters("n1", "n2", "n3"), id="no-change"),
    ],
)
def test_membership_change_of_other_than_one_server_is_refused(proposed: Membership) -> None:
    """Thesis 4.1: single-server changes only (any two majorities of consecutive
    configurations overlap); anything else is refused and nothing is proposed."""
    cluster = Cluster(3)
    cluster.elect("n1")
    last = cluster["n1"].status().last_index
    with pytest.raises(MembershipChangeError):
        cluster["n1"].propose_membership(proposed)
    assert cluster["n1"].status().last_index == last


# --- 5. leadership transfer (thesis 3.10) -------------------------------------------------------


def test_transfer_to_an_up_to_date_follower() -> None:
    """Thesis 3.10 / etcd-io/raft MsgTimeoutNow: the leader sends TimeoutNow to a caught-up
    target, which campaigns at once without pre-vote; the other follower grants the vote
    although it is in the old leader's lease (campaignTransfer)."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.propose("n1", b"x")
    cluster.tick(2)
    term = cluster["n1"].status().term
    recorder = Recorder(cluster)
    cluster["n1"].transfer_leadership(node("n2"))
    cluster.deliver()
    assert recorder.of(TimeoutNow, sender="n1", recipient="n2")
    votes = recorder.of(RequestVote, sender="n2")
    assert votes
    assert all(not vote.pre_vote and vote.transfer for vote in votes)
    granted = [a for a in recorder.of(RequestVoteResponse, recipient="n2") if a.granted]
    assert {answer.sender for answer in granted} >= {"n3"}
    assert leader_ids(cluster) == ["n2"]
    assert cluster["n2"].status().term == term + 1
    assert cluster["n1"].status().leader == "n2"


def test_transfer_to_a_lagging_follower_catches_it_up_first() -> None:
    """Thesis 3.10 step 1: the leader first brings the target's log up to date and only
    then sends TimeoutNow; the target then wins with the full log."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.isolate("n3")
    cluster.propose("n1", b"a", b"b", b"c")
    recorder = Recorder(cluster, delivered_only=False)
    cluster["n1"].transfer_leadership(node("n3"))
    cluster.deliver()
    assert recorder.of(TimeoutNow) == []
    assert cluster["n1"].status().role is Role.LEADER
    heal(cluster)
    last = cluster["n1"].status().last_index
    cluster.tick()
    timeout_now = recorder.of(TimeoutNow, recipient="n3")
    assert len(timeout_now) >= 1
    caught_up = [
        answer
        for answer in recorder.of(AppendEntriesResponse, sender="n3")
        if not answer.reject and answer.index == last
    ]
    assert caught_up
    assert recorder.messages.index(caught_up[0]) < recorder.messages.index(timeout_now[0])
    assert leader_ids(cluster) == ["n3"]
    assert cluster.peers[node("n3")].commands() == [b"a", b"b", b"c"]


def test_proposals_are_refused_during_a_transfer() -> None:
    """Thesis 3.10 step 1 (etcd-io/raft ErrProposalDropped while leadTransferee is set): the
    leader stops accepting client requests while it hands over, so the target can catch up."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.isolate("n3")
    cluster.propose("n1", b"a")
    last = cluster["n1"].status().last_index
    cluster["n1"].transfer_leadership(node("n3"))
    with pytest.raises(Busy):
        cluster["n1"].propose([b"refused"])
    assert cluster["n1"].status().last_index == last


def test_transfer_that_cannot_finish_is_abandoned_after_an_election_timeout() -> None:
    """Thesis 3.10: if the transfer does not complete within an election timeout, the leader
    aborts it and resumes accepting client requests; it stays leader in the same term."""
    cluster = Cluster(3)
    cluster.elect("n1")
    term = cluster["n1"].status().term
    cluster.isolate("n3")
    cluster["n1"].transfer_leadership(node("n3"))
    cluster.tick(ELECTION_TICKS // 2)
    with pytest.raises(Busy):
        cluster["n1"].propose([b"still moving"])
    cluster.tick(ELECTION_TICKS - ELECTION_TICKS // 2)
    proposal = cluster["n1"].propose([b"accepted again"])
    cluster.deliver()
    status = cluster["n1"].status()
    assert status.role is Role.LEADER
    assert status.term == term
    assert status.commit >= proposal.last_index


# --- 6. ReadIndex (thesis 6.4) ------------------------------------------------------------------


def test_read_index_on_the_leader_after_a_heartbeat_round() -> None:
    """Thesis 6.4 steps 1-3: the leader records its commit index as the read index and
    answers only after a heartbeat round confirms a majority still follows it."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.propose("n1", b"a", b"b")
    commit = cluster["n1"].status().commit
    recorder = Recorder(cluster)
    no_acks = drop(cluster, lambda m: isinstance(m, HeartbeatResponse))
    cluster["n1"].read_index(b"read-1")
    cluster.deliver()
    assert cluster.peers[node("n1")].read_states == []
    # The heartbeats carry the read's round at this leader, not the requester's context.
    rounds = {hb.context for hb in recorder.of(Heartbeat, sender="n1")}
    assert rounds == {round_context(cluster["n1"].read_round)}
    cluster.filters.remove(no_acks)
    cluster.tick()
    assert cluster.peers[node("n1")].read_states == [ReadState(context=b"read-1", index=commit)]


def test_read_index_from_a_follower_is_forwarded_and_answered() -> None:
    """Thesis 6.4 (reads served by followers) / etcd-io/raft MsgReadIndex: the follower asks
    the leader, which confirms leadership and answers with its commit index."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.propose("n1", b"a")
    commit = cluster["n1"].status().commit
    recorder = Recorder(cluster)
    cluster["n2"].read_index(b"follower-read")
    cluster.deliver()
    assert recorder.of(ReadIndexRequest, sender="n2", recipient="n1")
    assert recorder.of(ReadIndexResponse, sender="n1", recipient="n2")
    assert cluster.peers[node("n2")].read_states == [
        ReadState(context=b"follower-read", index=commit)
    ]


def test_read_index_waits_until_a_new_leader_commits_its_no_op() -> None:
    """Thesis 6.4 step 1 / etcd-io/raft ``committedEntryInCurrentTerm``: a new leader does not
    know the latest commit index until an entry of its term is committed; reads wait for
    the no-op and then get a read index that covers it."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.propose("n1", b"a")
    held_back = drop(cluster, lambda m: isinstance(m, AppendEntries) and m.sender == "n2")
    cluster["n1"].transfer_leadership(node("n2"))
    cluster.deliver()
    new_leader = cluster["n2"].status()
    assert new_leader.role is Role.LEADER
    assert new_leader.commit < new_leader.last_index  # the no-op is not committed
    cluster.tick()  # a heartbeat tells n3 who leads; the no-op itself is still held back
    assert cluster["n3"].status().leader == "n2"
    assert cluster["n2"].status().commit < new_leader.last_index
    cluster["n2"].read_index(b"early-read")
    cluster["n3"].read_index(b"forwarded-early-read")
    cluster.deliver()
    assert cluster.peers[node("n2")].read_states == []
    assert cluster.peers[node("n3")].read_states == []
    cluster.filters.remove(held_back)
    cluster.tick()
    no_op_index = new_leader.last_index
    assert cluster["n2"].status().commit >= no_op_index
    (own,) = cluster.peers[node("n2")].read_states
    (forwarded,) = cluster.peers[node("n3")].read_states
    assert own.context == b"early-read"
    assert own.index >= no_op_index
    assert forwarded.context == b"forwarded-early-read"
    assert forwarded.index >= no_op_index


def test_leader_cut_off_from_the_majority_does_not_answer_reads() -> None:
    """Thesis 6.4: a leader in a minority cannot get a heartbeat round acknowledged, so it
    never answers the read (a new leader may have committed writes it has not seen)."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.isolate("n1")
    cluster["n1"].read_index(b"stale?")
    tick_until(cluster, lambda: bool(set(leader_ids(cluster)) - {"n1"}), 6 * ELECTION_TICKS)
    (new_leader,) = set(leader_ids(cluster)) - {"n1"}
    cluster.propose(new_leader, b"newer write")
    cluster.tick(2 * ELECTION_TICKS)
    assert cluster.peers[node("n1")].read_states == []


def test_stale_leader_without_check_quorum_never_answers_a_read() -> None:
    """Thesis 6.4 (even without check-quorum): the old leader keeps believing it leads, but
    its heartbeat rounds are never acknowledged by a majority; after the partition heals it
    learns the new term and the read is dropped, never answered with a stale index."""
    cluster = Cluster(3, check_quorum=False)
    cluster.elect("n1")
    cluster.isolate("n1")
    cluster["n1"].read_index(b"stale?")
    cluster["n2"].campaign()
    cluster.deliver()
    cluster.propose("n2", b"newer write")
    for _ in range(3):
        cluster["n1"].tick()
        cluster.deliver()
    assert cluster["n1"].status().role is Role.LEADER
    heal(cluster)
    cluster.tick(3)
    assert cluster.peers[node("n1")].read_states == []
    assert leader_ids(cluster) == ["n2"]


def test_reads_with_equal_contexts_from_two_nodes_are_both_answered() -> None:
    """etcd-io/raft read_only.go keys pending reads by a request id unique at the leader.
    Every node numbers its own reads, so two followers' forwarded reads may carry the same
    context: the leader must still answer both (issue #14: one was silently dropped)."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.propose("n1", b"a")
    commit = cluster["n1"].status().commit
    no_acks = drop(cluster, lambda m: isinstance(m, HeartbeatResponse))
    cluster["n2"].read_index(b"\x00\x00\x00\x01")
    cluster["n3"].read_index(b"\x00\x00\x00\x01")
    cluster.deliver()
    cluster.filters.remove(no_acks)
    cluster.tick()
    for name in ("n2", "n3"):
        assert cluster.peers[node(name)].read_states == [
            ReadState(context=b"\x00\x00\x00\x01", index=commit)
        ], name


def test_a_forwarded_read_is_sent_again_when_its_leader_is_reelected_in_a_higher_term() -> None:
    """Thesis 6.4 / etcd-io/raft MsgReadIndex: a follower's forwarded read whose request or
    answer was lost with the leader's term is asked again of the leader of the new term.
    Issue #14: the follower forgot it at the term change, and as its leader was the same node
    again nothing told the node that waited for it: it waited out the client's timeout."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.propose("n1", b"a")
    commit = cluster["n1"].status().commit
    lost = drop_once(cluster, lambda m: isinstance(m, ReadIndexRequest))
    cluster["n2"].read_index(b"read-1")
    cluster.deliver()
    assert lost, "the read's request went through"
    cluster.peers[node("n1")].restart()
    cluster["n1"].campaign(transfer=True)  # the same node leads again, in a higher term
    cluster.deliver()
    assert leader_ids(cluster) == ["n1"]
    assert cluster["n2"].status().term == 2
    assert cluster["n2"].status().leader == "n1"
    cluster.tick(3)
    (read,) = cluster.peers[node("n2")].read_states
    assert read.context == b"read-1"
    assert read.index >= commit + 1  # covers the new term's no-op


def test_a_follower_that_becomes_leader_answers_its_own_forwarded_read() -> None:
    """A forwarded read still unanswered when its follower wins an election in a later term
    is served by that node as leader, once its no-op commits and a quorum confirms it."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.propose("n1", b"a")
    commit = cluster["n1"].status().commit
    drop(cluster, lambda m: isinstance(m, ReadIndexRequest))
    cluster["n2"].read_index(b"read-1")
    cluster.deliver()
    cluster["n2"].campaign(transfer=True)
    cluster.deliver()
    assert leader_ids(cluster) == ["n2"]
    cluster.tick(3)
    (read,) = cluster.peers[node("n2")].read_states
    assert read.context == b"read-1"
    assert read.index >= commit + 1


def test_a_read_is_not_confirmed_by_a_heartbeat_round_sent_before_it_arrived() -> None:
    """Thesis 6.4 step 3 / etcd-io/raft read_only.go: a read is released only by a quorum's
    acknowledgements of a heartbeat sent after the read was queued; an older round says
    nothing about leadership at the read's time (a newer leader may have committed since).
    Here the second read reuses the first read's context, as reads from two nodes may."""
    cluster = Cluster(3)
    cluster.elect("n1")
    cluster.propose("n1", b"a")
    held: list[Message] = []

    def hold_acks(message: Message) -> bool:
        if isinstance(message, HeartbeatResponse):
            held.append(message)
            return False
        return True

    cluster.filters.append(hold_acks)
    cluster["n2"].read_index(b"same")
    cluster.deliver()
    assert held, "the first read's heartbeat round was acknowledged"
    # The second read arrives; every heartbeat from now on is lost, so no round sent after
    # it is ever acknowledged. Only the first round's late acknowledgements come in.
    cluster.filters.append(lambda m: not isinstance(m, Heartbeat))
    cluster["n3"].read_index(b"same")
    cluster.deliver()
    step_all(cluster, held)
    cluster.deliver()
    assert cluster.peers[node("n3")].read_states == []
    assert [read.context for read in cluster.peers[node("n2")].read_states] == [b"same"]


def test_a_later_round_confirms_every_read_queued_before_it() -> None:
    """etcd-io/raft read_only.go ``advance``: the acknowledgements of one round release every
    read queued before that round, in order, each at its own read index."""
    cluster = Cluster(3)
    cluster.elect("n1")
    no_acks = drop(cluster, lambda m: isinstance(m, HeartbeatResponse))
    cluster["n1"].read_index(b"first")
    cluster.deliver()
    first_index = cluster["n1"].status().commit
    cluster.propose("n1", b"between")
    cluster["n2"].read_index(b"second")
    cluster.deliver()
    second_index = cluster["n1"].status().commit
    assert second_index > first_index
    cluster.filters.remove(no_acks)
    cluster.tick()
    assert cluster.peers[node("n1")].read_states == [ReadState(context=b"first", index=first_index)]
    assert cluster.peers[node("n2")].read_states == [
        ReadState(context=b"second", index=second_index)
    ]


def test_a_follower_ignores_a_read_answer_it_did_not_ask_for() -> None:
    """A ReadIndexResponse is accepted only for a read this follower forwarded in this term
    (a late answer to a read of an earlier incarnation would carry an old read index)."""
    cluster = Cluster(3)
    cluster.elect("n1")
    term = cluster["n1"].status().term
    cluster["n2"].step(
        ReadIndexResponse(
            term=term, sender=node("n1"), recipient=node("n2"), context=b"never asked", index=1
        )
    )
    cluster.deliver()
    assert cluster.peers[node("n2")].read_states == []


def test_single_node_cluster_answers_a_read_at_once() -> None:
    """Thesis 6.4 / etcd-io/raft (single voter): no heartbeat round is needed; the read
    state comes in the very next Ready, with no message sent."""
    cluster = Cluster(1)
    cluster.elect("n1")
    cluster.propose("n1", b"a")
    commit = cluster["n1"].status().commit
    cluster["n1"].read_index(b"solo")
    ready = cluster["n1"].ready()
    cluster["n1"].advance(ready)
    assert ready.read_states == (ReadState(context=b"solo", index=commit),)
    assert ready.messages == ()
    assert ready.early_messages == ()


# --- 7. proposals, flow control, log repair, commit -----------------------------------------------


def test_proposal_to_a_follower_raises_not_leader_with_the_leader_id() -> None:
    """Paper 8 (clients are redirected to the leader): a follower refuses proposals and
    names the leader it knows; a node that knows none says so."""
    cluster = Cluster(3)
    with pytest.raises(NotLeader) as no_leader:
        cluster["n2"].propose([b"x"])
    assert no_leader.value.leader_id is None
    cluster.elect("n1")
    for request in (
        lambda: cluster["n2"].propose([b"x"]),
        lambda: cluster["n2"].propose_membership(voters("n1", "n2")),
        lambda: cluster["n2"].transfer_leadership(node("n3")),
    ):
        with pytest.raises(NotLeader) as redirect:
            request()
        assert redirect.value.leader_id == "n1"


def test_uncommitted_bytes_bound_refuses_proposals_until_they_commit() -> None:
    """etcd-io/raft ``MaxUncommittedEntriesSize`` (ErrProposalDropped): while no quorum
    acknowledges, the leader accepts proposals only up to ``uncommitted_bytes_max``, then
    raises Busy; once the backlog commits it accepts again."""
    cluster = Cluster(3, uncommitted_bytes_max=200)
    cluster.elect("n1")
    cluster.partition(["n1"], ["n2", "n3"])
    command = b"c" * 50  # 66 bytes with the per-entry overhead
    accepted = 0
    for _ in range(10):
        if command_accepted(cluster["n1"], command):
            accepted += 1
        else:
            break
    with pytest.raises(Busy):
        cluster["n1"].propose([command])
    cluster.deliver()
    assert 1 <= accepted < 10
    assert cluster["n1"].status().commit < cluster["n1"].status().last_index
    heal(cluster)
    cluster.tick(2)
    assert cluster["n1"].status().commit == cluster["n1"].status().last_index
    for _ in range(accepted):
        cluster["n1"].propose([command])


def command_accepted(core: RaftCore, command: bytes) -> bool:
    try:
        core.propose([command])
    except Busy:
        return False
    return True


@pytest.mark.parametrize(
    ("leader_terms", "follower_terms"),
    [
        pytest.param([1] * 3 + [4] * 40, [1] * 3 + [2] * 20 + [3] * 20, id="two-stale-terms"),
        pytest.param(
            [1] * 3 + [2] * 10 + [5] * 30,
            [1] * 3 + [2] * 5 + [3] * 10 + [4] * 10,
            id="interleaved-terms",
        ),
        pytest.param([1] * 3 + [3] * 5, [1] * 3 + [2] * 50, id="follower-longer"),
    ],
)
def test_fast_back_off_repairs_a_long_conflicting_suffix_in_few_round_trips(
    leader_terms: list[int], follower_terms: list[int]
) -> None:
    """Paper 5.3 (the optimization after figure 7) / etcd-io/raft ``findConflictByTerm``:
    a rejection carries a hint that lets the leader skip a whole term per round trip, so a
    follower with dozens of conflicting entries is repaired in about as many rejections as
    there are differing terms, not one per entry."""
    cluster = Cluster(3)
    common = 3
    preload(cluster.peers[node("n1")], leader_terms, commit=common)
    preload(cluster.peers[node("n3")], leader_terms, commit=common)
    preload(cluster.peers[node("n2")], follower_terms, commit=common)
    recorder = Recorder(cluster)
    cluster.elect("n1")
    cluster.deliver()
    rejections = [a for a in recorder.of(AppendEntriesResponse, sender="n2") if a.reject]
    differing_terms = set(leader_terms[common:]) ^ set(follower_terms[common:])
    conflicting_entries = len(follower_terms) - common
    assert 1 <= len(rejections) <= len(differing_terms)
    assert len(rejections) * 5 < conflicting_entries
    assert log_of(cluster.peers[node("n2")]) == log_of(cluster.peers[node("n1")])
    assert cluster["n2"].status().commit == cluster["n1"].status().commit


def test_single_node_leader_commits_only_after_persisting() -> None:
    """Thesis 10.2.1 / etcd-io/raft (the leader's own match advances on MsgStorageAppendResp):
    a single-node leader counts itself only for entries it has written, so a proposal is
    committed only once the Ready holding it has been advanced."""
    cluster = Cluster(1)
    leader = cluster.elect("n1")
    proposal = leader.propose([b"x"])
    assert leader.status().commit < proposal.last_index
    ready = leader.ready()
    assert [entry.index for entry in ready.entries] == [proposal.last_index]
    assert leader.status().commit < proposal.last_index
    assert proposal.last_index not in [entry.index for entry in ready.committed_entries]
    persist(cluster.peers[node("n1")].storage, ready)
    leader.advance(ready)
    assert leader.status().commit == proposal.last_index
    following = leader.ready()
    leader.advance(following)
    assert [entry.data for entry in following.committed_entries] == [b"x"]


def test_followers_can_commit_before_the_leader_persisted() -> None:
    """Thesis 10.2.1: the leader sends AppendEntries in parallel with its own disk write;
    two followers that persisted the entry form a majority of three, so it commits even
    before the leader's write finishes (and not after just one of them)."""
    cluster = Cluster(3)
    leader = cluster.elect("n1")
    proposal = leader.propose([b"x"])
    ready = leader.ready()
    appends = [m for m in ready.early_messages if isinstance(m, AppendEntries)]
    assert {m.recipient for m in appends} == {"n2", "n3"}
    for follower in ("n2", "n3"):
        step_all(cluster, [m for m in appends if m.recipient == follower])
        answers = cluster.peers[node(follower)].handle_ready()
        step_all(cluster, answers)
        committed = leader.status().commit >= proposal.last_index
        assert committed == (follower == "n3"), f"after {follower}'s acknowledgement"
    persist(cluster.peers[node("n1")].storage, ready)
    leader.advance(ready)
    cluster.deliver()
    for peer in cluster.peers.values():
        assert peer.commands() == [b"x"]


def test_leader_no_op_and_entry_kinds_after_election() -> None:
    """Paper 5.4.2 / 8: a new leader appends a no-op of its term at once and commits it,
    which commits everything before it."""
    cluster = Cluster(3)
    cluster.elect("n1")
    entries = log_of(cluster.peers[node("n2")])
    assert [entry.kind for entry in entries] == [EntryKind.NOOP]
    assert entries[0].term == cluster["n1"].status().term
    assert cluster["n2"].status().commit == entries[0].index


# --- commit propagation ---------------------------------------------------------------------------


def test_commit_only_appends_reach_followers_and_are_not_answered() -> None:
    """Once a follower has acknowledged an entry, the append that only passes on its commit is
    marked ``commit_only`` and answered only if rejected: each commit costs one message to each
    follower instead of two."""
    cluster = Cluster(3)
    cluster.elect("n1")
    recorder = Recorder(cluster)
    cluster.propose("n1", b"x")
    cluster.deliver()
    index = cluster["n1"].log.last_index()
    assert all(cluster[name].log.committed == index for name in ("n1", "n2", "n3"))
    appends = recorder.of(AppendEntries, sender="n1")
    carrying = [m for m in appends if m.entries]
    passing = [m for m in appends if not m.entries]
    assert carrying
    assert not any(m.commit_only for m in carrying)
    assert {m.recipient for m in passing} == {"n2", "n3"}
    assert all(m.commit_only and m.commit == index for m in passing)
    # One answer per follower: to the append that carried the entry, none to the commit.
    answers = recorder.of(AppendEntriesResponse)
    assert sorted(m.sender for m in answers) == ["n2", "n3"]


def test_without_commit_notices_followers_learn_the_commit_from_the_next_heartbeat() -> None:
    """``commit_notices=False`` (the node's setting): a commit sends nothing by itself; the
    leader's next heartbeat carries it to every follower, which then applies the entry."""
    cluster = Cluster(3, commit_notices=False)
    cluster.elect("n1")
    recorder = Recorder(cluster)
    cluster.propose("n1", b"x")
    cluster.deliver()
    index = cluster["n1"].log.last_index()
    assert cluster["n1"].log.committed == index
    assert all(cluster[name].log.committed < index for name in ("n2", "n3"))
    appends = recorder.of(AppendEntries, sender="n1")
    assert appends
    assert all(m.entries for m in appends)  # no append that only passes a commit
    cluster.tick(cluster["n1"].config.heartbeat_ticks)  # ticks, then delivers
    assert all(cluster[name].log.committed == index for name in ("n2", "n3"))
    applied = [entry.data for entry in cluster.peers[node("n2")].applied]
    assert applied[-1] == b"x"


def test_a_commit_only_append_that_does_not_match_is_still_rejected() -> None:
    """A follower whose log no longer holds the leader's view of its match answers the
    commit-only append with a rejection, so the leader backs off and repairs it."""
    cluster = Cluster(3)
    cluster.elect("n1")
    leader = cluster["n1"]
    cluster.propose("n1", b"x")
    cluster.deliver()
    match = leader.log.last_index()
    message = AppendEntries(
        term=leader.term,
        sender=node("n1"),
        recipient=node("n2"),
        prev_index=match + 5,  # beyond n2's log: no match
        prev_term=leader.term,
        commit=match,
        commit_only=True,
    )
    cluster["n2"].step(message)
    sent = cluster.peers[node("n2")].handle_ready()
    (answer,) = [m for m in sent if isinstance(m, AppendEntriesResponse)]
    assert answer.reject
