"""Metrics: every name of CONTRACT.md, served over HTTP, in valid Prometheus text format."""

from __future__ import annotations

from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families

from raftq.jobs.commands import Claim, ClaimResult, Complete, Enqueue
from raftq.transport.wire import CommandReply, SubmitCommand
from tests.node_helpers import RawClient, free_ports, running_cluster, spec, wait_for_leader

CONTRACT_METRICS = {
    "raftq_jobs_enqueued": "counter",
    "raftq_jobs_finished": "counter",
    "raftq_jobs": "gauge",
    "raftq_job_run_seconds": "histogram",
    "raftq_job_wait_seconds": "histogram",
    "raftq_raft_term": "gauge",
    "raftq_raft_is_leader": "gauge",
    "raftq_raft_commit_index": "gauge",
    "raftq_raft_applied_index": "gauge",
    "raftq_raft_leader_changes": "counter",
    "raftq_wal_fsync_seconds": "histogram",
    "raftq_wal_bytes": "counter",
    "raftq_snapshot_seconds": "histogram",
    "raftq_recovery_seconds": "gauge",
}


async def scrape(port: int, path: str = "/metrics") -> tuple[str, str]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        response = b""
        with trio.fail_after(10):
            while data := await stream.receive_some(65536):
                response += data
    head, _, body = response.decode().partition("\r\n\r\n")
    return head, body


async def test_metrics_are_served_named_and_parseable(tmp_path: Path) -> None:
    (metrics_port,) = free_ports(1)
    async with running_cluster(
        tmp_path, 1, metrics_addr=f"127.0.0.1:{metrics_port}", snapshot_entries=3
    ) as nodes:
        leader = await wait_for_leader(nodes)
        async with RawClient.connect(leader.config.address) as client:
            await client.call(SubmitCommand(command=Enqueue(now_ms=0, jobs=(spec(),) * 2)))
            claimed = await client.call(SubmitCommand(command=Claim(now_ms=0, claimer="w")))
            assert isinstance(claimed, CommandReply)
            assert isinstance(claimed.result, ClaimResult)
            lease = claimed.result.leases[0]
            await client.call(
                SubmitCommand(
                    command=Complete(now_ms=0, job_id=lease.job_id, fence=lease.fence, result=b"1")
                )
            )
        head, body = await scrape(leader.metrics_port)
        assert head.startswith("HTTP/1.1 200")
        families = {family.name: family for family in text_string_to_metric_families(body)}
        for name, kind in CONTRACT_METRICS.items():
            assert name in families, name
            assert families[name].type == kind, name
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in families.values()
            for sample in family.samples
        }
        assert samples[("raftq_jobs_enqueued_total", (("queue", "default"), ("type", "noop")))] == 2
        finished = (
            "raftq_jobs_finished_total",
            (("outcome", "succeeded"), ("queue", "default"), ("type", "noop")),
        )
        assert samples[finished] == 1
        assert samples[("raftq_raft_is_leader", ())] == 1
        assert samples[("raftq_jobs", (("queue", "default"), ("state", "pending")))] == 1
        assert samples[("raftq_wal_fsync_seconds_count", ())] > 0
        assert samples[("raftq_snapshot_seconds_count", ())] >= 1
        head, _ = await scrape(leader.metrics_port, "/other")
        assert head.startswith("HTTP/1.1 404")
