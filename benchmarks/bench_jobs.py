"""Job state machine benchmark: apply rate, memory per pending job, snapshot and restore.

Run by hand; figures, not a test. Everything runs in this one process, on one core (the state
machine is single-threaded), with the cyclic garbage collector on as in production. Jobs are
what a client would typically send: 100-byte payloads, one queue ("default"), one type
("email"), priority 0, no delay, 3 attempts, 30 s timeout, no idempotency key, and no id, so
the machine derives it ("j<index>-<position>"). Each Enqueue's JobSpecs are built from the
CBOR-decoded rows of its entry, so every job owns its payload and integer objects, exactly as
after ``codec.decode``; building them (attrs validators off: validation belongs to decoding, not
to applying) is never timed, and nothing keeps a command alive after it was applied.

1. Apply rate. Rounds of three steps on one machine, each command at the next log index, and
   ``now_ms`` one millisecond later every round: ``apply`` one Enqueue of 100 JobSpecs; ``apply``
   one Claim with ``max_jobs=100`` (which leases those 100 jobs); ``apply`` one Complete per
   leased job (its id and fence). Rounds repeat for ``--seconds`` of wall time; finished jobs
   stay in the machine (no Purge, no ExpireLeases). Only the ``apply`` calls are timed, with
   ``process_time`` (CPU) and ``perf_counter`` (wall); the garbage collector's time inside them
   is included and shown ("gc"). A job operation is one job enqueued, claimed or completed, so
   a round is 300 job operations in 102 commands. "job ops/s per core" divides the job
   operations by the CPU time of their ``apply`` calls, per command kind and over all three.
   Target: at least 200,000 job operations/s per core over all three.
2. Memory per pending job. ``--jobs`` jobs are enqueued, 100 per Enqueue, into an empty
   machine; then a full collection. "Python heap" is the growth of the memory that
   ``tracemalloc`` traces (every allocation Python makes, requested sizes) across machine
   creation and the fill, in a fill run under ``tracemalloc``; "RSS" is the growth of the
   resident set across an identical fill run without it (allocator rounding, fragmentation and
   free lists included; for reference). MB are 10^6 bytes. Target: 1,000,000 pending jobs in at
   most 500 MB, that is at most 500 bytes per job, payload included.
3. Snapshot and restore of the machine filled in 2 (without tracemalloc): ``m.snapshot()`` to
   bytes, ``m.digest()`` (a snapshot plus its BLAKE2b), then -- the original dropped, as at a
   node's start-up -- ``JobStateMachine.restore(bytes)``, each timed once (wall and CPU, gc
   share shown); the restored machine must have the same digest (checked, not timed). Target:
   at most 3 s each.

    python benchmarks/bench_jobs.py [--seconds 3] [--jobs 1000000] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
import tracemalloc
from typing import Any

import attrs
import cbor2

from raftq import codec
from raftq.jobs.commands import (
    Claim,
    ClaimResult,
    Complete,
    Done,
    Enqueue,
    Enqueued,
    EnqueueResult,
    JobSpec,
)
from raftq.jobs.machine import JobStateMachine

BATCH = 100
PAYLOAD_BYTES = 100
QUEUE = "default"
JOB_TYPE = "email"
CLAIMER = "worker-1"
START_MS = 1_767_225_600_000  # 2026-01-01, so times are full-size integers as in production
APPLY_TARGET = 200_000  # job operations/s per core
BYTES_PER_JOB_TARGET = 500
SECONDS_TARGET = 3.0
MB = 1_000_000
_SPEC_FIELDS = tuple(field.name for field in attrs.fields(JobSpec))


class SpecSource:
    """Fresh JobSpecs for one Enqueue, as decoding its log entry would give them."""

    def __init__(self) -> None:
        specs = [
            JobSpec(
                id="",
                type=JOB_TYPE,
                payload=position.to_bytes(4, "big") * (PAYLOAD_BYTES // 4),
                queue=QUEUE,
                priority=0,
                delay_ms=0,
                max_attempts=3,
                timeout_ms=30_000,
                key="",
            )
            for position in range(BATCH)
        ]
        assert all(len(spec.payload) == PAYLOAD_BYTES for spec in specs)
        self.rows = cbor2.dumps([codec.unstructure(spec) for spec in specs])

    def batch(self, count: int = BATCH) -> tuple[JobSpec, ...]:
        rows = cbor2.loads(self.rows)[:count]
        with attrs.validators.disabled():
            # A row omits the fields added since the format began when they hold their
            # defaults (``codec.added``): those take their defaults here too.
            return tuple(JobSpec(**dict(zip(_SPEC_FIELDS, row, strict=False))) for row in rows)


class GcTimer:
    """Wall time spent in the cyclic garbage collector while installed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self)


class Clock:
    """Accumulated CPU, wall and gc time of the timed sections of one kind of command."""

    def __init__(self, gc_timer: GcTimer) -> None:
        self.gc_timer = gc_timer
        self.cpu = self.wall = self.gc = 0.0
        self.commands = self.jobs = 0

    def start(self) -> None:
        self._gc = self.gc_timer.seconds
        self._cpu = time.process_time()
        self._wall = time.perf_counter()

    def stop(self, commands: int, jobs: int) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu
        self.gc += self.gc_timer.seconds - self._gc
        self.commands += commands
        self.jobs += jobs

    def report(self) -> dict[str, Any]:
        return {
            "commands": self.commands,
            "job_ops": self.jobs,
            "cpu_seconds": self.cpu,
            "wall_seconds": self.wall,
            "gc_seconds": self.gc,
            "commands_per_second": self.commands / self.cpu,
            "job_ops_per_second": self.jobs / self.cpu,
            "cpu_us_per_job_op": self.cpu / self.jobs * 1e6,
            "gc_share": self.gc / self.wall,
        }


def apply_rate(seconds: float) -> dict[str, Any]:
    """Enqueue 100, claim them, complete them one by one: for ``seconds`` of wall time."""
    source = SpecSource()
    machine = JobStateMachine()
    apply = machine.apply
    index = 0
    gc.collect()
    with GcTimer() as gc_timer:
        clocks = {kind: Clock(gc_timer) for kind in ("Enqueue", "Claim", "Complete")}
        enqueue_clock, claim_clock, complete_clock = clocks.values()
        rounds = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            now_ms = START_MS + rounds
            enqueue = Enqueue(now_ms=now_ms, jobs=source.batch())
            index += 1
            enqueue_clock.start()
            enqueued = apply(index, enqueue)
            enqueue_clock.stop(1, BATCH)
            del enqueue
            assert isinstance(enqueued, EnqueueResult)
            job_ids = [
                job.job_id for job in enqueued.jobs if isinstance(job, Enqueued) and job.created
            ]
            assert len(job_ids) == BATCH

            claim = Claim(now_ms=now_ms, claimer=CLAIMER, max_jobs=BATCH)
            index += 1
            claim_clock.start()
            claimed = apply(index, claim)
            claim_clock.stop(1, BATCH)
            assert isinstance(claimed, ClaimResult)
            assert [lease.job_id for lease in claimed.leases] == job_ids

            completes = [
                Complete(now_ms=now_ms, job_id=lease.job_id, fence=lease.fence)
                for lease in claimed.leases
            ]
            first = index + 1
            index += len(completes)
            complete_clock.start()
            done = [apply(first + offset, command) for offset, command in enumerate(completes)]
            complete_clock.stop(len(completes), len(completes))
            assert all(isinstance(result, Done) and result.state == "succeeded" for result in done)
            rounds += 1
        elapsed = time.perf_counter() - start
    kinds = {kind: clock.report() for kind, clock in clocks.items()}
    cpu = sum(clock.cpu for clock in clocks.values())
    wall = sum(clock.wall for clock in clocks.values())
    gc_seconds = sum(clock.gc for clock in clocks.values())
    job_ops = sum(clock.jobs for clock in clocks.values())
    commands = sum(clock.commands for clock in clocks.values())
    assert machine.state_counts()["succeeded"] == rounds * BATCH == len(machine.jobs)
    return {
        "seconds": elapsed,
        "rounds": rounds,
        "kinds": kinds,
        "all": {
            "commands": commands,
            "job_ops": job_ops,
            "cpu_seconds": cpu,
            "wall_seconds": wall,
            "gc_seconds": gc_seconds,
            "commands_per_second": commands / cpu,
            "job_ops_per_second": job_ops / cpu,
            "cpu_us_per_job_op": cpu / job_ops * 1e6,
            "gc_share": gc_seconds / wall,
        },
        "target_job_ops_per_second": APPLY_TARGET,
        "target_met": job_ops / cpu >= APPLY_TARGET,
    }


def fill(jobs: int, machine: JobStateMachine) -> float:
    """Enqueue ``jobs`` pending jobs, 100 per Enqueue; the seconds it took (building included)."""
    source = SpecSource()
    apply = machine.apply
    start = time.perf_counter()
    for index, first in enumerate(range(0, jobs, BATCH), start=1):
        enqueue = Enqueue(now_ms=START_MS + index, jobs=source.batch(min(BATCH, jobs - first)))
        apply(index, enqueue)
    elapsed = time.perf_counter() - start
    assert machine.state_counts()["pending"] == jobs == len(machine.jobs)
    return elapsed


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def traced_heap(jobs: int) -> dict[str, Any]:
    """Python heap growth for ``jobs`` pending jobs, under tracemalloc."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        machine = JobStateMachine()
        fill(jobs, machine)
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del machine
    heap = current - before
    return {
        "bytes": heap,
        "bytes_per_job": heap / jobs,
        "peak_bytes": peak - before,
        "target_bytes_per_job": BYTES_PER_JOB_TARGET,
        "target_met": heap / jobs <= BYTES_PER_JOB_TARGET,
    }


def _timed(step: Any) -> tuple[Any, dict[str, float]]:
    gc.collect()
    with GcTimer() as gc_timer:
        cpu = time.process_time()
        wall = time.perf_counter()
        value = step()
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    return value, {
        "seconds": wall,
        "cpu_seconds": cpu,
        "gc_share": gc_timer.seconds / wall,
        "target_met": wall <= SECONDS_TARGET,
    }


def rss_and_snapshots(jobs: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """RSS growth of a fill without tracemalloc; then snapshot, restore and digest of it."""
    gc.collect()
    before = _rss()
    machine = JobStateMachine()
    fill_seconds = fill(jobs, machine)
    gc.collect()
    grown = _rss() - before
    rss = {
        "bytes": grown,
        "bytes_per_job": grown / jobs,
        "fill_seconds": fill_seconds,
        "fill_jobs_per_second": jobs / fill_seconds,
    }
    data, snapshot = _timed(machine.snapshot)
    digest, digest_step = _timed(machine.digest)
    # Restored as a node does at start-up: with no other copy of the state in memory. (With
    # the original still alive, a 1.9 GB process, the same restore takes about 3.6 s here.)
    del machine
    gc.collect()
    restored, restore = _timed(lambda: JobStateMachine.restore(data))
    assert restored.digest() == digest, "the restored machine differs"
    snapshots = {
        "jobs": jobs,
        "snapshot_bytes": len(data),
        "snapshot": snapshot,
        "restore": restore,
        "digest": digest_step,
        "target_seconds": SECONDS_TARGET,
    }
    return rss, snapshots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="apply-rate measurement")
    parser.add_argument(
        "--jobs", type=int, default=1_000_000, help="pending jobs for memory and snapshots"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    arguments = parser.parse_args()
    if arguments.seconds <= 0 or arguments.jobs < 1:
        parser.error("need --seconds > 0 and --jobs >= 1")
    jobs = arguments.jobs
    # The untraced fill runs first, in a fresh process, so its RSS growth is not hidden by
    # memory that earlier measurements freed and the allocator kept.
    rss, snapshots = rss_and_snapshots(jobs)
    heap = traced_heap(jobs)
    rate = apply_rate(arguments.seconds)
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    report = {
        "python": sys.version.split()[0],
        "batch": BATCH,
        "payload_bytes": PAYLOAD_BYTES,
        "apply": rate,
        "memory": {"jobs": jobs, "heap": heap, "rss": rss},
        "snapshots": snapshots,
        "max_rss_bytes": max_rss,
    }
    if arguments.json:
        json.dump(report, sys.stdout)
        print()
        return

    def verdict(met: bool) -> str:
        return "met" if met else "NOT met"

    print(
        f"1. apply: {rate['rounds']:,} rounds of Enqueue {BATCH} / Claim {BATCH} / {BATCH} "
        f"Completes ({PAYLOAD_BYTES}-byte payloads) in {rate['seconds']:.1f} s"
    )
    print(
        f"{'command':>9} {'commands/s':>11} {'job ops/s':>10} {'CPU us/op':>10} "
        f"{'job ops':>10} {'gc':>6}"
    )
    for kind, run in [*rate["kinds"].items(), ("all", rate["all"])]:
        print(
            f"{kind:>9} {run['commands_per_second']:>11,.0f} {run['job_ops_per_second']:>10,.0f} "
            f"{run['cpu_us_per_job_op']:>10.2f} {run['job_ops']:>10,} {run['gc_share']:>6.1%}"
        )
    print(
        f"   target >= {APPLY_TARGET:,} job ops/s per core: {verdict(rate['target_met'])} "
        f"({rate['all']['job_ops_per_second']:,.0f})"
    )
    print(f"2. memory: {jobs:,} pending jobs (one queue, one type, derived ids)")
    print(
        f"   Python heap (tracemalloc): {heap['bytes'] / MB:,.1f} MB, "
        f"{heap['bytes_per_job']:,.0f} bytes/job (peak during the fill "
        f"{heap['peak_bytes'] / MB:,.1f} MB)"
    )
    print(
        f"   RSS growth (no tracemalloc): {rss['bytes'] / MB:,.1f} MB, "
        f"{rss['bytes_per_job']:,.0f} bytes/job; filled at {rss['fill_jobs_per_second']:,.0f} "
        "jobs/s (building commands included)"
    )
    print(f"   target <= {BYTES_PER_JOB_TARGET} bytes/job (heap): {verdict(heap['target_met'])}")
    print(
        f"3. snapshots of {jobs:,} pending jobs: {snapshots['snapshot_bytes'] / MB:,.1f} MB, "
        f"{snapshots['snapshot_bytes'] / jobs:,.0f} bytes/job"
    )
    print(f"{'step':>9} {'seconds':>8} {'CPU s':>7} {'gc':>6}  target <= {SECONDS_TARGET:g} s")
    for step in ("snapshot", "restore", "digest"):
        run = snapshots[step]
        print(
            f"{step:>9} {run['seconds']:>8.2f} {run['cpu_seconds']:>7.2f} {run['gc_share']:>6.1%}"
            f"  {verdict(run['target_met'])}"
        )
    print(f"peak RSS of this process: {max_rss / MB:,.0f} MB")


if __name__ == "__main__":
    main()
