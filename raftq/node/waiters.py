"""Requests waiting for the Raft log: proposals until applied, reads until a read index."""

from __future__ import annotations

import attrs
import trio

from raftq.jobs.commands import Result
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
    """

    by_index: dict[int, tuple[int, Waiter]] = attrs.field(factory=dict)

    def add(self, index: int, term: int, waiter: Waiter) -> None:
        self.by_index[index] = (term, waiter)

    def applied(self, index: int, term: int, result: Result | Membership) -> None:
        pending = self.by_index.pop(index, None)
        if pending is None:
            return
        proposed_term, waiter = pending
        if proposed_term == term:
            waiter.resolve(result)
        else:
            waiter.resolve(Failure(code="dropped", message="a leader change lost it; retry"))

    def skipped_to(self, index: int) -> None:
        """Everything up to ``index`` was replaced by a snapshot: those proposals are lost."""
        for pending_index in [i for i in self.by_index if i <= index]:
            _, waiter = self.by_index.pop(pending_index)
            waiter.resolve(Failure(code="dropped", message="replaced by a snapshot; retry"))
