"""The metrics of CONTRACT.md, on a registry of the node's own (several nodes may share a
process in tests and in the simulator).

Counters and histograms are fed as things happen (the state machine's observer, the log
writer); gauges and the Raft and WAL totals are read from the actors when scraped, so the hot
path pays nothing for them.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
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
        # Per job: plain counts, turned into families only when scraped. prometheus_client's
        # own Counter and Histogram take a lock at every increment, and every node applies
        # every job: that was 3-4% of a busy node's CPU (py-spy, 64 workers per node).
        self._enqueued: dict[tuple[str, str], int] = {}
        self._finished: dict[tuple[str, str, str], int] = {}
        self._run_seconds = _Buckets(SECONDS_BUCKETS)
        self._wait_seconds = _Buckets(SECONDS_BUCKETS)
        self.registry.register(_Scrape(self._per_job_families))
        self.wal_fsync_seconds = Histogram(
            "raftq_wal_fsync_seconds",
            "Time to make one Ready durable (WAL write + fdatasync)",
            buckets=FSYNC_BUCKETS,
            registry=self.registry,
        )
        self.snapshot_seconds = Histogram(
            "raftq_snapshot_seconds",
            "Time to take and save a snapshot of the job state",
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )

    # --- the job state machine's observer -------------------------------------------------------

    def enqueued(self, job: Job) -> None:
        key = (job.queue, job.type)
        self._enqueued[key] = self._enqueued.get(key, 0) + 1

    def claimed(self, job: Job, now_ms: int) -> None:
        if job.attempts == 1:
            self._wait_seconds.observe(max(0, now_ms - job.run_at_ms) / 1000)

    def finished(self, job: Job, now_ms: int) -> None:
        labels = (job.queue, job.type, OUTCOMES[job.state])
        self._finished[labels] = self._finished.get(labels, 0) + 1
        run = job.run
        if run is not None and run.fence:
            # The last claim: searched from the end, without unpacking every event (this runs
            # for every job that finishes, on every node).
            for event in reversed(run.history):
                if event[1] == "claimed":
                    self._run_seconds.observe(max(0, now_ms - event[0]) / 1000)
                    break

    def _per_job_families(self) -> Iterator[Metric]:
        enqueued = CounterMetricFamily(
            "raftq_jobs_enqueued", "Jobs enqueued (applied on this node)", labels=["queue", "type"]
        )
        for queue_type, count in list(self._enqueued.items()):
            enqueued.add_metric(queue_type, count)
        yield enqueued
        finished = CounterMetricFamily(
            "raftq_jobs_finished",
            "Jobs that reached a final state",
            labels=["queue", "type", "outcome"],
        )
        for outcome, count in list(self._finished.items()):
            finished.add_metric(outcome, count)
        yield finished
        yield self._run_seconds.family(
            "raftq_job_run_seconds", "From the last claim to the finish of a job"
        )
        yield self._wait_seconds.family(
            "raftq_job_wait_seconds", "From enqueue (or run_at) to claim"
        )

    def add_collector(self, read: Callable[[], Iterator[Metric]]) -> None:
        """Gauges and totals read from the node when scraped."""
        self.registry.register(_Scrape(read))


class _Buckets:
    """A histogram's counts, kept without a lock (one event loop feeds it)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: past every bound (+Inf only)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative = list(itertools.accumulate(self.counts))
        buckets = [
            (repr(float(bound)), count)  # as prometheus_client writes le
            for bound, count in zip(self.bounds, cumulative, strict=False)
        ]
        buckets.append(("+Inf", cumulative[-1]))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.sum)


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
