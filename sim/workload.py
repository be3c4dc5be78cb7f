"""The workload: producers that enqueue with idempotency keys (retrying across nodes, and
re-sending keys whose acknowledgement they never saw), cancels, readers that get jobs from
every node (each reader pinned to one node, so followers serve reads too), and the job handler
the in-process workers run (random durations, failures, heartbeats, timeouts)."""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Callable
from typing import Any

import attrs
import trio

from raftq.app import App, Fail, JobContext, JobFailed, Retry
from raftq.client.client import Client, connect
from raftq.errors import JobNotFound, RaftqError
from sim.checkers import JobKey, enqueue_index, job_key
from sim.cluster import CLIENT_TIMEOUT_S
from sim.options import unique_producers

JOB_TYPE = "sim"

READ_INTERVAL_S = 0.25
"""Each node's reader gets a job this often (virtual time): enough reads to land in every
leader change and partition, few enough that they cost little of the run's speed."""

OPERATOR_SEEDS_MOD = (8, (2, 5, 7))
"""Seeds ``s`` with ``s % 8`` in (2, 5, 7), three in eight, run an operator retrying dead jobs
in bulk (``RetryDead``). The others run exactly as they did before the operator existed:
among them every seed tests/sim/test_mutants.py pins (1, 3, 4, 8, 16, 28, 30), which catch
their mutants on those exact runs: with the operator in them, some stopped catching theirs
(seeds 8 and 28 with a random half of the seeds; seeds 3 and 30 with those 2 or 3 mod 4). A
seed pinned from now on is found with the operator where it runs."""

RETRY_DEAD_INTERVAL_S = 1.0
"""The operator retries dead jobs this often (virtual time): several times a run, each time
a few of them (``max_jobs`` 1 to 3), so that often more are dead than one command may take."""


POLICY_SEEDS_MOD = (10, (2, 5, 7))
"""Seeds ``s`` with ``s % 10`` in (2, 5, 7) enqueue some jobs with their own retry policy and
run handlers that snooze, fail for good and report progress (``draw_policy``); the others
draw exactly the jobs they drew before. None of the seeds whose exact run a test pins to a
mutant or a checker (1, 3, 4, 11, 16, 26, 28, 33, 100, 930021) is among them."""


@attrs.define(eq=False)
class Ledger:
    """What the clients were told: the jobs whose enqueue was acknowledged."""

    acked: dict[str, str] = attrs.field(factory=dict)
    """Idempotency key -> job id, for every acknowledged enqueue."""
    unacked: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    """Key -> job fields, for enqueues that failed (maybe committed, maybe not)."""
    fields: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    """Key -> the job fields enqueued under it."""
    fresh_acks: list[str] = attrs.field(factory=list)
    """Job ids acknowledged since the last check (the checker empties it)."""
    cancels: int = 0
    executions: dict[str, int] = attrs.field(factory=dict)
    """Job id -> handler runs that returned (at-least-once: may exceed one)."""
    snoozes: dict[str, int] = attrs.field(factory=dict)
    """Job id -> the handler's snoozes so far (``raise raftq.Retry``)."""


def draw_job(rng: random.Random, options: Any) -> dict[str, Any]:
    """Fields for ``Client.enqueue``: a job that succeeds, fails some attempts, or times out."""
    timeout_ms = rng.choice([300, 1000, 3000])
    times_out = rng.random() < options.job_timeout_share
    heartbeat = not times_out and rng.random() < options.job_heartbeat_share
    if times_out:
        run_ms = timeout_ms + rng.randint(100, 2000)
    elif heartbeat:
        run_ms = rng.randint(timeout_ms // 2, timeout_ms * 3)
    else:
        run_ms = rng.randint(0, timeout_ms // 2)
    fail_attempts = 0
    if rng.random() < options.job_fail_share:
        fail_attempts = rng.randint(1, 4)
    payload = {"run_ms": run_ms, "fail_attempts": fail_attempts, "heartbeat": heartbeat}
    fields = {
        "payload": payload,
        "max_attempts": rng.randint(1, 4),
        "timeout": timeout_ms / 1000,
        "priority": rng.randint(0, 2),
    }
    if uses_policies(options.seed):
        draw_policy(rng, fields)
    return fields


def uses_policies(seed: int) -> bool:
    """Whether the run of ``seed`` uses retry policies, snoozes, Fail and progress."""
    modulus, remainders = POLICY_SEEDS_MOD
    return seed % modulus in remainders


def draw_policy(rng: random.Random, fields: dict[str, Any]) -> None:
    """Issue #17's retry policy, snoozes, ``Fail`` and progress on some jobs: a policy often
    slower than the default (so one ignored is seen), a few short snoozes, an attempt that
    fails for good, progress from half the handlers. Small enough for the liveness phase."""
    payload = fields["payload"]
    if rng.random() < 0.4:
        base_s = rng.choice([0.2, 1.5, 2.5])
        fields["backoff"] = base_s
        fields["backoff_max"] = base_s * rng.choice([1, 2, 4])
        fields["jitter_percent"] = rng.choice([0, 25, 50])
    if rng.random() < 0.2:
        payload["snoozes"] = rng.randint(1, 3)
        payload["snooze_ms"] = rng.choice([0, 100, 1500])
    if rng.random() < 0.05:
        payload["fatal"] = rng.randint(1, 2)
    if rng.random() < 0.5:
        payload["progress"] = True


def make_app(ledger: Ledger, on_start: Callable[[str, int], None] = lambda *_: None) -> App:
    """The simulator's handler; ``on_start(job id, fence)`` as each run begins."""
    app = App(builtins=False)

    async def run(job: JobContext) -> object:
        on_start(job.id, job.fence)
        payload = job.payload
        remaining_ms = int(payload["run_ms"])
        progress = bool(payload.get("progress"))
        if payload["heartbeat"]:
            step_ms = max(1, job.timeout_ms // 3)
            while remaining_ms > 0:
                await trio.sleep(min(step_ms, remaining_ms) / 1000)
                remaining_ms -= step_ms
                if remaining_ms > 0:
                    if progress:
                        await job.progress({"left_ms": remaining_ms, "fence": job.fence})
                    await job.heartbeat()
        elif progress:  # halfway, and again at the end: the second is often dropped
            await job.progress({"half": True, "fence": job.fence})
            await trio.sleep(remaining_ms / 2000)
            await job.progress({"end": True, "fence": job.fence})
            await trio.sleep(remaining_ms / 2000)
        else:
            await trio.sleep(remaining_ms / 1000)
        ledger.executions[job.id] = ledger.executions.get(job.id, 0) + 1
        if ledger.snoozes.get(job.id, 0) < int(payload.get("snoozes", 0)):
            ledger.snoozes[job.id] = ledger.snoozes.get(job.id, 0) + 1
            raise Retry(delay_s=int(payload["snooze_ms"]) / 1000)
        if job.attempt >= int(payload.get("fatal", job.attempt + 1)):
            raise Fail(f"simulated failure for good of attempt {job.attempt}")
        if job.attempt <= int(payload["fail_attempts"]):
            raise JobFailed(f"simulated failure of attempt {job.attempt}")
        return {"attempt": job.attempt, "fence": job.fence}

    app.register(JOB_TYPE, run)
    return app


async def reader(simulation: Any, simnode: Any) -> None:
    """Get acknowledged jobs through one node until the fault phase ends; each answer goes to
    the ``ReadChecker`` (``simulation.reads``) with the floor it must not be older than."""
    rng = random.Random(f"{simulation.options.seed}:reader:{simnode.id}")
    ledger: Ledger = simulation.ledger
    async with connect(
        [simnode.config.address],
        network=simulation.network.endpoint(f"r-{simnode.id}"),
        rng=random.Random(rng.random()),
        timeout=CLIENT_TIMEOUT_S,
    ) as client:
        while simulation.phase == "faults":
            await trio.sleep(READ_INTERVAL_S * rng.uniform(0.5, 1.5))
            acked = list(ledger.acked.values())
            if not acked or simulation.phase != "faults":
                continue
            # Half the reads ask for the newest acknowledged job: the one a stale read misses.
            job_id = acked[-1] if rng.random() < 0.5 else acked[rng.randrange(len(acked))]
            await checked_read(simulation, client, simnode.id, job_id)


async def checked_read(simulation: Any, client: Client, node_id: str, job_id: str) -> None:
    """Get ``job_id`` through ``client`` (connected to ``node_id``) and hand the answer to the
    ``ReadChecker`` with the floor it must not be older than (every acknowledged enqueue so far)
    and the newest commit any node has; a read that fails is abandoned, not judged."""
    acked = list(simulation.ledger.acked.values())
    floor = max(enqueue_index(acked_id) for acked_id in acked)
    read = simulation.reads.sent(node_id, job_id, floor)
    key: JobKey
    try:
        key = job_key(await client.get(job_id))
    except JobNotFound:
        key = None
    except RaftqError:
        simulation.reads.abandoned(read)
        return
    ceiling = max((s.node.raft.core.log.committed for s in simulation.nodes if s.node), default=0)
    simulation.reads.answered(read, key, ceiling)


def retries_dead_jobs(seed: int) -> bool:
    """Whether the run of ``seed`` has an operator retrying dead jobs (``operator``)."""
    modulus, remainders = OPERATOR_SEEDS_MOD
    return seed % modulus in remainders


async def operator(simulation: Any) -> None:
    """Retries a few dead jobs at once now and then (``RetryDead`` with ``max_jobs`` from 1
    to 3), through any node, until the fault phase ends: what an operator's "retry every dead
    job" does, whose bound ``sim.checkers_jobs`` checks."""
    rng = random.Random(f"{simulation.options.seed}:operator")
    async with connect(
        simulation.addresses,
        network=simulation.network.endpoint("operator"),
        rng=random.Random(rng.random()),
        timeout=CLIENT_TIMEOUT_S,
    ) as client:
        while simulation.phase == "faults":
            await trio.sleep(RETRY_DEAD_INTERVAL_S * rng.uniform(0.5, 1.5))
            if simulation.phase != "faults":
                return
            limit = rng.randint(1, 3)
            try:
                retried = f"{await client.retry_dead(limit=limit)} retried"
            except RaftqError as error:
                retried = f"refused ({type(error).__name__})"
            simulation.trace.record("retry-dead", f"at most {limit}: {retried}")


# --- concurrency and rate limits (docs/limits.md) ------------------------------------------------

LIMITS_SEEDS_MOD = (16, (2, 6, 7, 9, 11, 13, 14, 15))
"""Seeds that run with groups and limits (``sim.checkers_limits``): half of them, and none
of those the tests pin (tests/sim/test_mutants.py: 1, 3, 4, 16, 26, 28, 33, which are 1, 3,
4, 0, 10, 12, 1 mod 16; tests/sim/test_regressions.py: 930021, 5 mod 16), whose runs stay as
they were. A seed pinned from now on is found with limits where they run."""

GROUPS = ("g0", "g1", "g2")
"""Three groups in four jobs: one of them, by the job's key."""

LIMITS_INTERVAL_S = 1.5
"""How often the limits operator changes a limit (virtual time): several times a run, so that
limits are lowered while jobs run, raised while jobs wait, removed and set again."""

LIMITS_REMOVE_ATTEMPTS = 100
"""Tries to remove every limit when the fault phase ends (each a client call of its own
timeout), so that the liveness phase is not held back by them."""


def uses_limits(seed: int) -> bool:
    modulus, remainders = LIMITS_SEEDS_MOD
    return seed % modulus in remainders


def job_group(seed: int, key: str) -> dict[str, str]:
    """The ``group`` enqueue keyword of the job enqueued under ``key`` (none for one job in
    four, and none in runs without limits). A checksum, not the producer's random: it draws
    nothing, so the other fields of every job stay as they were."""
    if not uses_limits(seed):
        return {}
    choice = zlib.crc32(f"{seed}:{key}".encode()) % (len(GROUPS) + 1)
    return {"group": GROUPS[choice]} if choice < len(GROUPS) else {}


LIMIT_WINDOWS_S = (0.2, 0.5, 1.0, 2.0)
"""The rate windows the operator sets: short enough to pass several times a run."""

LIMITS_RETUNE_SHARE = 0.5
"""After a rate was set, how often the next change moves the same limit's window instead of
drawing a new one: a window shortened while the group's jobs wait on the longer one is where
the mutant ``limit_wake_stale`` hides (a wake-up set under the old window kept), and a change
drawn afresh meets the same scope again too rarely (none in seeds 1-200 found it)."""


def draw_limit(rng: random.Random) -> dict[str, Any]:
    """One ``Client.set_limit`` call: a group or the sim's queue, a concurrency, a rate, or
    both (small, so that they bind)."""
    scope = rng.choice([{"group": group} for group in GROUPS] + [{"queue": "default"}])
    concurrency = rng.choice([None, 1, 1, 2, 3] if "group" in scope else [None, 2, 4, 6])
    rate = rng.choice([None, None, 1, 2, 5])
    if concurrency is None and rate is None:
        concurrency = 1
    per = rng.choice(LIMIT_WINDOWS_S) if rate is not None else None
    return {**scope, "concurrency": concurrency, "rate": rate, "per": per}


def retune(rng: random.Random, change: dict[str, Any]) -> dict[str, Any]:
    """``change`` (a rate set) again with another window: longer, or shorter while jobs may
    still wait on the longer one."""
    per = rng.choice([window for window in LIMIT_WINDOWS_S if window != change["per"]])
    return {**change, "per": per}


async def limits_operator(simulation: Any) -> None:
    """Sets, changes and removes limits on the groups and the queue through any node until the
    fault phase ends, then removes them all."""
    rng = random.Random(f"{simulation.options.seed}:limits")
    tuning = random.Random(f"{simulation.options.seed}:limits:retune")
    rated: dict[str, Any] | None = None  # the last rate set, which ``retune`` may move
    async with connect(
        simulation.addresses,
        network=simulation.network.endpoint("limits"),
        rng=random.Random(rng.random()),
        timeout=CLIENT_TIMEOUT_S,
    ) as client:
        while simulation.phase == "faults":
            change: dict[str, Any] = (
                {"group": rng.choice(GROUPS)} if rng.random() < 0.2 else draw_limit(rng)
            )
            if rated is not None and tuning.random() < LIMITS_RETUNE_SHARE:
                change = retune(tuning, rated)
            removes = len(change) == 1
            what = f"{'remove' if removes else 'set'} {change}"
            try:
                if removes:
                    await client.remove_limit(**change)
                else:
                    await client.set_limit(**change)
                outcome = "done"
                rated = change if change.get("rate") else None
            except RaftqError as error:
                outcome = f"refused ({type(error).__name__})"
            simulation.trace.record("limit", f"{what}: {outcome}")
            await trio.sleep(LIMITS_INTERVAL_S * rng.uniform(0.5, 1.5))
        for _ in range(LIMITS_REMOVE_ATTEMPTS):
            try:
                rows = await client.limits()
                for row in rows:
                    await client.remove_limit(**{row["scope"]: row["name"]})
            except RaftqError:
                await trio.sleep(0.5)
                continue
            simulation.trace.record("limit", f"removed all {len(rows)}")
            return


DEPENDENCY_SEEDS_MOD = (16, (6, 7, 9, 11, 13, 15))
"""Seeds ``s`` with ``s % 16`` in these, six in sixteen, run ``dependent_producer``; the others
run as before it existed: every seed tests/sim pins to catch a mutant or a regression (1, 3,
4, 8, 16, 26, 28, 30, 33, 930021) is left out, so their runs stay the same."""

DEPENDENT_INTERVAL_S = 0.3
"""A chain, a batch with its callback, or a unique job this often (virtual time): a few dozen a
run, next to the producers' hundreds of plain jobs."""

UNIQUE_KEYS = ("u-1", "u-2", "u-3")
"""Few keys, so that a second job with one often comes while the first is still active."""


UNIQUE_PRODUCER_SHARE = 2
"""One in this many of the producers' jobs carries a unique key in those seeds."""


def job_unique(seed: int, key: str) -> dict[str, str]:
    """The ``unique_while_active`` enqueue keyword of the producers' job enqueued under
    ``key``: a checksum like ``job_group``'s, so the other fields of every job stay as drawn."""
    if not unique_producers(seed):
        return {}
    checksum = zlib.crc32(f"{seed}:unique:{key}".encode())
    if checksum % UNIQUE_PRODUCER_SHARE:
        return {}
    return {
        "unique_while_active": UNIQUE_KEYS[checksum // UNIQUE_PRODUCER_SHARE % len(UNIQUE_KEYS)]
    }


def runs_dependencies(seed: int) -> bool:
    """Whether the run of ``seed`` enqueues dependent and unique jobs (``dependent_producer``)."""
    modulus, remainders = DEPENDENCY_SEEDS_MOD
    return seed % modulus in remainders


async def dependent_producer(simulation: Any) -> None:
    """Enqueues chains (each job depending on the one before), batches with a callback that
    depends on the whole batch (some run anyway when a parent fails), children of jobs
    enqueued earlier, and jobs with a unique-while-active key, until the fault phase ends;
    ``sim.checkers_deps`` judges what the cluster does with them. Their jobs fail, time out
    and are cancelled like the producers' (``draw_job``)."""
    rng = random.Random(f"{simulation.options.seed}:dependencies")
    earlier: list[str] = []
    async with connect(
        simulation.addresses,
        network=simulation.network.endpoint("dependent"),
        rng=random.Random(rng.random()),
        timeout=CLIENT_TIMEOUT_S,
    ) as client:
        for number in range(1_000_000):
            await trio.sleep(DEPENDENT_INTERVAL_S * rng.uniform(0.5, 1.5))
            if simulation.phase != "faults":
                return
            jobs = _dependent_jobs(rng, simulation.options, f"d{number}", earlier)
            try:
                ids = await client.enqueue_many(jobs)
            except RaftqError as error:
                simulation.trace.record("dependent", f"d{number}: {type(error).__name__}")
                continue
            earlier = [*earlier[-20:], *ids]
            simulation.trace.record("dependent", f"d{number}: {' '.join(ids)}")


def _dependent_jobs(
    rng: random.Random, options: Any, prefix: str, earlier: list[str]
) -> list[dict[str, Any]]:
    """Job-file objects: a chain, a batch and its callback, or one unique job."""
    shape = rng.choice(("chain", "batch", "batch", "unique", "child"))
    if shape == "unique":
        return [{**_job_object(rng, options), "unique_while_active": rng.choice(UNIQUE_KEYS)}]
    if shape == "child" and earlier:
        parents = rng.sample(earlier, min(len(earlier), rng.randint(1, 3)))
        return [{**_job_object(rng, options), "id": prefix, "depends_on": parents}]
    size = rng.randint(2, 5)
    jobs = [{**_job_object(rng, options), "id": f"{prefix}-{n}"} for n in range(size)]
    if shape == "chain":
        for before, job in itertools.pairwise(jobs):
            job["depends_on"] = [before["id"]]
    else:
        jobs.append(
            {
                **_job_object(rng, options),
                "id": f"{prefix}-callback",
                "depends_on": [job["id"] for job in jobs],
                "on_parent_failure": rng.choice(("cancel", "run")),
            }
        )
    if rng.random() < 0.3:
        jobs[-1]["unique_while_active"] = rng.choice(UNIQUE_KEYS)
    return jobs


def _job_object(rng: random.Random, options: Any) -> dict[str, Any]:
    fields = draw_job(rng, options)
    return {
        "type": JOB_TYPE,
        "payload": fields["payload"],
        "max_attempts": fields["max_attempts"],
        "timeout_ms": round(fields["timeout"] * 1000),
        "priority": fields["priority"],
    }


SCHEDULE_EVERY_S = (1, 2, 3)
"""The intervals of the workload's schedules: several slots in every run, slots falling in
every kind of fault (sim.checkers_schedules judges them)."""

SCHEDULE_CHANGE_INTERVAL_S = 4.0
"""How often (virtual time) the schedule operator edits, removes or adds one schedule."""


async def schedules(simulation: Any) -> None:
    """Adds one to three interval schedules firing the workload's job type (a job that
    succeeds at once), then now and then edits one (a new interval), removes one, or adds it
    back, through any node, until the fault phase ends."""
    rng = random.Random(f"{simulation.options.seed}:schedules")
    payload = {"run_ms": 0, "fail_attempts": 0, "heartbeat": False}
    names = [f"every-{number}" for number in range(rng.randint(1, 3))]
    async with connect(
        simulation.addresses,
        network=simulation.network.endpoint("schedules"),
        rng=random.Random(rng.random()),
        timeout=CLIENT_TIMEOUT_S,
    ) as client:
        pending = list(names)
        while simulation.phase == "faults":
            if pending:
                name = pending[0]
                every = rng.choice(SCHEDULE_EVERY_S)
                catch_up = rng.choice(("latest", "all"))
                try:
                    await client.add_schedule(
                        name, JOB_TYPE, payload, every=every, catch_up=catch_up
                    )
                    pending.pop(0)
                    done = f"{name} every {every} s, catch-up {catch_up}"
                except RaftqError as error:
                    done = f"{name} refused ({type(error).__name__})"
                simulation.trace.record("schedule", done)
                continue
            await trio.sleep(SCHEDULE_CHANGE_INTERVAL_S * rng.uniform(0.5, 1.5))
            name = rng.choice(names)
            if simulation.phase != "faults":
                return
            if rng.random() < 0.5:
                pending.append(name)  # edited: added again with a new interval and catch-up
            elif rng.random() < 0.5:
                try:
                    await client.remove_schedule(name)
                    simulation.trace.record("schedule", f"{name} removed")
                except RaftqError as error:
                    simulation.trace.record(
                        "schedule", f"{name} not removed ({error.__class__.__name__})"
                    )
                pending.append(name)
