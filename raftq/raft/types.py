"""The Raft values that storage persists: log entries, hard state, snapshot metadata.

Pure values shared by the Raft core (which produces them) and ``raftq.storage`` (which makes
them durable). All are frozen and carried by ``raftq.codec``.
"""

from __future__ import annotations

import enum

import attrs

from raftq import codec
from raftq.ids import NodeId


class EntryKind(enum.IntEnum):
    """What an entry's ``data`` means."""

    COMMAND = 0
    """An application command for the job state machine (opaque bytes to Raft)."""
    NOOP = 1
    """The entry a new leader appends at once to commit earlier terms (Raft 5.4.2); its data
    is the leader's node id (empty in logs written before provenance)."""
    MEMBERSHIP = 2
    """An encoded ``Membership``: the configuration takes effect when appended."""


@codec.register_positional
@attrs.frozen(kw_only=True)
class Entry:
    """One Raft log entry. Carried positionally: it is the hot path of the WAL and the wire."""

    index: int = attrs.field(validator=attrs.validators.gt(0))
    term: int = attrs.field(validator=attrs.validators.ge(0))
    kind: EntryKind = EntryKind.COMMAND
    data: bytes = b""


@codec.register
@attrs.frozen(kw_only=True)
class HardState:
    """What a node must remember across a crash to keep its promises (Raft figure 2).

    ``term`` and ``vote`` must be durable before any message that depends on them is sent;
    ``commit`` may lag (it is recomputed from the leader) but never exceeds the durable log.
    """

    term: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    vote: NodeId | None = None
    commit: int = attrs.field(default=0, validator=attrs.validators.ge(0))


def _sorted_unique(
    instance: object, attribute: attrs.Attribute[tuple[NodeId, ...]], value: tuple[NodeId, ...]
) -> None:
    if list(value) != sorted(set(value)):
        raise ValueError(f"{attribute.name} must be sorted and without repeats: {value!r}")


@codec.register
@attrs.frozen(kw_only=True)
class Membership:
    """The cluster configuration: voters decide, learners only receive the log.

    ``addresses``: where members listen, (node, "HOST:PORT") sorted by node. Raft never reads
    it; it rides along so that every node, and every future leader, can reach a member added
    at run time (an operator gives the address once, to ``raftq cluster add``).

    Tuples kept sorted (not sets) so that encoding, iteration and digests are deterministic.
    """

    voters: tuple[NodeId, ...] = attrs.field(default=(), validator=_sorted_unique)
    learners: tuple[NodeId, ...] = attrs.field(default=(), validator=_sorted_unique)
    addresses: tuple[tuple[NodeId, str], ...] = ()

    def __attrs_post_init__(self) -> None:
        overlap = set(self.voters) & set(self.learners)
        if overlap:
            raise ValueError(f"nodes both voter and learner: {sorted(overlap)}")
        nodes = [node for node, _ in self.addresses]
        if nodes != sorted(set(nodes)):
            raise ValueError(f"addresses must be sorted by node, without repeats: {nodes!r}")

    @property
    def members(self) -> tuple[NodeId, ...]:
        return tuple(sorted(self.voters + self.learners))

    def address_of(self, node: NodeId) -> str:
        """The address recorded for ``node``, or ""."""
        for member, address in self.addresses:
            if member == node:
                return address
        return ""


@codec.register
@attrs.frozen(kw_only=True)
class SnapshotMeta:
    """Where a snapshot sits in the log: it replaces entries 1..index (whose last term is term)."""

    index: int = attrs.field(validator=attrs.validators.ge(0))
    term: int = attrs.field(validator=attrs.validators.ge(0))
    membership: Membership = Membership()
