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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--per-group", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs each")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
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
