"""Requests waiting for the Raft log: proposals until applied, reads until a read index."""

from __future__ import annotations

import attrs
import trio

from raftq.jobs.commands import Command, Result
from raftq.raft.types import Membership
from raftq.transport.wire import Failure


@attrs.frozen(kw_only=True)
class NotLeaderHere:
    """This node cannot take the request; ``leader_id`` is the leader it knows ("" if none).
    Internal: the client service forwards the request or answers ``Redirect``."""

    leader_id: str


Outcome = Result | Membership | Failure | NotLeaderHere | int
"""A command's result, a membership change's new membership, a failure, a redirection, or
(for a read) the index to wait for."""


@attrs.define(eq=False)
class Waiter:
    """One request's answer, set once: a result, or a failure."""

    event: trio.Event = attrs.field(factory=trio.Event)
    outcome: Outcome | None = None

    def resolve(self, outcome: Outcome) -> None:
        if not self.event.is_set():
            self.outcome = outcome
            self.event.set()


@attrs.define(eq=False)
class ProposalStatistics:
    """How the applier came by the commands this node proposed (``proposed_command``)."""

    reused: int = 0
    """Applied as the object proposed, not decoded."""
    overwritten: int = 0
    """The entry at a proposal's index came from another term (a newer leader's): decoded."""
    bytes_differed: int = 0
    """Same index and term, other bytes: never in a correct Raft log; decoded all the same."""


@attrs.define(eq=False)
class ProposalWaiters:
    """Proposals by log index, with the term they were proposed in.

    The applier resolves a waiter when its index is applied: with the result if the entry there
    still has the proposal's term, else with ``dropped`` (a new leader replaced it; the client
    retries, with its idempotency key).

    A leader's proposal also keeps the command it encoded and those bytes (``add(...,
    command=, data=)``), so that the applier need not decode the bytes this node has just
    encoded (``proposed_command``). Bounded as the proposals are: by the bytes a leader may
    hold uncommitted (``limits.RAFT_UNCOMMITTED_BYTES_MAX``); each leaves when its index is
    applied, or skipped by a snapshot.
    """

    by_index: dict[int, tuple[int, Waiter, Command | None, bytes]] = attrs.field(factory=dict)
    statistics: ProposalStatistics = attrs.field(factory=ProposalStatistics)

    def add(
        self,
        index: int,
        term: int,
        waiter: Waiter,
        command: Command | None = None,
        data: bytes = b"",
    ) -> None:
        assert command is None or data, "a proposed command is kept only with its bytes"
        older = self.by_index.get(index)
        if older is not None:  # this node proposed here in an earlier term, and lost it
            older[1].resolve(Failure(code="dropped", message="a leader change lost it; retry"))
        self.by_index[index] = (term, waiter, command, data)

    def proposed_command(self, index: int, term: int, data: bytes) -> Command | None:
        """The command this node proposed at ``index`` in ``term`` as ``data``, if it did: then
        the committed entry (``index``, ``term``, ``data``) is that proposal and its bytes
        decode to this very value (the codec's round trip,
        ``tests/test_codec.py::test_round_trip``). Raft's log matching alone makes the term
        enough (a leader writes one entry per index in its term); the bytes are compared too
        (by identity first: the log holds the object proposed), so that a command object is
        never applied for bytes other than the ones it was encoded to. Any other entry, e.g.
        one a newer leader wrote over a lost proposal, is not this node's: None, decode it."""
        pending = self.by_index.get(index)
        if pending is None or pending[2] is None:
            return None
        proposed_term, _, command, proposed_data = pending
        if proposed_term != term:
            self.statistics.overwritten += 1
            return None
        if proposed_data is not data and proposed_data != data:
            self.statistics.bytes_differed += 1
            return None
        self.statistics.reused += 1
        return command

    def applied(self, index: int, term: int, result: Result | Membership) -> None:
        pending = self.by_index.pop(index, None)
        if pending is None:
            return
        proposed_term, waiter, _, _ = pending
        if proposed_term == term:
            waiter.resolve(result)
        else:
            waiter.resolve(Failure(code="dropped", message="a leader change lost it; retry"))

    def skipped_to(self, index: int) -> None:
        """Everything up to ``index`` was replaced by a snapshot: those proposals are lost."""
        for pending_index in [i for i in self.by_index if i <= index]:
            _, waiter, _, _ = self.by_index.pop(pending_index)
            waiter.resolve(Failure(code="dropped", message="replaced by a snapshot; retry"))
