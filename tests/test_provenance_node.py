"""A job's provenance through a real cluster: ``Client.history`` and ``raftq job ID --history``
read back the log of the node asked, across its snapshot (nodes over TCP on 127.0.0.1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

import raftq
from raftq.cli import main
from raftq.jobs.commands import (
    Claim,
    ClaimResult,
    Command,
    Complete,
    Done,
    Enqueue,
    EnqueueResult,
)
from raftq.jobs.provenance import LOG, SNAPSHOT
from raftq.transport.wire import CommandReply, SubmitCommand
from tests.node_helpers import RawClient, running_cluster, spec, wait_for_leader, wait_until

SNAPSHOT_ENTRIES = 30
ATTEMPTS = 5


async def test_a_job_s_history_names_every_entry_its_leader_and_the_refused_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_cluster(tmp_path, 3, snapshot_entries=SNAPSHOT_ENTRIES) as nodes:
        leader = await wait_for_leader(nodes)
        addresses = [node.config.address for node in nodes.values()]

        async def submit(command: Command) -> object:
            """To the leader, again to the new one if an election moved it (under load)."""
            for _ in range(ATTEMPTS):
                current = await wait_for_leader(nodes)
                async with RawClient.connect(current.config.address) as raw:
                    reply = await raw.call(SubmitCommand(command=command))
                if isinstance(reply, CommandReply):
                    return reply.result
            raise AssertionError(f"no leader took {command!r}: {reply!r}")

        enqueued = await submit(Enqueue(now_ms=0, jobs=(spec(type="email"),)))
        assert isinstance(enqueued, EnqueueResult)
        job_id = enqueued.jobs[0].job_id  # type: ignore[union-attr]
        claimed = await submit(Claim(now_ms=0, claimer="n1/w1", types=("email",)))
        assert isinstance(claimed, ClaimResult)
        (lease,) = claimed.leases
        late = await submit(Complete(now_ms=0, job_id=job_id, fence=lease.fence - 1))
        assert not isinstance(late, Done)  # refused: a stale fence
        done = await submit(Complete(now_ms=0, job_id=job_id, fence=lease.fence))
        assert isinstance(done, Done)

        follower = next(node for node in nodes.values() if node is not leader)
        async with raftq.connect([follower.config.address], timeout=20) as client:
            story = await client.history(job_id)
        # A leader elected while the job ran renews its lease: one more line, if one was.
        told = [
            (e.event, e.fence, e.worker, e.source)
            for e in story.events
            if e.event != "extended by a new leader"
        ]
        assert told == [
            ("enqueued", 0, "", LOG),
            ("claimed", lease.fence, "n1/w1", LOG),
            ("refused: report", lease.fence - 1, "", LOG),  # no lease had that fence
            ("succeeded", lease.fence, "n1/w1", LOG),
        ]
        assert story.events[1].index == lease.fence  # a fence is its claim's index
        if {event.term for event in story.events} == {leader.raft.term}:  # led throughout
            assert {event.leader for event in story.events} == {leader.config.node_id}
        else:  # an election under load: each term's leader, one per term
            by_term = {(event.term, event.leader) for event in story.events}
            assert len(by_term) == len({term for term, _ in by_term}), by_term
            assert {who for _, who in by_term} <= set(nodes), by_term
        assert story.complete_from == 1

        # Past a snapshot the story before it is what the snapshot kept of the job.
        async with raftq.connect(addresses, timeout=20) as client:
            for n in range(SNAPSHOT_ENTRIES):
                await client.enqueue("filler", {"n": n})
            # Every node: any may answer below (under load one that had not snapshotted yet
            # answered with its log from index 1).
            await wait_until(
                lambda: all(n.log_writer.statistics.snapshots_saved >= 1 for n in nodes.values())
            )
            story = await client.history(job_id)
            with pytest.raises(raftq.JobNotFound):
                await client.history("no-such-job")
        assert story.complete_from > lease.fence

        def blocking() -> list[str]:
            with raftq.SyncClient(addresses, timeout=20) as sync:
                return [event.event for event in sync.history(job_id).events]

        assert await trio.to_thread.run_sync(blocking) == ["enqueued", "claimed", "succeeded"]
        assert [(e.event, e.source) for e in story.events] == [
            ("enqueued", SNAPSHOT),
            ("claimed", SNAPSHOT),
            ("succeeded", SNAPSHOT),
        ]

        cluster = ",".join(addresses)
        shown = await trio.to_thread.run_sync(
            main, ["--cluster", cluster, "job", job_id, "--history", "--json"]
        )
        assert shown == 0
        printed = json.loads(capsys.readouterr().out)
        assert [event["event"] for event in printed["events"]] == [
            "enqueued",
            "claimed",
            "succeeded",
        ]
        assert printed["complete_from"] > lease.fence  # each node's own snapshot: may differ
        assert (
            await trio.to_thread.run_sync(main, ["--cluster", cluster, "job", job_id, "--history"])
            == 0
        )
        table = capsys.readouterr().out
        assert f"job {job_id}: every entry that touched it from index " in table
        assert "the 3 events the snapshot kept (marked *)" in table
        assert f"{lease.fence}*" in table
        assert "n1/w1" in table
