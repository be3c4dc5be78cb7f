"""Handlers under the simulator: users' own (``--import MODULE``) and the handler-level faults
(``sim.options.HANDLER_KINDS``) that strike any handler's run.

Every node's in-process worker runs a per-node copy of the run's App whose handlers are
wrapped here. The wrapper runs the handler inline (a sync handler too: a thread's timing would
make a seed's run differ), tells the claim rules it started, gives the fakes (``sim.fakes``)
their hooks through context variables, and, in the share of runs the seed drew, strikes it:

- ``handler_crash``: once the handler has returned (its side effects made), the node crashes
  before the worker reports;
- ``lease_expiry``: the run stalls past its lease just before its first side effect lands (a
  request in flight while the process is paused), or, without one, before its report; the
  worker's own deadline cannot stop a request already sent, so the effect lands late;
- ``lost_report``: the report carrying the run's outcome is lost: either the request (the
  cluster never hears it) or its answer (the cluster applied it; the worker never knows);
- ``run_failover``: as the run starts, the leader hands over (a transfer) or crashes;
- ``clock_jump``: as the run starts, the leader's wall clock jumps by up to
  ``CLOCK_JUMP_MS_MAX`` (the ``clock_skew`` kind's bound), ahead or behind, for a few seconds.

Faults strike only in the fault phase; the liveness phase runs handlers undisturbed.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from raftq.app import App, JobContext, Registered, load_app
from raftq.client.jobfile import decode_json, specs_from_objects
from raftq.client.worker import WorkerClient
from raftq.errors import ConfigError, NoQuorum, RaftqError
from raftq.jobs.commands import Lease, Outcome
from sim import fakes
from sim.cluster import CLIENT_TIMEOUT_S
from sim.options import HANDLER_KINDS
from sim.workload import JOB_TYPE

if TYPE_CHECKING:
    from sim.cluster import SimNode
    from sim.runner import Simulation

JOBS_FUNCTION = "simulation_jobs"
"""What a user's module defines to say what the simulator enqueues: ``simulation_jobs(rng)``
returns a list of job-file objects (CONTRACT.md, "Job file"), drawn with ``rng`` (a
``random.Random`` seeded by the run's seed)."""

USER_JOBS_MAX = 1000
"""Jobs a module may ask for in one run: each is enqueued, run under faults and must finish
in the liveness phase; a thousand keeps a seed within a few CPU seconds."""

USER_ENQUEUE_SHARE = 0.6
"""The user's jobs are enqueued over this share of the fault phase, so the last of them still
run under faults."""

STALL_PAST_LEASE_S = (0.1, 2.0)
"""How much longer than its lease a ``lease_expiry`` stall lasts: the leader expires leases
once a second, so up to two seconds past covers an expiry and often a new claim."""

OWN_RUN_SHARE = 0.2
"""Runs of the simulator's own handler (``--handler-faults``) are struck at this fraction of
the seed's share: there are a hundred or more a run, and each ``handler_crash`` crashes a
node."""

CLOCK_JUMP_MS = (300, 1000, 3000)
"""A ``clock_jump`` moves the leader's clock by one of these (plus up to 50 ms), ahead or
behind: the lease lengths the workload uses, within the ``clock_skew`` bound."""
CLOCK_JUMP_MS_MAX = 3050
CLOCK_JUMP_FOR_S = (1.0, 4.0)
"""How long a jumped clock stays off before it is set back."""


# --- the user's module ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class UserModule:
    """A module given with ``--import``, and the ``--check`` function."""

    name: str
    app: App
    jobs: Callable[[random.Random], object]
    check: Callable[[fakes.World], object] | None
    check_name: str

    def jobs_for(self, seed: int) -> list[dict[str, Any]]:
        """The run's jobs, each with an idempotency key (its own ``key`` or ``id``, else
        ``user-N``); ``ConfigError`` naming the problem for anything the simulator could not
        enqueue as given."""
        where = f"{self.name}.{JOBS_FUNCTION}"
        try:
            drawn = self.jobs(random.Random(f"{seed}:user-jobs"))
        except Exception as error:
            raise ConfigError(f"{where} raised {type(error).__name__}: {error}") from None
        if not isinstance(drawn, list):
            raise ConfigError(f"{where} returned a {type(drawn).__name__}, not a list of jobs")
        if not 0 < len(drawn) <= USER_JOBS_MAX:
            raise ConfigError(f"{where} returned {len(drawn)} jobs; 1 to {USER_JOBS_MAX}")
        jobs = []
        for number, job in enumerate(drawn):
            if not isinstance(job, dict):
                raise ConfigError(f"{where}: job {number} is a {type(job).__name__}, not an object")
            job_type = job.get("type", "noop")
            if job_type not in self.app.types:
                raise ConfigError(
                    f"{where}: job {number} has type {job_type!r}, which {self.name} has no "
                    f"handler for (it has: {', '.join(self.app.types)})"
                )
            key = job.get("key", job.get("id", f"user-{number}"))
            jobs.append({**job, "type": job_type, "key": key})
        try:
            specs_from_objects(jobs)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
        return jobs


def load_user_module(name: str, check: str | None) -> UserModule:
    """Import ``name`` (its ``app`` and ``raftq.handler`` handlers, and ``simulation_jobs``) and
    the ``MODULE:FUNCTION`` check; ``ConfigError`` with what is wrong and what to do."""
    app = load_app([name], base=App(builtins=False))
    if not app.types:
        raise ConfigError(f"{name} registers no handlers (an `app = raftq.App()` with handlers)")
    if JOB_TYPE in app.types:
        raise ConfigError(f"{name}: job type {JOB_TYPE!r} is the simulator's own; rename it")
    module = importlib.import_module(name)
    jobs = getattr(module, JOBS_FUNCTION, None)
    if not callable(jobs):
        raise ConfigError(
            f"{name} defines no {JOBS_FUNCTION}(rng) function: it returns the jobs to enqueue "
            "(job-file objects) for one run"
        )
    check_function = None
    if check is not None:
        module_name, _, function_name = check.partition(":")
        if not module_name or not function_name:
            raise ConfigError(f"--check {check!r}: MODULE:FUNCTION")
        try:
            check_module = importlib.import_module(module_name)
        except Exception as error:
            raise ConfigError(f"--check {check!r}: {type(error).__name__}: {error}") from None
        check_function = getattr(check_module, function_name, None)
        if not callable(check_function):
            raise ConfigError(f"--check {check!r}: {module_name} has no function {function_name}")
    return UserModule(name=name, app=app, jobs=jobs, check=check_function, check_name=check or "")


@attrs.frozen(kw_only=True)
class UserJob:
    """A user's job as the check function sees it, once the run is over."""

    key: str
    id: str
    type: str
    state: str
    """``succeeded``, ``dead``, ``cancelled``, ... (every job is final when checks run)."""
    attempts: int
    payload: Any


@attrs.define(eq=False)
class UserLedger:
    jobs: list[dict[str, Any]]
    acked: dict[str, str] = attrs.field(factory=dict)
    """Key -> job id, for each job whose enqueue was acknowledged."""
    done: bool = False
    """Every job acknowledged."""


async def user_producer(simulation: Simulation) -> None:
    """Enqueue the user's jobs one by one over the first ``USER_ENQUEUE_SHARE`` of the fault
    phase, each with its key, retrying (the same key: never twice) until acknowledged, in the
    liveness phase too: every job the module asked for runs before its check."""
    ledger = simulation.user_ledger
    assert ledger is not None
    rng = random.Random(f"{simulation.options.seed}:user-producer")
    spacing_s = simulation.options.sim_seconds * USER_ENQUEUE_SHARE / len(ledger.jobs)
    async with simulation.client("user") as client:
        for job in ledger.jobs:
            await trio.sleep(spacing_s * rng.uniform(0.5, 1.5))
            for _ in range(10_000):
                try:
                    (job_id,) = await client.enqueue_many([job])
                except ConfigError:
                    raise  # checked before the run (``jobs_for``): the simulator's own bug
                except RaftqError as error:  # retried with its key: never enqueued twice
                    what = type(error).__name__
                    simulation.trace.record("user", f"{job['key']} not acknowledged: {what}")
                    await trio.sleep(0.5)
                    continue
                ledger.acked[job["key"]] = job_id
                simulation.trace.record("user", f"{job['key']} -> {job_id}")
                break
    ledger.done = True


def user_jobs(simulation: Simulation) -> list[UserJob]:
    ledger = simulation.user_ledger
    assert ledger is not None
    jobs = []
    for key, job_id in ledger.acked.items():
        job = simulation.oracle.machine.jobs[job_id]
        jobs.append(
            UserJob(
                key=key,
                id=job_id,
                type=job.type,
                state=job.state.value,
                attempts=job.attempts,
                payload=decode_json(job.payload),
            )
        )
    return jobs


# --- the wrapped handlers and their faults --------------------------------------------------------


@attrs.define(eq=False)
class _Run:
    simnode: SimNode
    starts: int
    job: JobContext
    fault: str | None
    effects: int = 0
    stalled: bool = False


class HandlerRuns:
    """Per-node Apps whose handlers run under the seed's handler faults."""

    def __init__(
        self,
        simulation: Simulation,
        app: App,
        user_types: Sequence[str],
        struck_types: Sequence[str],
    ) -> None:
        self.simulation = simulation
        self.app = app
        self.user_types = frozenset(user_types)
        self.struck_types = frozenset(struck_types)
        """The job types whose runs the faults strike: a user's (``--import``), and the
        simulator's own without one or with ``--handler-faults``."""
        self.kinds = tuple(kind for kind in simulation.options.swarm if kind in HANDLER_KINDS)
        self.share = simulation.options.handler_fault_share if self.kinds else 0.0
        self.rng = random.Random(f"{simulation.options.seed}:handler-faults")
        self.lose: dict[tuple[str, int], bool] = {}
        """(job id, fence) -> whether its report's answer (True) or request (False) is lost."""
        self.jumped: set[str] = set()
        self._apps: dict[str, App] = {}

    def app_for(self, simnode: SimNode) -> App:
        app = self._apps.get(simnode.id)
        if app is None:
            app = App(builtins=False)
            for job_type in self.app.types:
                registered = self.app.lookup(job_type)
                assert registered is not None
                app.register(job_type, self._wrapped(simnode, job_type, registered))
            self._apps[simnode.id] = app
        return app

    def watch(self, client: WorkerClient) -> WorkerClient:
        return _LossyReports(client, self)

    def _wrapped(
        self, simnode: SimNode, job_type: str, registered: Registered
    ) -> Callable[[JobContext], Any]:
        started = job_type in self.user_types  # the simulator's own handler says it itself
        struck = job_type in self.struck_types

        async def run(job: JobContext) -> Any:
            if started:
                self.simulation.claim_rules.started(job.id, job.fence)
            fault = self._draw(job_type) if struck else None
            state = _Run(simnode=simnode, starts=simnode.starts, job=job, fault=fault)
            if fault == "run_failover":
                self._failover(state)
            elif fault == "clock_jump":
                self._clock_jump(state)
            before = fakes.before_effect.set(lambda: self._before_effect(state))
            made = fakes.effect_made.set(lambda: _count(state))
            try:
                if registered.is_async:
                    result = await registered.function(job)
                else:  # inline: a thread would make the run depend on the machine's timing
                    result = registered.function(job)
            finally:
                fakes.before_effect.reset(before)
                fakes.effect_made.reset(made)
            if fault == "lease_expiry" and not state.stalled:
                await self._stall(state, "before its report")
            elif fault == "handler_crash":
                await self._crash(state)
            elif fault == "lost_report":
                self.lose[(job.id, job.fence)] = self.rng.random() < 0.5
            return result

        return run

    def _draw(self, job_type: str) -> str | None:
        if not self.kinds or self.simulation.phase != "faults":
            return None
        share = self.share if job_type in self.user_types else self.share * OWN_RUN_SHARE
        if self.rng.random() >= share:
            return None
        return self.kinds[self.rng.randrange(len(self.kinds))]

    async def _before_effect(self, state: _Run) -> None:
        if state.fault == "lease_expiry" and not state.stalled:
            await self._stall(state, "before its side effect lands")

    async def _stall(self, state: _Run, where: str) -> None:
        """Pause the run past its lease; the worker's deadline passes meanwhile, but what was
        already on its way lands (the shield). A crash of its node ends it all the same."""
        state.stalled = True
        job, simulation = state.job, self.simulation
        stall_s = job.timeout_ms / 1000 + self.rng.uniform(*STALL_PAST_LEASE_S)
        simulation.faults.lease_expiries += 1
        simulation.trace.record(
            "handler", f"{job.id} fence {job.fence} stalls {stall_s:.3f} s {where}"
        )
        with trio.CancelScope(shield=True):
            await trio.sleep(stall_s)
        if _gone(state):
            await trio.lowlevel.checkpoint()  # its process crashed: the cancellation lands here

    async def _crash(self, state: _Run) -> None:
        job, simulation, simnode = state.job, self.simulation, state.simnode
        if _gone(state):
            return
        simulation.faults.handler_crashes += 1
        simulation.crash(simnode, f"handler fault: {job.id} fence {job.fence} ran, no report")
        await trio.lowlevel.checkpoint()  # the crash's cancellation: the report never goes

    def _failover(self, state: _Run) -> None:
        simulation = self.simulation
        leader = simulation.leader()
        if leader is None:
            return
        others = [s for s in simulation.nodes if s is not leader and s.node is not None]
        simulation.faults.run_failovers += 1
        simulation.trace.record("handler", f"{state.job.id} fence {state.job.fence}: failover")
        if others and (leader is state.simnode or self.rng.random() < 0.5):
            simulation.transfer_to(leader, others[self.rng.randrange(len(others))])
        else:
            simulation.crash(leader, f"handler fault: failover during {state.job.id}")

    def _clock_jump(self, state: _Run) -> None:
        simulation = self.simulation
        leader = simulation.leader()
        if leader is None or leader.id in self.jumped:
            return
        jump_ms = self.rng.choice(CLOCK_JUMP_MS) + self.rng.randint(-50, 50)
        jump_ms *= self.rng.choice([1, -1])
        assert abs(jump_ms) <= CLOCK_JUMP_MS_MAX, jump_ms
        for_s = self.rng.uniform(*CLOCK_JUMP_FOR_S)
        self.jumped.add(leader.id)
        leader.clock.skew_ms += jump_ms
        simulation.faults.clock_jumps += 1
        simulation.trace.record(
            "clock", f"{leader.id} jumps {jump_ms:+d} ms for {for_s:.2f} s ({state.job.id})"
        )

        async def back() -> None:
            await trio.sleep(for_s)
            leader.clock.skew_ms -= jump_ms
            self.jumped.discard(leader.id)
            simulation.trace.record("clock", f"{leader.id} back by {-jump_ms:+d} ms")

        simulation.spawn(back)


def _count(state: _Run) -> None:
    state.effects += 1


def _gone(state: _Run) -> bool:
    """Whether the run's process crashed (or stopped) since it started."""
    simnode = state.simnode
    return simnode.starts != state.starts or simnode.crashing or simnode.node is None


@attrs.define(eq=False)
class _LossyReports:
    """A worker's client whose reports of the runs ``HandlerRuns.lose`` names are lost."""

    client: WorkerClient
    runs: HandlerRuns

    async def report(self, outcomes: Sequence[Outcome]) -> tuple[str | None, ...]:
        lose = self.runs.lose
        lost = [outcome for outcome in outcomes if (outcome.job_id, outcome.fence) in lose]
        if not lost:
            return await self.client.report(outcomes)
        answer_lost = any(lose.pop((outcome.job_id, outcome.fence)) for outcome in lost)
        simulation = self.runs.simulation
        simulation.faults.lost_reports += 1
        what = "answer" if answer_lost else "request"
        named = " ".join(f"{outcome.job_id}@{outcome.fence}" for outcome in lost)
        simulation.trace.record("handler", f"report of {named} lost ({what})")
        if answer_lost:
            await self.client.report(outcomes)
        await trio.sleep(CLIENT_TIMEOUT_S)  # what the worker sees of a lost message: a timeout
        raise NoQuorum(f"simulated: the report's {what} was lost")

    async def claim(
        self, claimer: str, types: Sequence[str], queues: Sequence[str], max_jobs: int, hold_ms: int
    ) -> tuple[Lease, ...]:
        return await self.client.claim(claimer, types, queues, max_jobs, hold_ms)

    async def extend(
        self, leases: Sequence[tuple[str, int]], until_ms: int
    ) -> tuple[str | None, ...]:
        return await self.client.extend(leases, until_ms)

    async def release(self, leases: Sequence[tuple[str, int]]) -> tuple[str | None, ...]:
        return await self.client.release(leases)

    async def progress(self, values: Sequence[tuple[str, int, bytes]]) -> tuple[str | None, ...]:
        return await self.client.progress(values)
