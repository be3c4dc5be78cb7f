"""Metrics: every name of CONTRACT.md, served over HTTP, in valid Prometheus text format."""

from __future__ import annotations

import re
from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families

from raftq.jobs.commands import (
    Claim,
    ClaimResult,
    Complete,
    Enqueue,
    PutSchedule,
    ScheduleSpec,
    SetLimit,
)
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
            limit = SetLimit(now_ms=0, scope="queue", name="default", concurrency=3)
            every_second = ScheduleSpec(name="tick", type="tick", queue="ticks", every_ms=1_000)
            await client.call(SubmitCommand(command=limit))
            await client.call(SubmitCommand(command=PutSchedule(now_ms=0, schedule=every_second)))
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
        for _ in range(500):  # the snapshot is encoded in a thread and saved by the Raft peer
            head, body = await scrape(leader.metrics_port)
            fired = 'raftq_schedule_last_fired_timestamp_seconds{schedule="tick"} 0.0' not in body
            snapshots = re.search(r"\nraftq_snapshot_seconds_count (\S+)", body)
            # At least one: the schedule's firings are entries too, so more snapshots follow.
            if snapshots and float(snapshots.group(1)) >= 1 and fired:
                break
            await trio.sleep(0.02)
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
        by_limit = (("name", "default"), ("scope", "queue"))
        assert [samples[(f"raftq_limit_{field}", by_limit)] for field in LIMIT_FIELDS] == [
            0, 1, 0, 3, 0  # running, pending, started in window, concurrency, rate
        ]  # fmt: skip
        last_fired = samples[
            ("raftq_schedule_last_fired_timestamp_seconds", (("schedule", "tick"),))
        ]
        assert last_fired > 1_700_000_000  # a slot's time, in seconds since the epoch
        assert samples[("raftq_wal_fsync_seconds_count", ())] > 0
        assert samples[("raftq_snapshot_seconds_count", ())] >= 1
        assert lint_like_promtool(body) == []
        head, _ = await scrape(leader.metrics_port, "/other")
        assert head.startswith("HTTP/1.1 404")


LIMIT_FIELDS = ("running", "pending", "started_in_window", "concurrency", "rate")

BASE_UNITS = ("_seconds", "_bytes", "_total", "_info")
NON_BASE_UNITS = ("_ms", "_milliseconds", "_microseconds", "_kilobytes", "_megabytes", "_minutes")


def lint_like_promtool(body: str) -> list[str]:
    """The problems ``promtool check metrics`` reports (its lint rules, which promtool itself
    is not installable here to run): every family has help text, names are snake_case with
    the ``raftq_`` prefix, counters end in ``_total``, units are base units, names do not
    repeat the type, and a family is described once."""
    problems = []
    described: list[str] = []
    for line in body.splitlines():
        if line.startswith("# HELP "):
            name, _, text = line[len("# HELP ") :].partition(" ")
            described.append(name)
            if not text.strip():
                problems.append(f"{name}: no help text")
    problems += [f"{name}: described twice" for name in set(described) if described.count(name) > 1]
    for family in text_string_to_metric_families(body):
        name = family.name
        if not re.fullmatch(r"raftq_[a-z][a-z0-9_]*", name):
            problems.append(f"{name}: not snake_case with the raftq_ prefix")
        if family.type == "counter" and not all(
            sample.name.endswith(("_total", "_created")) for sample in family.samples
        ):
            problems.append(f"{name}: counter without _total")
        if name.endswith(NON_BASE_UNITS):
            problems.append(f"{name}: use base units (seconds, bytes)")
        if name.endswith(("_counter", "_gauge", "_histogram", "_summary")):
            problems.append(f"{name}: the name repeats the type")
        if family.type == "histogram":
            suffixes = {sample.name[len(name) :] for sample in family.samples}
            if not {"_bucket", "_count", "_sum"} <= suffixes:
                problems.append(f"{name}: histogram without _bucket/_count/_sum")
    return problems


def test_the_promtool_like_lint_catches_what_promtool_would() -> None:
    bad = (
        "# HELP raftq_things_ms Things\n# TYPE raftq_things_ms gauge\nraftq_things_ms 1\n"
        "# HELP raftq_ops Ops\n# TYPE raftq_ops counter\nraftq_ops 1\n"
        "# HELP RaftqBad \n# TYPE RaftqBad gauge\nRaftqBad 1\n"
    )
    problems = lint_like_promtool(bad)
    assert any("base units" in p for p in problems), problems
    assert any("snake_case" in p for p in problems), problems
    assert any("no help text" in p for p in problems), problems


def test_per_job_counts_are_exported_as_prometheus_client_would_export_them() -> None:
    """The per-job counters and histograms are plain counts read when scraped (no lock per
    job); their text must be what prometheus_client's own Counter and Histogram give for the
    same events, bucket bounds included (a value on a bound counts in that bucket)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from raftq.jobs.job import Job, JobRun, JobState
    from raftq.metrics.node_metrics import SECONDS_BUCKETS, NodeMetrics

    ours = NodeMetrics()
    theirs = CollectorRegistry()
    enqueued = Counter("raftq_jobs_enqueued", "x", ["queue", "type"], registry=theirs)
    finished = Counter("raftq_jobs_finished", "x", ["queue", "type", "outcome"], registry=theirs)
    waited = Histogram("raftq_job_wait_seconds", "x", buckets=SECONDS_BUCKETS, registry=theirs)
    ran = Histogram("raftq_job_run_seconds", "x", buckets=SECONDS_BUCKETS, registry=theirs)
    waits_ms = [0, 1, 4, 5, 50, 999, 1_000, 7_200_000]
    for number, wait_ms in enumerate(waits_ms):
        job = Job(
            id=f"j{number}", type="t", queue=f"q{number % 2}", priority=0, payload=b"",
            max_attempts=3, timeout_ms=1_000, run_at_ms=0, enqueued_ms=0, seq=number,
        )  # fmt: skip
        ours.enqueued(job)
        enqueued.labels(job.queue, job.type).inc()
        job.attempts = 1
        ours.claimed(job, wait_ms)
        waited.observe(wait_ms / 1000)
        job.run = JobRun()
        job.run.fence = 1
        # An earlier attempt's claim and a later event beside the last claim: the run's
        # time counts from the last claim.
        job.run.history.append((0, "claimed", 1, "w", 1, 0, 0, ""))
        job.run.history.append((0, "failed", 1, "w", 1, 0, 0, "boom"))
        job.run.history.append((wait_ms, "claimed", 1, "w", 1, 0, 0, ""))
        job.run.history.append((wait_ms, "progress", 1, "w", 1, 0, 0, ""))
        job.state = JobState.SUCCEEDED if number % 3 else JobState.DEAD
        ours.finished(job, 2 * wait_ms)
        finished.labels(job.queue, job.type, job.state.value).inc()
        ran.observe(wait_ms / 1000)

    def samples(registry: CollectorRegistry, prefix: str) -> list[str]:
        return sorted(
            line
            for line in generate_latest(registry).decode().splitlines()
            if line.startswith(prefix) and "_created" not in line
        )

    for prefix in ("raftq_jobs_enqueued", "raftq_jobs_finished", "raftq_job_"):
        assert samples(ours.registry, prefix) == samples(theirs, prefix)
