"""Randomized in-memory clusters of the pure Raft core (``raftq.raft``), checked at every step.

Each seed builds a cluster of 3 or 5 ``RaftCore`` nodes over ``MemoryStorage`` and runs a fault
phase: messages are dropped, delayed (held for a random number of steps), duplicated and
reordered; partitions (symmetric, one-way, one node isolated, minority/majority, random links)
come and heal; nodes crash at any point of their Ready cycle and restart from what they had
persisted. Meanwhile clients propose to whoever leads, ask for ReadIndex reads, and nodes take
snapshots of what they applied (chunked small, so lagging nodes receive multi-chunk
InstallSnapshot transfers). Then everything heals and the cluster must apply a final proposal
on every node within a bounded number of ticks.

Checked after every step:

1. election safety: at most one leader per term, over the whole run;
2. log matching: two persisted logs holding an entry with the same index and term are identical
   up to that index;
3. committed entries never change or disappear: a global index -> entry map of everything any
   node applied, installed from a snapshot or persisted below its commit index; every node must
   agree with it forever (its persisted committed prefix included), and a new leader's log must
   hold every entry committed before it was elected (leader completeness);
4. state machine safety: each node applies index after index (no gap, no repeat), the same entry
   as every other node, and never the same command twice;
5. durable promises: a node's persisted term never decreases, its vote never changes within a
   term, its commit never goes back and stays within its log;
6. ReadIndex: a read's index is at least every commit index known anywhere when it was asked,
   and no higher than any commit index ever was;
7. liveness (after the fault phase).

Everything random comes from ``random.Random(seed)``: a failure names its seed and step, and
``RAFTQ_RANDOM_SEED=17 pytest tests/test_raft_random.py`` replays it. ``RAFTQ_RANDOM_SEEDS=2000``
runs seeds 0..1999 instead of the default 0..299; ``RAFTQ_RANDOM_STEPS`` changes the length of
the fault phase (300 steps by default).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import attrs
import pytest

from raftq.errors import Busy, MembershipChangeError, NotLeader
from raftq.ids import NodeId
from raftq.raft.core import RaftConfig, RaftCore
from raftq.raft.log import IncomingSnapshot
from raftq.raft.messages import Message
from raftq.raft.ready import ReadState, Role
from raftq.raft.storage import MemoryStorage
from raftq.raft.types import Entry, EntryKind, HardState, Membership, SnapshotMeta
from tests.raft_cluster import ids, persist

DEFAULT_SEEDS = 300
DEFAULT_STEPS = 300


def chosen_seeds() -> list[int]:
    """``RAFTQ_RANDOM_SEED=17``: that seed alone; ``RAFTQ_RANDOM_SEEDS=2000``: seeds 0..1999."""
    if "RAFTQ_RANDOM_SEED" in os.environ:
        return [int(os.environ["RAFTQ_RANDOM_SEED"])]
    return list(range(int(os.environ.get("RAFTQ_RANDOM_SEEDS", DEFAULT_SEEDS))))


STEPS = int(os.environ.get("RAFTQ_RANDOM_STEPS", DEFAULT_STEPS))

LIVENESS_STEPS_MAX = 300
"""Steps (one tick each) the healed cluster gets to elect a leader and apply a proposal; the
seeds that pass need under 100."""
READY_ROUNDS_MAX = 50
"""Ready cycles per node and step (more are left for the next step)."""


class InvariantViolation(AssertionError):
    pass


# --- snapshots: the applied entries, encoded ----------------------------------------------------


def encode_applied(entries: Iterable[Entry]) -> bytes:
    return "\n".join(
        f"{entry.index} {entry.term} {entry.kind.value} {entry.data.hex()}" for entry in entries
    ).encode()


def decode_applied(data: bytes) -> list[Entry]:
    if not data:
        return []
    entries = []
    for line in data.decode().split("\n"):
        index, term, kind, payload = line.split(" ")
        entries.append(
            Entry(
                index=int(index),
                term=int(term),
                kind=EntryKind(int(kind)),
                data=bytes.fromhex(payload),
            )
        )
    return entries


def stored_snapshot_data(storage: MemoryStorage) -> bytes:
    meta = storage.snapshot_meta
    if meta.index == 0:
        return b""
    return storage.snapshot_chunk(meta, 0, storage.snapshot_size(meta))


# --- the network ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultProfile:
    """How hostile one seed's fault phase is (drawn from the seed)."""

    drop: float
    duplicate: float
    delay: float
    delay_steps_max: int
    reorder: float
    partition: float
    restart: float
    tick: float

    @classmethod
    def draw(cls, rng: random.Random) -> FaultProfile:
        return cls(
            drop=rng.choice((0.0, 0.02, 0.1, 0.25)),
            duplicate=rng.choice((0.0, 0.05, 0.2)),
            delay=rng.choice((0.0, 0.1, 0.3)),
            delay_steps_max=rng.randint(1, 12),
            reorder=rng.choice((0.0, 0.5, 1.0)),
            partition=rng.choice((0.01, 0.03, 0.08)),
            restart=rng.choice((0.0, 0.01, 0.03)),
            tick=rng.choice((0.25, 0.5, 0.75)),
        )


CALM = FaultProfile(
    drop=0.0,
    duplicate=0.0,
    delay=0.0,
    delay_steps_max=1,
    reorder=0.0,
    partition=0.0,
    restart=0.0,
    tick=1.0,
)


@dataclass(order=True)
class InFlight:
    deliver_at: int
    sequence: int
    message: Message = field(compare=False)


class Network:
    """Messages in flight: dropped, duplicated or held when sent; reordered and cut by
    partitions (directed links) when delivered."""

    def __init__(self, rng: random.Random, faults: FaultProfile) -> None:
        self.rng = rng
        self.faults = faults
        self.in_flight: list[InFlight] = []
        self.blocked: set[tuple[NodeId, NodeId]] = set()
        self.sequence = 0

    def send(self, message: Message, now: int) -> None:
        faults = self.faults
        if self.rng.random() < faults.drop:
            return
        copies = 2 if self.rng.random() < faults.duplicate else 1
        for _ in range(copies):
            held = 0
            if self.rng.random() < faults.delay:
                held = self.rng.randint(1, faults.delay_steps_max)
            self.sequence += 1
            self.in_flight.append(InFlight(now + 1 + held, self.sequence, message))

    def take_due(self, now: int) -> list[Message]:
        due = [item for item in self.in_flight if item.deliver_at <= now]
        if not due:
            return []
        self.in_flight = [item for item in self.in_flight if item.deliver_at > now]
        due.sort()
        messages = [item.message for item in due]
        if self.rng.random() < self.faults.reorder:
            self.rng.shuffle(messages)
        return messages

    def allows(self, message: Message) -> bool:
        return (message.sender, message.recipient) not in self.blocked


# --- the nodes ------------------------------------------------------------------------------------


class SimNode:
    """A node: its core, its durable storage and its state machine (the applied entries)."""

    def __init__(
        self, node_id: NodeId, config: RaftConfig, membership: Membership, rng: random.Random
    ) -> None:
        self.id = node_id
        self.config = config
        self.membership = membership
        self.storage = MemoryStorage()
        self.applied: list[Entry] = []
        self.restarts = 0
        self.core = self.boot(rng)
        # What the checker saw of the persisted state at the previous step.
        self.seen_hard_state = HardState()
        self.seen_leader_term: int | None = None

    def boot(self, rng: random.Random) -> RaftCore:
        return RaftCore(
            self.config,
            self.storage,
            random.Random(rng.getrandbits(64)),
            initial_membership=self.membership,
        )


# --- the simulation -------------------------------------------------------------------------------


class Simulation:
    def __init__(self, seed: int, steps: int) -> None:
        self.seed = seed
        self.steps = steps
        self.rng = rng = random.Random(seed)
        self.step_number = 0
        self.phase = "faults"
        size = rng.choice((3, 5))
        members = ids(size)
        membership = Membership(voters=members)
        self.faults = FaultProfile.draw(rng)
        self.network = Network(rng, self.faults)
        config = RaftConfig(
            node_id=members[0],
            election_ticks=10,
            heartbeat_ticks=1,
            snapshot_chunk_bytes=rng.choice((48, 128, 400)),  # snapshots go in several chunks
            append_bytes_max=rng.choice((64, 256, 1 << 20)),
            inflight_max=rng.choice((1, 3, 256)),
            uncommitted_bytes_max=rng.choice((300, 1 << 20)),
            apply_bytes_max=rng.choice((40, 1 << 20)),
            pre_vote=rng.random() < 0.8,
            check_quorum=rng.random() < 0.6,
        )
        self.nodes = {
            node_id: SimNode(node_id, attrs.evolve(config, node_id=node_id), membership, rng)
            for node_id in members
        }
        self.config_text = f"{size} nodes, {config}, {self.faults}"
        self.partition_until: int | None = None
        self.partition_text = ""
        self.next_command = 0
        self.next_read: dict[NodeId, int] = {}
        # The checker's memory.
        self.leaders: dict[int, NodeId] = {}
        self.committed: list[Entry | None] = [None]  # index -> the entry committed there
        self.command_index: dict[bytes, int] = {}
        self.reads: dict[tuple[NodeId, bytes], int] = {}  # (asker, context) -> commit floor
        self.committed_before_step = 0
        self.commit_high = 0  # the highest commit index any node ever had
        self.snapshots_taken = 0
        self.snapshots_installed = 0
        self.restarts = 0
        self.reads_answered = 0

    # --- failing ---------------------------------------------------------------------------------

    def fail(self, what: str) -> InvariantViolation:
        status = "; ".join(
            f"{node.id}: {node.core.role.value} t{node.core.term} commit={node.core.log.committed}"
            f" applied={len(node.applied)} snap={node.storage.snapshot_meta.index}"
            f" last={node.storage.last_index()}"
            for node in self.nodes.values()
        )
        progress = "; ".join(
            f"{node.id} t{node.core.term} -> {peer}: {peer_status.state} match={peer_status.match}"
            f" next={peer_status.next}"
            f" in_flight={len(node.core.progress[peer].inflights.last_indexes)}"
            for node in self.nodes.values()
            if node.core.role is Role.LEADER
            for peer, peer_status in node.core.status().peers.items()
            if peer != node.id
        )
        return InvariantViolation(
            f"seed={self.seed} step={self.step_number} ({self.phase}): {what}\n"
            f"  cluster: {self.config_text}\n  partition: {self.partition_text or 'none'}\n"
            f"  nodes: {status}\n  leaders' progress: {progress or 'no leader'}\n"
            f"  replay: RAFTQ_RANDOM_SEED={self.seed} pytest tests/test_raft_random.py"
        )

    # --- running ---------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            for step in range(1, self.steps + 1):
                self.step_number = step
                self.fault_step()
            self.phase = "liveness"
            self.liveness()
        except InvariantViolation:
            raise
        except Exception as error:
            raise self.fail(f"{type(error).__name__}: {error}") from error

    def fault_step(self) -> None:
        rng = self.rng
        self.committed_before_step = len(self.committed) - 1
        self.change_partition()
        self.client_actions()
        if rng.random() < self.faults.restart:
            self.crash_and_restart(rng.choice(list(self.nodes.values())))
        if rng.random() < self.faults.tick:
            for node in self.nodes.values():
                if rng.random() < 0.95:  # a node that misses a tick: clock skew
                    node.core.tick()
        self.process_readies()
        self.deliver()
        if rng.random() < self.faults.restart:
            # Crash after receiving messages, before (or while) handling the Ready they caused.
            self.crash_and_restart(rng.choice(list(self.nodes.values())))
        self.process_readies()
        self.check()

    def liveness(self) -> None:
        """Heal everything and stop the faults; the cluster must apply a proposal everywhere."""
        self.network.blocked = set()
        self.partition_text = "healed"
        self.partition_until = None
        self.faults = self.network.faults = CALM
        finals: list[tuple[int, bytes]] = []
        final_term = -1
        for _ in range(LIVENESS_STEPS_MAX):
            self.step_number += 1
            self.committed_before_step = len(self.committed) - 1
            leaders = [node for node in self.nodes.values() if node.core.role is Role.LEADER]
            if leaders:
                leader = max(leaders, key=lambda node: node.core.term)
                if leader.core.term != final_term:
                    command = f"final-{len(finals)}".encode()
                    try:
                        proposal = leader.core.propose([command])
                    except (NotLeader, Busy):
                        pass
                    else:
                        finals.append((proposal.first_index, command))
                        final_term = proposal.term
            for node in self.nodes.values():
                node.core.tick()
            self.process_readies()
            self.deliver()
            self.process_readies()
            self.check()
            for index, command in finals:
                if all(
                    len(node.applied) >= index and node.applied[index - 1].data == command
                    for node in self.nodes.values()
                ):
                    return
        raise self.fail(
            f"liveness: no final proposal applied by every node within {LIVENESS_STEPS_MAX}"
            f" healed steps (proposed {finals})"
        )

    # --- faults ----------------------------------------------------------------------------------

    def change_partition(self) -> None:
        rng = self.rng
        if self.partition_until is not None:
            if self.step_number >= self.partition_until:
                self.network.blocked = set()
                self.partition_until = None
                self.partition_text = ""
            return
        if rng.random() >= self.faults.partition:
            return
        members = sorted(self.nodes)
        shuffled = members[:]
        rng.shuffle(shuffled)
        leaders = [node.id for node in self.nodes.values() if node.core.role is Role.LEADER]
        if leaders and rng.random() < 0.6:
            # Most interesting when the leader ends up alone or in the minority: it may go on
            # leading (and taking proposals) while the majority elects another.
            leader = rng.choice(leaders)
            shuffled.remove(leader)
            shuffled.insert(0, leader)
        kind = rng.choice(("isolate", "split", "one-way split", "one-way node", "links"))
        blocked: set[tuple[NodeId, NodeId]] = set()
        if kind == "isolate":
            (alone,) = shuffled[:1]
            for other in shuffled[1:]:
                blocked |= {(alone, other), (other, alone)}
        elif kind in ("split", "one-way split"):
            cut = rng.randint(1, (len(members) - 1) // 2)
            minority, majority = shuffled[:cut], shuffled[cut:]
            # One way: usually the minority cannot send to the majority, sometimes the reverse.
            senders, receivers = minority, majority
            if rng.random() < 0.25:
                senders, receivers = majority, minority
            for a in senders:
                for b in receivers:
                    blocked.add((a, b))
                    if kind == "split":
                        blocked.add((b, a))
        elif kind == "one-way node":
            (alone,) = shuffled[:1]
            deaf = rng.random() < 0.5
            for other in shuffled[1:]:
                blocked.add((other, alone) if deaf else (alone, other))
        else:
            blocked = {(a, b) for a in members for b in members if a != b and rng.random() < 0.3}
        self.network.blocked = blocked
        self.partition_until = self.step_number + rng.randint(5, 120)
        self.partition_text = f"{kind} until step {self.partition_until}: {sorted(blocked)}"

    def crash_and_restart(self, node: SimNode) -> None:
        """Crash at some point of the Ready cycle, then restart from the storage alone."""
        stage = self.rng.choice(("idle", "before persist", "before messages", "before apply"))
        if stage != "idle" and node.core.has_ready():
            self.handle_ready(node, crash=stage)
        self.restarts += 1
        node.restarts += 1
        node.core = node.boot(self.rng)
        data = stored_snapshot_data(node.storage)
        node.applied = decode_applied(data)
        self.check_snapshot_content(node, node.storage.snapshot_meta, node.applied)

    # --- clients ---------------------------------------------------------------------------------

    def client_actions(self) -> None:
        rng = self.rng
        nodes = list(self.nodes.values())
        if rng.random() < 0.4:
            leaders = [node for node in nodes if node.core.role is Role.LEADER]
            target = rng.choice(leaders) if leaders and rng.random() < 0.9 else rng.choice(nodes)
            commands = []
            for _ in range(rng.randint(1, 3)):
                self.next_command += 1
                commands.append(f"c{self.next_command}".encode())
            with contextlib.suppress(NotLeader, Busy):  # no leader here, or too much pending
                target.core.propose(commands)
        if rng.random() < 0.08:
            self.read(rng.choice(nodes))
        if rng.random() < 0.05:
            # Often the leader's, so that followers behind it need InstallSnapshot.
            leaders = [node for node in nodes if node.core.role is Role.LEADER]
            self.take_snapshot(rng.choice(leaders if leaders and rng.random() < 0.5 else nodes))
        if rng.random() < 0.005:
            rng.choice(nodes).core.campaign()
        if rng.random() < 0.005:
            leaders = [node for node in nodes if node.core.role is Role.LEADER]
            if leaders:
                leader = rng.choice(leaders)
                with contextlib.suppress(NotLeader, MembershipChangeError):
                    leader.core.transfer_leadership(rng.choice(sorted(self.nodes)))

    def read(self, node: SimNode) -> None:
        # Each node numbers its own reads, as the node does: contexts repeat across nodes.
        self.next_read[node.id] = self.next_read.get(node.id, 0) + 1
        context = f"r{self.next_read[node.id]}".encode()
        # Whatever any node knows to be committed now, the read must reflect.
        floor = max(other.core.log.committed for other in self.nodes.values())
        try:
            node.core.read_index(context)
        except NotLeader:
            return
        self.reads[node.id, context] = floor

    def take_snapshot(self, node: SimNode) -> None:
        """The application snapshots its state at its applied index and compacts the log."""
        storage = node.storage
        applied = node.core.log.applied
        if applied != len(node.applied):
            raise self.fail(f"{node.id}: core applied {applied} but the node {len(node.applied)}")
        if applied <= storage.snapshot_meta.index or node.core.log.pending_snapshot is not None:
            return
        meta = SnapshotMeta(
            index=applied, term=storage.term(applied), membership=node.core.membership
        )
        storage.create_snapshot(meta, encode_applied(node.applied))
        self.snapshots_taken += 1

    # --- the node's duty per Ready ---------------------------------------------------------------

    def send(self, messages: Iterable[Message]) -> None:
        for message in messages:
            self.network.send(message, self.step_number)

    def process_readies(self) -> None:
        for _ in range(READY_ROUNDS_MAX):
            busy = False
            for node in self.nodes.values():
                if node.core.has_ready():
                    busy = True
                    self.handle_ready(node)
            if not busy:
                return

    def handle_ready(self, node: SimNode, crash: str | None = None) -> None:
        ready = node.core.ready()
        self.send(ready.early_messages)
        if crash == "before persist":
            return
        persist(node.storage, ready)
        if crash == "before messages":
            return
        self.send(ready.messages)
        if crash == "before apply":
            return
        if ready.snapshot is not None:
            self.install_snapshot(node, ready.snapshot)
        for entry in ready.committed_entries:
            self.apply(node, entry)
        for read_state in ready.read_states:
            self.check_read(node, read_state)
        node.core.advance(ready)

    def deliver(self) -> None:
        for message in self.network.take_due(self.step_number):
            recipient = self.nodes.get(message.recipient)
            if recipient is None or not self.network.allows(message):
                continue
            recipient.core.step(message)
            if self.rng.random() < 0.3 and recipient.core.has_ready():
                self.handle_ready(recipient)

    # --- invariants on what nodes apply ----------------------------------------------------------

    def record_committed(self, node: SimNode, entry: Entry, how: str) -> None:
        """``entry`` is committed (``node`` applied it or holds it below its commit index)."""
        index = entry.index
        while len(self.committed) <= index:
            self.committed.append(None)
        known = self.committed[index]
        if known is None:
            self.committed[index] = entry
            if entry.kind is EntryKind.COMMAND:
                first = self.command_index.setdefault(entry.data, index)
                if first != index:
                    raise self.fail(
                        f"command {entry.data!r} committed twice, at {first} and {index}"
                    )
        elif known != entry:
            raise self.fail(f"{node.id} {how} {entry} at {index}, but {known} was committed there")

    def check_committed(self, node: SimNode, entries: list[Entry], how: str) -> None:
        """``entries`` (consecutive) are committed: they must be the ones committed there."""
        if not entries:
            return
        low = entries[0].index
        # Fast path: the same Entry objects as recorded (entries travel by reference).
        if entries == self.committed[low : low + len(entries)]:
            return
        for entry in entries:
            self.record_committed(node, entry, how)

    def apply(self, node: SimNode, entry: Entry) -> None:
        expected = len(node.applied) + 1
        if entry.index != expected:
            raise self.fail(f"{node.id} applies entry {entry.index}, expected {expected}")
        self.record_committed(node, entry, "applies")
        node.applied.append(entry)

    def install_snapshot(self, node: SimNode, snapshot: IncomingSnapshot) -> None:
        """The application state is replaced by the snapshot's content."""
        meta = snapshot.meta
        if meta.index <= len(node.applied):
            raise self.fail(
                f"{node.id} installs snapshot {meta.index} but has applied {len(node.applied)}"
            )
        content = decode_applied(snapshot.data)
        self.check_snapshot_content(node, meta, content)
        applied = node.applied
        if content[: len(applied)] != applied:
            raise self.fail(f"{node.id}: snapshot {meta.index} rewrites entries it had applied")
        node.applied = content
        self.snapshots_installed += 1

    def check_snapshot_content(
        self, node: SimNode, meta: SnapshotMeta, content: list[Entry]
    ) -> None:
        if [entry.index for entry in content] != list(range(1, meta.index + 1)):
            raise self.fail(f"{node.id}: snapshot {meta} does not hold entries 1..{meta.index}")
        if content and content[-1].term != meta.term:
            raise self.fail(f"{node.id}: snapshot {meta} ends with {content[-1]}")
        for entry in content:
            self.record_committed(node, entry, "has in a snapshot")

    def check_read(self, node: SimNode, read_state: ReadState) -> None:
        floor = self.reads.get((node.id, read_state.context))
        if floor is None:
            raise self.fail(f"{node.id} got {read_state}, which it never asked for")
        ceiling = max(
            self.commit_high, *(other.core.log.committed for other in self.nodes.values())
        )
        if read_state.index > ceiling:
            raise self.fail(f"{node.id}: {read_state} is past every commit index ({ceiling})")
        if read_state.index < floor:
            raise self.fail(
                f"{node.id}: stale read {read_state}: index {floor} was committed when asked"
            )
        self.reads_answered += 1

    # --- invariants on the state after each step -------------------------------------------------

    def check(self) -> None:
        for node in self.nodes.values():
            self.commit_high = max(self.commit_high, node.core.log.committed)
            self.check_leader(node)
            self.check_persisted(node)
            if node.core.log.applied != len(node.applied):
                raise self.fail(
                    f"{node.id}: core applied {node.core.log.applied}, node {len(node.applied)}"
                )
        self.check_log_matching()

    def check_leader(self, node: SimNode) -> None:
        core = node.core
        if core.role is not Role.LEADER:
            return
        leader = self.leaders.setdefault(core.term, node.id)
        if leader != node.id:
            raise self.fail(f"two leaders in term {core.term}: {leader} and {node.id}")
        if node.seen_leader_term == core.term:
            return
        node.seen_leader_term = core.term
        # Newly elected: it must hold every entry committed before this step.
        log = core.log
        high = self.committed_before_step
        low = log.first_index()
        if high >= low:
            if log.last_index() < high:
                raise self.fail(
                    f"new leader {node.id} (term {core.term}) lacks committed entries"
                    f" {log.last_index() + 1}..{high}"
                )
            self.check_committed(node, log.entries(low, high + 1), "as new leader holds")

    def check_persisted(self, node: SimNode) -> None:
        storage = node.storage
        hard_state = storage.hard_state
        seen = node.seen_hard_state
        if hard_state.term < seen.term:
            raise self.fail(f"{node.id}: persisted term went back {seen.term} -> {hard_state}")
        if hard_state.term == seen.term and seen.vote is not None and hard_state.vote != seen.vote:
            raise self.fail(f"{node.id}: vote changed within term: {seen} -> {hard_state}")
        if hard_state.commit < seen.commit:
            raise self.fail(f"{node.id}: persisted commit went back {seen} -> {hard_state}")
        node.seen_hard_state = hard_state
        snapshot = storage.snapshot_meta
        if not snapshot.index <= hard_state.commit <= storage.last_index():
            raise self.fail(
                f"{node.id}: persisted commit {hard_state.commit} outside"
                f" [{snapshot.index}, {storage.last_index()}]: it could not restart"
            )
        if snapshot.index > 0:
            known = self.committed[snapshot.index] if snapshot.index < len(self.committed) else None
            if known is not None and known.term != snapshot.term:
                raise self.fail(f"{node.id}: snapshot {snapshot} but {known} was committed")
        # The committed prefix of the persisted log.
        if hard_state.commit > snapshot.index:
            entries = storage.entries(snapshot.index + 1, hard_state.commit + 1)
            self.check_committed(node, entries, "persists below its commit index")

    def check_log_matching(self) -> None:
        nodes = list(self.nodes.values())
        for position, a in enumerate(nodes):
            for b in nodes[position + 1 :]:
                self.check_pair(a.id, a.storage, b.id, b.storage)

    def check_pair(self, a_id: NodeId, a: MemoryStorage, b_id: NodeId, b: MemoryStorage) -> None:
        low = max(a.first_index(), b.first_index())
        high = min(a.last_index(), b.last_index())
        # The highest index where both logs hold an entry of the same term.
        index = high
        while index >= low and a.term(index) != b.term(index):
            index -= 1
        if index < low:
            return
        a_entries = a.entries(low, index + 1)
        b_entries = b.entries(low, index + 1)
        if a_entries != b_entries:
            a_entry, b_entry = next(
                (x, y) for x, y in zip(a_entries, b_entries, strict=True) if x != y
            )
            raise self.fail(
                f"log matching: {a_id} and {b_id} agree on the term of entry {index} but"
                f" differ at {a_entry.index}: {a_entry} vs {b_entry}"
            )


@pytest.mark.parametrize("seed", chosen_seeds(), ids=lambda seed: f"seed{seed}")
def test_random_cluster(seed: int) -> None:
    Simulation(seed, STEPS).run()
