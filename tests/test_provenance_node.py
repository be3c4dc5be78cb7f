"""A job's provenance through a real cluster: ``Client.history`` and ``raftq job ID --history``
read back the log of the node asked, across its snapshot (nodes over TCP on 127.0.0.1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

import raftq
from raftq.cli import main
from raftq.jobs.commands import Claim, ClaimResult, Complete, Done, Enqueue, EnqueueResult
from raftq.jobs.provenance import LOG, SNAPSHOT
from raftq.transport.wire import CommandReply, SubmitCommand
from tests.node_helpers import RawClient, running_cluster, spec, wait_for_leader, wait_until

SNAPSHOT_ENTRIES = 30


async def test_a_job_s_history_names_every_entry_its_leader_and_the_refused_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_cluster(tmp_path, 3, snapshot_entries=SNAPSHOT_ENTRIES) as nodes:
        leader = await wait_for_leader(nodes)
        follower = next(node for node in nodes.values() if node is not leader)
        addresses = [node.config.address for node in nodes.values()]
        async with RawClient.connect(leader.config.address) as raw:

            async def submit(command: object) -> object:
                reply = await raw.call(SubmitCommand(command=command))  # type: ignore[arg-type]
                assert isinstance(reply, CommandReply), reply
                return reply.result

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

        async with raftq.connect([follower.config.address], timeout=20) as client:
            story = await client.history(job_id)
        told = [(e.event, e.fence, e.worker, e.leader, e.source) for e in story.events]
        who = leader.config.node_id
        assert told == [
            ("enqueued", 0, "", who, LOG),
            ("claimed", lease.fence, "n1/w1", who, LOG),
            ("refused: report", lease.fence - 1, "", who, LOG),
            ("succeeded", lease.fence, "n1/w1", who, LOG),
        ]
        assert story.events[1].index == lease.fence  # a fence is its claim's index
        assert {event.term for event in story.events} == {leader.raft.term}
        assert story.complete_from == 1

        # Past a snapshot the story before it is what the snapshot kept of the job.
        async with raftq.connect(addresses, timeout=20) as client:
            for n in range(SNAPSHOT_ENTRIES):
                await client.enqueue("filler", {"n": n})
            await wait_until(lambda: follower.log_writer.statistics.snapshots_saved >= 1)
            story = await client.history(job_id)
            with pytest.raises(raftq.JobNotFound):
                await client.history("no-such-job")
        assert story.complete_from > lease.fence
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
        assert printed["complete_from"] == story.complete_from
        assert (
            await trio.to_thread.run_sync(main, ["--cluster", cluster, "job", job_id, "--history"])
            == 0
        )
        table = capsys.readouterr().out
        assert (
            f"job {job_id}: every entry that touched it from index {story.complete_from}" in table
        )
        assert "the 3 events the snapshot kept (marked *)" in table
        assert f"{lease.fence}*" in table
        assert "n1/w1" in table
