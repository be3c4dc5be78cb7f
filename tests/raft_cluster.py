"""An in-memory cluster of RaftCores for tests: it plays the node's part of the Ready
contract (persist into MemoryStorage, send, apply, advance) and delivers messages, with
hooks to drop, hold or reorder them."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from raftq.ids import NodeId
from raftq.raft.core import RaftConfig, RaftCore
from raftq.raft.messages import Message
from raftq.raft.ready import ReadState, Ready
from raftq.raft.storage import MemoryStorage
from raftq.raft.types import Entry, EntryKind, Membership

Filter = Callable[[Message], bool]
"""Return False to drop the message."""


def ids(count: int) -> tuple[NodeId, ...]:
    return tuple(NodeId(f"n{number}") for number in range(1, count + 1))


def persist(storage: MemoryStorage, ready: Ready) -> None:
    """What a node does with a Ready before sending its messages."""
    if ready.snapshot is not None:
        storage.apply_snapshot(ready.snapshot.meta, ready.snapshot.data)
    storage.append(ready.entries)
    if ready.hard_state is not None:
        storage.hard_state = ready.hard_state


class Peer:
    """One node: its core, its storage and what it applied."""

    def __init__(
        self,
        node_id: NodeId,
        membership: Membership,
        storage: MemoryStorage | None = None,
        seed: int = 0,
        **config: object,
    ) -> None:
        self.id = node_id
        self.storage = storage or MemoryStorage()
        self.config = RaftConfig(node_id=node_id, **config)  # type: ignore[arg-type]
        self.membership = membership
        self.seed = seed
        self.applied: list[Entry] = []
        self.read_states: list[ReadState] = []
        self.snapshots_installed = 0
        self.core = self._new_core()

    def _new_core(self) -> RaftCore:
        return RaftCore(
            self.config,
            self.storage,
            random.Random(f"{self.seed}:{self.id}"),
            initial_membership=self.membership,
        )

    def restart(self) -> None:
        """Crash and restart from what was persisted (the unsent and unpersisted is lost)."""
        self.core = self._new_core()
        snapshot = self.storage.snapshot_meta
        self.applied = [entry for entry in self.applied if entry.index <= snapshot.index]

    def handle_ready(self) -> list[Message]:
        """Persist, apply, advance; return the messages to send (early ones first)."""
        if not self.core.has_ready():
            return []
        ready = self.core.ready()
        persist(self.storage, ready)
        if ready.snapshot is not None:
            self.snapshots_installed += 1
        self.applied.extend(ready.committed_entries)
        self.read_states.extend(ready.read_states)
        self.core.advance(ready)
        return [*ready.early_messages, *ready.messages]

    def commands(self) -> list[bytes]:
        return [entry.data for entry in self.applied if entry.kind is EntryKind.COMMAND]


class Cluster:
    def __init__(self, size: int = 3, *, learners: int = 0, seed: int = 0, **config: object):
        members = ids(size + learners)
        self.membership = Membership(voters=members[:size], learners=members[size:])
        self.peers = {node: Peer(node, self.membership, seed=seed, **config) for node in members}
        self.filters: list[Filter] = []
        self.in_flight: list[Message] = []
        self.delivered = 0

    def __getitem__(self, node: str) -> RaftCore:
        return self.peers[NodeId(node)].core

    def add_peer(self, node: str, membership: Membership | None = None, **config: object) -> Peer:
        peer = Peer(NodeId(node), membership or Membership(), **config)
        self.peers[peer.id] = peer
        return peer

    def isolate(self, node: str) -> None:
        self.filters.append(lambda m: node not in (m.sender, m.recipient))

    def partition(self, *groups: Iterable[str]) -> None:
        side = {member: number for number, group in enumerate(groups) for member in group}
        self.filters.append(lambda m: side.get(m.sender) == side.get(m.recipient))

    def heal(self) -> None:
        self.filters = []

    def allowed(self, message: Message) -> bool:
        return all(check(message) for check in self.filters)

    def collect(self) -> None:
        """Run every peer's Ready once; queue what they send."""
        for peer in list(self.peers.values()):
            self.in_flight.extend(peer.handle_ready())

    def deliver(self, rounds_max: int = 1000) -> None:
        """Handle Readies and deliver messages until the cluster is quiet."""
        for _ in range(rounds_max):
            self.collect()
            if not self.in_flight:
                return
            batch, self.in_flight = self.in_flight, []
            for message in batch:
                if self.allowed(message) and message.recipient in self.peers:
                    self.delivered += 1
                    self.peers[message.recipient].core.step(message)
        raise AssertionError("the cluster did not go quiet")

    def tick(self, count: int = 1) -> None:
        for _ in range(count):
            for peer in self.peers.values():
                peer.core.tick()
            self.deliver()

    def elect(self, node: str = "n1") -> RaftCore:
        self[node].campaign()
        self.deliver()
        assert self[node].status().role.value == "leader", self[node].status()
        return self[node]

    def leaders(self) -> list[RaftCore]:
        return [peer.core for peer in self.peers.values() if peer.core.role.value == "leader"]

    def propose(self, node: str, *commands: bytes) -> None:
        self[node].propose(list(commands))
        self.deliver()
