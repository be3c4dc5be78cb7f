"""The applier: a leader applies the commands it proposed without decoding their bytes, and
never trusts a proposal's object for an entry another leader wrote (the log stays the truth)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from raftq import codec
from raftq.ids import NodeId
from raftq.jobs.commands import Command, Enqueue, EnqueueResult
from raftq.jobs.machine import JobStateMachine
from raftq.node.applier import Applier, ApplyBatch, run_inline
from raftq.node.waiters import ProposalWaiters, Waiter
from raftq.raft.types import Entry, Membership, SnapshotMeta
from raftq.transport.wire import Failure
from tests.node_helpers import spec


def _never_saved(meta: SnapshotMeta, data: bytes) -> Waiter:
    raise AssertionError("no snapshot is due in these tests")


async def _apply(waiters: ProposalWaiters, entries: tuple[Entry, ...]) -> Applier:
    sender, receiver = trio.open_memory_channel[ApplyBatch](1)
    applier = Applier(
        JobStateMachine(),
        applied_index=0,
        membership=Membership(voters=(NodeId("n1"),)),
        waiters=waiters,
        save_snapshot=_never_saved,
        snapshot_entries=0,
        batches=receiver,
        offload=run_inline,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(applier.run)
        await sender.send(ApplyBatch(snapshot=None, entries=entries))
        with trio.fail_after(5):
            await applier.wait_applied(entries[-1].index)
        nursery.cancel_scope.cancel()
    return applier


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    decode = codec.decode

    def counting(data: bytes, cls: Any) -> Any:
        calls.append(len(data))
        return decode(data, cls)

    monkeypatch.setattr(codec, "decode", counting)  # the applier reads codec.decode
    return calls


async def test_a_leader_applies_what_it_proposed_in_its_term_without_decoding_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decodes = _count_decodes(monkeypatch)
    waiters = ProposalWaiters()
    command: Command = Enqueue(now_ms=5, jobs=(spec(id="mine"),))
    waiter = Waiter()
    data = codec.encode(command, Command)
    waiters.add(1, 3, waiter, command, data)
    entry = Entry(index=1, term=3, data=data)
    applier = await _apply(waiters, (entry,))
    assert decodes == []
    assert applier.proposals.reused == 1
    assert isinstance(waiter.outcome, EnqueueResult)
    assert applier.jobs.get("mine") is not None
    assert waiters.by_index == {}


async def test_an_entry_a_newer_leader_wrote_over_a_proposal_is_applied_from_its_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The proposal at index 1 (term 3) was lost in a leader change; the entry committed there
    (term 4) is another leader's. Its bytes are applied, not the stale object, on this node as
    on every other, and the proposer is told its command was dropped."""
    decodes = _count_decodes(monkeypatch)
    waiters = ProposalWaiters()
    stale: Command = Enqueue(now_ms=5, jobs=(spec(id="lost"),))
    waiter = Waiter()
    waiters.add(1, 3, waiter, stale, codec.encode(stale, Command))
    committed: Command = Enqueue(now_ms=6, jobs=(spec(id="theirs"),))
    entry = Entry(index=1, term=4, data=codec.encode(committed, Command))
    applier = await _apply(waiters, (entry,))
    assert len(decodes) == 1
    assert applier.proposals.overwritten == 1
    assert applier.jobs.get("theirs") is not None
    assert applier.jobs.get("lost") is None
    assert isinstance(waiter.outcome, Failure)
    assert waiter.outcome.code == "dropped"


async def test_a_proposal_is_applied_as_an_object_only_for_the_bytes_it_was_encoded_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same index, same term, other bytes: never in a correct Raft log (a leader writes one
    entry per index in its term), so this is the guard behind that argument: the applied
    command is always what the committed bytes say."""
    decodes = _count_decodes(monkeypatch)
    waiters = ProposalWaiters()
    proposed: Command = Enqueue(now_ms=5, jobs=(spec(id="proposed"),))
    waiters.add(1, 3, Waiter(), proposed, codec.encode(proposed, Command))
    committed: Command = Enqueue(now_ms=5, jobs=(spec(id="committed"),))
    entry = Entry(index=1, term=3, data=codec.encode(committed, Command))
    applier = await _apply(waiters, (entry,))
    assert len(decodes) == 1
    assert applier.jobs.get("committed") is not None
    assert applier.jobs.get("proposed") is None
    assert applier.proposals.bytes_differed == 1


async def test_equal_bytes_read_back_are_the_proposal_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The log normally hands back the very bytes object proposed; an equal copy (read back
    from the WAL) is the same entry: no decode."""
    decodes = _count_decodes(monkeypatch)
    waiters = ProposalWaiters()
    command: Command = Enqueue(now_ms=5, jobs=(spec(id="mine"),))
    data = codec.encode(command, Command)
    waiters.add(1, 3, Waiter(), command, data)
    entry = Entry(index=1, term=3, data=bytes(bytearray(data)))
    assert entry.data is not data
    applier = await _apply(waiters, (entry,))
    assert decodes == []
    assert applier.proposals.reused == 1


async def test_entries_this_node_did_not_propose_are_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A follower's entries, or a leader's from before it led: no proposal, decode."""
    decodes = _count_decodes(monkeypatch)
    commands: list[Command] = [Enqueue(now_ms=n, jobs=(spec(id=f"j{n}"),)) for n in (1, 2)]
    entries = tuple(
        Entry(index=n, term=1, data=codec.encode(command, Command))
        for n, command in enumerate(commands, start=1)
    )
    applier = await _apply(ProposalWaiters(), entries)
    assert len(decodes) == 2
    assert applier.jobs.get("j1") is not None
    assert applier.jobs.get("j2") is not None


def test_a_proposal_at_an_index_this_node_proposed_at_before_drops_the_older_one() -> None:
    """A node that led, lost its uncommitted proposal at index 5 to a newer leader, and leads
    again, proposing at index 5 anew: the older proposal's client hears "dropped" now (and
    retries with its key), not after its own timeout (perf16c's report)."""
    waiters = ProposalWaiters()
    older, newer = Waiter(), Waiter()
    waiters.add(5, 1, older)
    waiters.add(5, 3, newer)
    assert isinstance(older.outcome, Failure)
    assert older.outcome.code == "dropped"
    assert newer.outcome is None
