"""The metrics of CONTRACT.md, on a registry of the node's own (several nodes may share a
process in tests and in the simulator).

Counters and histograms are fed as things happen (the state machine's observer, the log
writer); gauges and the Raft and WAL totals are read from the actors when scraped, so the hot
path pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from raftq.jobs.job import Job, JobState

SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800, 3600)
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1)

OUTCOMES = {
    JobState.SUCCEEDED: "succeeded",
    JobState.DEAD: "dead",
    JobState.CANCELLED: "cancelled",
}


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs_enqueued = Counter(
            "raftq_jobs_enqueued",
            "Jobs enqueued (applied on this node)",
            ["queue", "type"],
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "raftq_jobs_finished",
            "Jobs that reached a final state",
            ["queue", "type", "outcome"],
            registry=self.registry,
        )
        self.job_run_seconds = Histogram(
            "raftq_job_run_seconds",
            "From the last claim to the finish of a job",
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.job_wait_seconds = Histogram(
            "raftq_job_wait_seconds",
            "From enqueue (or run_at) to claim",
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.wal_fsync_seconds = Histogram(
            "raftq_wal_fsync_seconds",
            "Time to make one Ready durable (WAL write + fdatasync)",
            buckets=FSYNC_BUCKETS,
            registry=self.registry,
        )
        self._enqueued_children: dict[tuple[str, str], Any] = {}
        self._finished_children: dict[tuple[str, str, str], Any] = {}
        self.snapshot_seconds = Histogram(
            "raftq_snapshot_seconds",
            "Time to take and save a snapshot of the job state",
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )

    # --- the job state machine's observer -------------------------------------------------------

    def enqueued(self, job: Job) -> None:
        child = self._enqueued_children.get((job.queue, job.type))
        if child is None:  # labels() is a lock and a dict build: once per label set
            child = self._enqueued_children[(job.queue, job.type)] = self.jobs_enqueued.labels(
                job.queue, job.type
            )
        child.inc()

    def claimed(self, job: Job, now_ms: int) -> None:
        if job.attempts == 1:
            self.job_wait_seconds.observe(max(0, now_ms - job.run_at_ms) / 1000)

    def finished(self, job: Job, now_ms: int) -> None:
        key = (job.queue, job.type, OUTCOMES[job.state])
        child = self._finished_children.get(key)
        if child is None:
            child = self._finished_children[key] = self.jobs_finished.labels(*key)
        child.inc()
        run = job.run
        if run is not None and run.fence:
            claimed_at = [at for at, event, *_ in run.history if event == "claimed"]
            if claimed_at:
                self.job_run_seconds.observe(max(0, now_ms - claimed_at[-1]) / 1000)

    def add_collector(self, read: Callable[[], Iterator[Metric]]) -> None:
        """Gauges and totals read from the node when scraped."""
        self.registry.register(_Scrape(read))


class _Scrape(Collector):
    def __init__(self, read: Callable[[], Iterator[Metric]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        return self._read()


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def labelled_counter(
    name: str, documentation: str, label: str, values: dict[str, int]
) -> CounterMetricFamily:
    """One counter per label value, e.g. ``raftq_connections_refused_total{reason}``."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(values.items()):
        family.add_metric([value], count)
    return family
