"""The workload: producers that enqueue with idempotency keys (retrying across nodes, and
re-sending keys whose acknowledgement they never saw), cancels, readers that get jobs from
every node (each reader pinned to one node, so followers serve reads too), and the job handler
the in-process workers run (random durations, failures, heartbeats, timeouts)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
import trio

from raftq.app import App, JobContext, JobFailed
from raftq.client.client import Client, connect
from raftq.errors import JobNotFound, RaftqError
from sim.checkers import JobKey, enqueue_index, job_key
from sim.cluster import CLIENT_TIMEOUT_S

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
    return {
        "payload": payload,
        "max_attempts": rng.randint(1, 4),
        "timeout": timeout_ms / 1000,
        "priority": rng.randint(0, 2),
    }


def make_app(ledger: Ledger, on_start: Callable[[str, int], None] = lambda *_: None) -> App:
    """The simulator's handler; ``on_start(job id, fence)`` as each run begins."""
    app = App(builtins=False)

    async def run(job: JobContext) -> object:
        on_start(job.id, job.fence)
        payload = job.payload
        remaining_ms = int(payload["run_ms"])
        if payload["heartbeat"]:
            step_ms = max(1, job.timeout_ms // 3)
            while remaining_ms > 0:
                await trio.sleep(min(step_ms, remaining_ms) / 1000)
                remaining_ms -= step_ms
                if remaining_ms > 0:
                    await job.heartbeat()
        else:
            await trio.sleep(remaining_ms / 1000)
        ledger.executions[job.id] = ledger.executions.get(job.id, 0) + 1
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
