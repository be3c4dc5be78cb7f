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
class ProposalWaiters:
    """Proposals by log index, with the term they were proposed in.

    The applier resolves a waiter when its index is applied: with the result if the entry there
    still has the proposal's term, else with ``dropped`` (a new leader replaced it; the client
    retries, with its idempotency key).

    A leader's proposal also keeps the command it encoded (``add(..., command=)``), so that
    the applier need not decode the bytes this node has just encoded (``proposed_command``).
    """

    by_index: dict[int, tuple[int, Waiter, Command | None]] = attrs.field(factory=dict)

    def add(self, index: int, term: int, waiter: Waiter, command: Command | None = None) -> None:
        self.by_index[index] = (term, waiter, command)

    def proposed_command(self, index: int, term: int) -> Command | None:
        """The command this node proposed at ``index`` in ``term``, if it did: then the entry
        at ``index`` with ``term`` is that proposal (Raft's log matching: a leader makes one
        entry per index in its term), and its bytes decode to this very value (the codec's
        round trip, ``tests/test_codec.py::test_round_trip``). Any other entry, e.g. one a
        newer leader wrote over a dropped proposal, is not this node's: None, decode it."""
        pending = self.by_index.get(index)
        if pending is None or pending[0] != term:
            return None
        return pending[2]

    def applied(self, index: int, term: int, result: Result | Membership) -> None:
        pending = self.by_index.pop(index, None)
        if pending is None:
            return
        proposed_term, waiter, _ = pending
        if proposed_term == term:
            waiter.resolve(result)
        else:
            waiter.resolve(Failure(code="dropped", message="a leader change lost it; retry"))

    def skipped_to(self, index: int) -> None:
        """Everything up to ``index`` was replaced by a snapshot: those proposals are lost."""
        for pending_index in [i for i in self.by_index if i <= index]:
            _, waiter, _ = self.by_index.pop(pending_index)
            waiter.resolve(Failure(code="dropped", message="replaced by a snapshot; retry"))
