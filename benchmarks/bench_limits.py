"""Claim throughput of the job state machine with 10,000 groups limited to one running job
each, against the same jobs with no limit (issue #17's figure: at most 20% slower).

Run by hand; figures, not a test. One process, one core. ``--groups`` groups of
``--per-group`` jobs each are enqueued (100 per Enqueue, not timed), in one of two orders:

- ``adjacent``: a group's jobs one after another (group = job number // per-group). With the
  limit, a claim meets a group's first job, takes it, and parks the others behind it in the
  group's lane; completing it puts the next one back. The limits' worst case: every claim
  parks and unparks.
- ``interleaved``: job n in group n % groups, so a group's jobs are ``groups`` apart in line
  and a claim of 100 meets 100 different groups.

Then rounds until every job has succeeded: one Claim (``max_jobs`` 100) and one Complete per
job it leased. Only the ``apply`` calls of those Claims and Completes are timed (CPU,
``process_time``); "jobs/s" is jobs claimed and completed per CPU second. "limited" sets a
concurrency limit of 1 on every group first (10,000 ``SetLimit`` entries, not timed);
"unlimited" runs the very same jobs, groups and all, without. "slower" is how much longer
the limited run's timed applies took.

    python benchmarks/bench_limits.py [--groups 10000] [--per-group 5] [--json]

``--cluster``: the same comparison end to end, where users meet it: a local cluster of three
node processes (fsync on, ``--workers`` in-process workers each running the built-in
``noop``), the jobs enqueued with ``enqueue_many`` (batches of 500) while the workers run
them; jobs/s from the first enqueue until ``status`` shows all succeeded. "limited" sets the
10,000 limits first (not timed), on a cluster of its own; the two runs alternate ``--repeat``
times and the best of each counts.

    python benchmarks/bench_limits.py --cluster [--workers 64] [--repeat 2] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

from raftq.jobs.commands import Claim, ClaimResult, Complete, Enqueue, JobSpec, SetLimit
from raftq.jobs.machine import JobStateMachine

CLAIM_JOBS = 100


def specs(groups: int, per_group: int, order: str) -> list[JobSpec]:
    total = groups * per_group
    return [
        JobSpec(
            id="",
            type="email",
            payload=b"x" * 100,
            queue="default",
            priority=0,
            delay_ms=0,
            max_attempts=3,
            timeout_ms=30_000,
            key="",
            group=f"g{n // per_group if order == 'adjacent' else n % groups}",
        )
        for n in range(total)
    ]


def run(groups: int, per_group: int, order: str, limited: bool) -> dict[str, Any]:
    machine = JobStateMachine()
    index = 0
    now_ms = 1_000

    def apply(command: Any) -> Any:
        nonlocal index
        index += 1
        return machine.apply(index, command)

    if limited:
        for group in range(groups):
            apply(SetLimit(now_ms=now_ms, scope="group", name=f"g{group}", concurrency=1))
    jobs = specs(groups, per_group, order)
    for start in range(0, len(jobs), 100):
        apply(Enqueue(now_ms=now_ms, jobs=tuple(jobs[start : start + 100])))
    gc.collect()
    claimed = claims = 0
    cpu_s = 0.0
    while claimed < len(jobs):
        now_ms += 1
        claim = Claim(now_ms=now_ms, claimer="w", max_jobs=CLAIM_JOBS)
        started = time.process_time()
        result = apply(claim)
        cpu_s += time.process_time() - started
        assert isinstance(result, ClaimResult), result
        assert result.leases, (claimed, len(jobs))
        claims += 1
        completes = [
            Complete(now_ms=now_ms, job_id=lease.job_id, fence=lease.fence)
            for lease in result.leases
        ]
        started = time.process_time()
        for complete in completes:
            apply(complete)
        cpu_s += time.process_time() - started
        claimed += len(result.leases)
    assert machine.state_counts()["succeeded"] == len(jobs)
    return {
        "order": order,
        "limited": limited,
        "jobs": len(jobs),
        "claims": claims,
        "cpu_s": round(cpu_s, 3),
        "jobs_per_s": round(len(jobs) / cpu_s),
    }


async def run_cluster(
    groups: int, per_group: int, order: str, limited: bool, workers: int
) -> dict[str, Any]:
    import shutil
    import tempfile
    from pathlib import Path

    import trio

    import raftq
    from bench_cluster import wait_for_leader
    from raftq.local_cluster import open_local_cluster

    root = Path(tempfile.mkdtemp(prefix="raftq-bench-limits-"))
    jobs = [
        {"type": "noop", "payload": {}, "group": spec.group, "key": f"j{n}"}
        for n, spec in enumerate(specs(groups, per_group, order))
    ]
    try:
        async with (
            open_local_cluster(root, 3, workers=workers, fsync=True) as cluster,
            raftq.connect(cluster.client_addresses, timeout=60) as client,
        ):
            await wait_for_leader(client)
            if limited:
                names = iter(range(groups))

                async def setter() -> None:
                    for group in names:
                        await client.set_limit(group=f"g{group}", concurrency=1)

                async with trio.open_nursery() as nursery:
                    for _ in range(64):
                        nursery.start_soon(setter)
            started = time.perf_counter()
            for start in range(0, len(jobs), 500):
                await client.enqueue_many(jobs[start : start + 500])
            for _ in range(30_000):  # ten minutes of polls
                if (await client.status())["jobs"]["succeeded"] >= len(jobs):
                    break
                await trio.sleep(0.02)
            else:
                raise TimeoutError(f"{len(jobs)} jobs did not all succeed in ten minutes")
            seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "order": order,
        "limited": limited,
        "jobs": len(jobs),
        "seconds": round(seconds, 2),
        "jobs_per_s": round(len(jobs) / seconds),
    }


def main_cluster(arguments: argparse.Namespace) -> list[dict[str, Any]]:
    import trio

    rows = []
    for order in ("adjacent", "interleaved"):
        best: dict[bool, dict[str, Any]] = {}
        for _ in range(arguments.repeat):
            for limited in (False, True):
                row = trio.run(
                    run_cluster,
                    arguments.groups,
                    arguments.per_group,
                    order,
                    limited,
                    arguments.workers,
                )
                if limited not in best or row["seconds"] < best[limited]["seconds"]:
                    best[limited] = row
        slower = best[True]["seconds"] / best[False]["seconds"] - 1
        rows += [best[False], best[True] | {"slower": f"{slower:+.0%}"}]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--per-group", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs each")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cluster", action="store_true", help="end to end, 3 node processes")
    parser.add_argument("--workers", type=int, default=64, help="--cluster: workers per node")
    arguments = parser.parse_args()
    if arguments.cluster:
        rows = main_cluster(arguments)
        if arguments.json:
            print(json.dumps(rows))
            return
        for row in rows:
            print(row)
        return
    rows = []
    for order in ("adjacent", "interleaved"):
        best: dict[bool, dict[str, Any]] = {}
        for _ in range(arguments.repeat):
            for limited in (False, True):
                row = run(arguments.groups, arguments.per_group, order, limited)
                if limited not in best or row["cpu_s"] < best[limited]["cpu_s"]:
                    best[limited] = row
        slower = best[True]["cpu_s"] / best[False]["cpu_s"] - 1
        rows += [best[False], best[True] | {"slower": f"{slower:+.0%}"}]
    if arguments.json:
        print(json.dumps(rows))
        return
    print(
        f"{'order':<12} {'limits':<22} {'jobs':>7} {'claims':>7} {'CPU s':>7} "
        f"{'jobs/s':>9} {'slower':>7}"
    )
    for row in rows:
        limits = f"{arguments.groups:,} groups of 1" if row["limited"] else "none"
        print(
            f"{row['order']:<12} {limits:<22} {row['jobs']:>7,} {row['claims']:>7,} "
            f"{row['cpu_s']:>7.3f} {row['jobs_per_s']:>9,} {row.get('slower', ''):>7}"
        )


if __name__ == "__main__":
    main()
