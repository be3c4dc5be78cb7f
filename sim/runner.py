"""One simulation run: a seed in, a verdict out.

The fault phase runs the cluster under the seed's faults and workload for ``sim_seconds`` of
virtual time, checking safety every ``CHECK_INTERVAL_S``. The liveness phase then heals the
network, turns disk faults off and restarts every node for good: within
``LIVENESS_BOUND_S`` every acknowledged job must reach a final state and all nodes converge.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import attrs
import trio

from raftq.app import App
from raftq.client.client import Client, connect
from raftq.errors import RaftqError
from raftq.ids import NodeId
from raftq.jobs.machine import digest_of
from raftq.raft.ready import Role
from raftq.raft.types import Entry
from sim import fakes
from sim.checkers import CommittedLog, JobOracle, NodeChecks, ReadChecker, Violation
from sim.checkers_claims import ClaimRules
from sim.checkers_deps import DependencyRules
from sim.checkers_jobs import HistoryAndBulkRules
from sim.checkers_limits import LimitRules
from sim.checkers_more import LeaseAndRetryRules
from sim.checkers_policy import PolicyRules
from sim.checkers_schedules import ScheduleRules
from sim.cluster import (
    CLIENT_TIMEOUT_S,
    SimNode,
    caused_by_sync_error,
    describe,
    refused_corruption,
    run_process,
)
from sim.determinism import (
    IO_POLL_EVERY_LOOPS,
    collect_garbage,
    collections_on_schedule,
    deterministic_scheduling,
    hold_tasks,
    poll_io_every,
    virtual_clock,
)
from sim.disk import SimDisk
from sim.handlers import HandlerRuns, UserLedger, UserModule, user_jobs, user_producer
from sim.network import SimNetwork
from sim.options import Options, handler_faults_forced
from sim.schedules import schedule_loop
from sim.trace import Trace
from sim.workload import (
    JOB_TYPE,
    Ledger,
    dependent_producer,
    draw_job,
    job_group,
    job_unique,
    limits_operator,
    make_app,
    operator,
    reader,
    retries_dead_jobs,
    runs_dependencies,
    schedules,
    uses_limits,
)

CHECK_INTERVAL_S = 0.02
"""Safety checks this often (virtual): often enough to read every committed entry before a
snapshot compacts it away (the smallest ``snapshot_entries`` drawn is 60)."""

FULL_COLLECTION_EVERY_CHECKS = 1000
"""A full garbage collection every 20 simulated seconds. Each scans every object the run keeps
(the oracle's and every node's job state): every 5 s they were 4.5% of heavy seed 90022's CPU
(61 collections, 1.07 s; simspeed14, measured with ``gc.callbacks``), now 16, 0.5 s. What they
free is only the run's own cycles (exceptions and the frames they hold): the process's peak
memory stayed at 63 MB, and no trace changed (the 50 seeds of ``benchmarks/bench_sim.py``)."""

YOUNG_COLLECTION_EVERY_CHECKS = 10
"""Young objects every 0.2 simulated seconds (every check before simspeed14: 14,750
collections in seed 90022, 0.61 CPU seconds; now 1,467, 0.39 s). A young collection costs
what it scans, which is about the same however often it runs, plus a fixed cost per call."""

DIGEST_EVERY_CHECKS = 50
"""Digests (a full state encoding each) once a simulated second at most, with the status line
of the trace: they cost more than the rest of the checks together."""

DIGEST_JOBS_PER_SECOND = 250
"""Past this many jobs in the oracle's state, digests are taken every ``jobs / 250`` simulated
seconds instead of every second: each encodes every job of the oracle and of every node, so at
one a second a heavy seed spent 22% of its CPU on them (seed 73110, 1,142 jobs; 7% of seed
5003, 302 jobs: measured). Which rounds digest depends on the oracle's job count alone, so a
replay digests at the same points (and the trace, which holds no digest, is unchanged)."""
LIVENESS_BASE_S = 60.0
"""After healing: an election, the lease extension on failover (10 s), retry backoff (1+2+4
s), with room to spare; plus twice the work still queued (``liveness_bound_s``)."""

ROT_NOTICED_S = 1.0
"""How long after a node rots its silence is surely known to the leader: past three
check-quorum rounds (an election timeout each, 300 ms), which is the longest a voter heard
just before it went down still counts as answering (``raftq.raft.replication.answering``)."""

NO_PROGRESS_S = 30.0
"""No new committed entry for this long while faults come and go (each heals within seconds
and the leader commits an ExpireLeases every second): the cluster is stuck."""

WALL_BUDGET_S = 300.0

USER_RUN_PRODUCERS = 1
USER_RUN_ENQUEUE_INTERVAL_MS = 400
"""With ``--import``, the simulator's own producers slow down to one job every 0.4 s or so:
at their drawn pace (up to three producers, a job every 40 ms each) they kept every worker
busy, and the user's jobs waited in the queue until the faults were over (seed 3 of the
tutorial ran 19 of its 20 jobs in the liveness phase). Its other workloads stay as drawn."""
TRACE_TAIL_REPORTED = 30


@attrs.define(eq=False)
class FaultCounts:
    crashes: int = 0
    snapshot_crashes: int = 0
    partitions: int = 0
    disk_faults: int = 0
    resets: int = 0
    transfers: int = 0
    membership_changes: int = 0
    self_stops: int = 0
    sync_errors: int = 0
    corruptions: int = 0
    repairs: int = 0
    schedules: int = 0
    """Fault schedules run (``sim.schedules``), and of them each kind:"""
    ack_crashes: int = 0
    down_compactions: int = 0
    membership_partitions: int = 0
    lease_skews: int = 0
    deposed_reads: int = 0
    figure_8s: int = 0
    held_snapshots: int = 0
    late_releases: int = 0
    slow_snapshots: int = 0
    rot_removes: int = 0
    lost_answers: int = 0
    pauses: int = 0
    handler_crashes: int = 0
    """Handler-level faults (``sim.handlers``), each struck run:"""
    lease_expiries: int = 0
    lost_reports: int = 0
    run_failovers: int = 0
    clock_jumps: int = 0


@attrs.define(eq=False)
class Report:
    seed: int
    options: Options
    verdict: str
    trace_hash: str
    sim_seconds: float
    wall_seconds: float
    cpu_seconds: float
    """The process's CPU time in the run: unlike wall time, not inflated by a busy machine."""
    faults: FaultCounts
    jobs_acked: int
    jobs_succeeded: int
    violations: list[str]
    trace_tail: list[str]
    trace_lines: list[str] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "verdict": self.verdict,
            "trace_hash": self.trace_hash,
            "sim_seconds": round(self.sim_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "faults": attrs.asdict(self.faults),
            "jobs_acked": self.jobs_acked,
            "jobs_succeeded": self.jobs_succeeded,
            "violations": self.violations,
            "nodes": self.options.nodes,
            "swarm": list(self.options.swarm),
        }


class _WallWatchdog:
    """Cancels the run when it exceeds its wall-clock budget, even if virtual time is stuck
    (a task that never blocks keeps MockClock from jumping, and the checker from running):
    called at each of the run's I/O polls (``poll_io_every``), which a spinning task still
    reaches (every scheduler loop ends in one, every ``IO_POLL_EVERY_LOOPS``-th polls)."""

    def __init__(self, budget_s: float, on_expiry: Any) -> None:
        self._deadline = time.monotonic() + budget_s
        self._on_expiry = on_expiry
        self.expired = False

    def __call__(self) -> None:
        if not self.expired and time.monotonic() > self._deadline:
            self.expired = True
            self._on_expiry()


Script = Callable[["Simulation"], Awaitable[None]]
"""A scripted fault phase (a named scenario): it runs instead of the seed's random faults, and
the liveness phase starts when it returns."""


class Simulation:
    def __init__(
        self,
        options: Options,
        *,
        wall_budget_s: float,
        keep_trace: bool,
        script: Script | None = None,
        user: UserModule | None = None,
        own_handler_faults: bool = False,
    ) -> None:
        self.options = options
        self.script = script
        self.rng = random.Random(f"run:{options.seed}")
        self.trace = Trace(keep_all=keep_trace)
        self.network = SimNetwork(random.Random(self.rng.random()), options.network, self.trace)
        members = {NodeId(f"n{n}"): f"127.0.0.1:{7000 + n}" for n in range(1, options.nodes + 1)}
        self.addresses = [members[node] for node in sorted(members)]
        self.nodes = [
            SimNode(node, members, options, random.Random(self.rng.random()))
            for node in sorted(members)
        ]
        self.ledger = Ledger()
        self.claim_rules = ClaimRules()
        self.limit_rules = LimitRules()
        self.app = make_app(self.ledger, on_start=self.claim_rules.started)
        self.user = user
        self.user_ledger: UserLedger | None = None
        self.world = fakes.begin_world(self._effect)
        self.handlers: HandlerRuns | None = None
        if user is not None:
            self.user_ledger = UserLedger(jobs=user.jobs_for(options.seed))
            self.app = App(builtins=False)
            self.app.include(make_app(self.ledger, on_start=self.claim_rules.started))
            self.app.include(user.app)
        if user is not None or options.handler_fault_share:
            user_types = user.app.types if user is not None else ()
            strike = (*user_types, JOB_TYPE) if own_handler_faults or user is None else user_types
            self.handlers = HandlerRuns(self, self.app, user_types, strike)
        self.committed = CommittedLog()
        self.oracle = JobOracle()
        self.more_rules = LeaseAndRetryRules()
        self.job_rules = HistoryAndBulkRules()
        self.dependency_rules = DependencyRules()
        self.policy_rules = PolicyRules()
        self.schedule_rules = ScheduleRules()
        self.reads = ReadChecker(self.oracle)
        self.node_checks = NodeChecks()
        self.faults = FaultCounts()
        self.phase = "faults"
        self.violations: list[Violation] = []
        self.wall_budget_s = wall_budget_s
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self.paused: SimNode | None = None
        """The process stopped by ``pause`` (the ``pause`` schedule), if one is."""
        self._hold: contextlib.AbstractContextManager[None] | None = None
        self._checks = 0
        self._rounds_since_digest = 0
        self._last_progress = (0, 0.0)

    # --- the run --------------------------------------------------------------------------------

    async def main(self) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for simnode in self.nodes:
                    self.start(simnode)
                nursery.start_soon(self.check_loop)
                if self.script is None:
                    self.trace.record("swarm", " ".join(self.options.swarm) or "(no faults)")
                    nursery.start_soon(self.fault_loop)
                    nursery.start_soon(self.reset_loop)
                    nursery.start_soon(schedule_loop, self)
                for number in range(1, self.options.producers + 1):
                    nursery.start_soon(self.producer, number)
                for simnode in self.nodes:
                    nursery.start_soon(reader, self, simnode)
                if self.script is None and retries_dead_jobs(self.options.seed):
                    nursery.start_soon(operator, self)
                if self.script is None and uses_limits(self.options.seed):
                    nursery.start_soon(limits_operator, self)
                if self.script is None and runs_dependencies(self.options.seed):
                    nursery.start_soon(dependent_producer, self)
                if self.script is None:
                    nursery.start_soon(schedules, self)
                if self.user is not None:
                    nursery.start_soon(user_producer, self)
                if self.script is None:
                    await trio.sleep(self.options.sim_seconds)
                else:
                    await self.script(self)
                await self.liveness()
                if self.user is not None and self.user.check is not None:
                    self.check_user()
                nursery.cancel_scope.cancel()

    def fail(self, violation: Violation) -> None:
        if self.violations:
            return  # the first one is the one that matters; the rest may be its echoes
        self.violations.append(violation)
        self.trace.record("VIOLATION", str(violation))
        if self._scope is not None:
            self._scope.cancel()

    def check_user(self) -> None:
        """The user's ``--check`` function, once every job is final: its failure (any
        exception, an ``assert`` mostly) is a violation with its message."""
        user = self.user
        assert user is not None
        assert user.check is not None
        self.world.jobs = user_jobs(self)
        try:
            user.check(self.world)
        except Exception as error:  # the user's code: whatever it raises is its verdict
            self.fail(Violation(f"check {user.check_name}", f"{type(error).__name__}: {error}"))
        else:
            self.trace.record("check", f"{user.check_name} passed")

    def _effect(self, effect: fakes.Effect) -> None:
        outcome = "applied" if effect.applied else f"not applied ({effect.why})"
        self.trace.record(
            "effect",
            f"{effect.target} {effect.operation} {effect.key} by {effect.job_id} "
            f"attempt {effect.attempt} fence {effect.fence}: {outcome}",
        )

    def spawn(self, function: Callable[[], Awaitable[None]]) -> None:
        """Run ``function`` in the run's nursery (for the handler faults' follow-ups)."""
        assert self._nursery is not None
        self._nursery.start_soon(function)

    @contextlib.asynccontextmanager
    async def client(self, name: str) -> AsyncIterator[Client]:
        """A client from an endpoint of its own (cut by partitions like the producers')."""
        async with connect(
            self.addresses,
            network=self.network.endpoint(name),
            rng=random.Random(f"{self.options.seed}:client:{name}"),
            timeout=CLIENT_TIMEOUT_S,
        ) as client:
            yield client

    def wall_budget_exceeded(self) -> None:
        self.fail(Violation("wall-clock budget", f"run exceeded {self.wall_budget_s:.0f} s"))

    # --- processes ------------------------------------------------------------------------------

    def start(self, simnode: SimNode) -> None:
        """Start the node's process, unless one is already running or about to."""
        assert self._nursery is not None
        if simnode.running:
            return
        simnode.stopped = trio.Event()
        app, watch = self.app, self.claim_rules.watch
        if self.handlers is not None:
            handlers = self.handlers
            app = handlers.app_for(simnode)
            watch = lambda client: handlers.watch(self.claim_rules.watch(client))  # noqa: E731
        self._nursery.start_soon(
            run_process,
            simnode,
            self.network,
            app,
            self.options,
            self.trace,
            self.died,
            self.applied,
            watch,
        )

    def applied(self, node: str, entry: Entry) -> None:
        try:
            self.committed.observe_committed(node, entry)
        except Violation as violation:
            self.fail(violation)

    async def restart_after(self, simnode: SimNode, delay_s: float) -> None:
        await trio.sleep(delay_s)
        await simnode.stopped.wait()
        if not simnode.running and not simnode.repairing:
            self.start(simnode)

    def crash(self, simnode: SimNode, why: str) -> None:
        if simnode.scope is None or simnode.crashing:
            return
        if self.paused is simnode:
            self.resume("killed while paused")  # SIGKILL ends a stopped process too
        simnode.crashing = True
        simnode.snapshot_crash_armed = False
        simnode.disk.crash()
        self.network.reset_endpoint(simnode.id)
        simnode.scope.cancel()
        simnode.node = None
        self.faults.crashes += 1
        self.trace.record("crash", f"{simnode.id} ({why})")
        self.schedule_restart(simnode)

    def schedule_restart(self, simnode: SimNode) -> None:
        assert self._nursery is not None
        if self.phase == "faults":
            delay_s = self.rng.uniform(0.05, self.options.down_max_s)
            self._nursery.start_soon(self.restart_after, simnode, delay_s)
        elif self.phase == "liveness":  # a fault of the fault phase that surfaced late
            self._nursery.start_soon(self.restart_after, simnode, 0.05)

    def died(self, simnode: SimNode, error: BaseException) -> None:
        """The process stopped by itself: right after an fdatasync error, or refusing a disk
        with a corrupted record; a bug otherwise."""
        if simnode.rotten and refused_corruption(error):
            self.trace.record("process", f"{simnode.id} refused to start: {describe(error)}")
            if not simnode.repairing:
                simnode.repairing = True
                assert self._nursery is not None
                self._nursery.start_soon(self.repair, simnode)
            return
        if not caused_by_sync_error(simnode, error):
            self.fail(Violation("nodes do not die", f"{simnode.id}: {describe(error)}"))
            return
        self.faults.self_stops += 1
        self.trace.record("process", f"{simnode.id} stopped itself: {describe(error)[:120]}")
        simnode.disk.crash()  # what the process never synced may be lost
        self.network.reset_endpoint(simnode.id)
        self.schedule_restart(simnode)

    async def repair(self, simnode: SimNode) -> None:
        """What an operator does with a node whose disk is corrupt: remove it from the cluster
        (its votes must not count once it forgets them), wipe it, start it empty; membership
        steps (and the liveness phase) then add it back as a learner and promote it."""
        for _ in range(10_000):
            async with self.operator() as client:
                try:
                    await client.remove_node(simnode.id)
                except RaftqError as error:
                    self.trace.record("membership", f"remove {simnode.id}: {error!s:.60}")
                else:
                    self.trace.record("membership", f"operator removed {simnode.id}")
                    break
            await trio.sleep(0.5)
        await simnode.stopped.wait()
        simnode.disk = SimDisk(random.Random(simnode.disk_rng.random()), self.options.disk)
        simnode.disk.faults_on = self.phase == "faults"
        simnode.rotten = False
        simnode.repairing = False
        self.faults.repairs += 1
        self.trace.record("repair", f"{simnode.id} wiped, starts empty")
        self.start(simnode)

    def arm_snapshot_crash(self, simnode: SimNode) -> None:
        def hook(operation: str, path: str) -> None:
            armed = simnode.snapshot_crash_armed and path.startswith("snapshots/")
            if armed and operation in ("write", "fdatasync", "rename"):
                self.faults.snapshot_crashes += 1
                self.crash(simnode, f"during snapshot {operation} of {path}")

        simnode.snapshot_crash_armed = True
        simnode.disk.hook = hook
        self.trace.record("arm", f"{simnode.id} crashes at its next snapshot write")

    # --- for scripts ----------------------------------------------------------------------------

    async def wait_until(self, condition: Callable[[], bool], what: str, bound_s: float) -> None:
        """Poll (virtual time) until ``condition``; a Violation if it takes over ``bound_s``."""
        for _ in range(int(bound_s / 0.001)):
            if condition():
                return
            await trio.sleep(0.001)
        raise Violation("scenario", f"{what} did not happen within {bound_s} s")

    async def wait_for_leader(self, bound_s: float = 10.0) -> SimNode:
        await self.wait_until(lambda: self.leader() is not None, "a leader", bound_s)
        leader = self.leader()
        assert leader is not None
        return leader

    def node(self, node_id: str) -> SimNode:
        (simnode,) = [simnode for simnode in self.nodes if simnode.id == node_id]
        return simnode

    def cut(self, cuts: list[tuple[str, str]], kind: str) -> None:
        self.faults.partitions += 1
        self.network.set_cuts(cuts)
        self.trace.record("partition", f"{kind} {sorted(cuts)}")

    def heal(self) -> None:
        self.network.heal()
        self.trace.record("heal", "network healed")

    def pause(self, simnode: SimNode, *, raft_peer_only: bool = False) -> bool:
        """Stop ``simnode``'s process as SIGSTOP does: none of its tasks runs until
        ``resume`` (its timers then fire late, all at once; its clock has jumped; what was
        sent to it waits in the network, and once the network holds a connection's worth,
        its senders wait). ``raft_peer_only``: stop only its Raft peer's task, as a long
        fdatasync does (its connections go on reading into the peer's inbox). One at a time;
        False if it is not running."""
        if self.paused is not None or simnode.task is None or simnode.crashing:
            return False
        root = simnode.task
        if raft_peer_only:
            owner = simnode.node.raft.log_writer.owner if simnode.node is not None else None
            if owner is None:
                return False
            root = owner
        self._hold = hold_tasks(root)
        self._hold.__enter__()
        self.paused = simnode
        what = (
            "its Raft peer stands still (a long fsync)" if raft_peer_only else "stopped (SIGSTOP)"
        )
        self.trace.record("pause", f"{simnode.id} {what}")
        return True

    def resume(self, why: str = "continued (SIGCONT)") -> None:
        if self.paused is None or self._hold is None:
            return
        simnode, hold = self.paused, self._hold
        self.paused = self._hold = None
        hold.__exit__(None, None, None)
        self.trace.record("pause", f"{simnode.id} {why}")

    def crash_now(self, simnode: SimNode, why: str) -> None:
        """Crash without scheduling a restart (scripts restart nodes themselves)."""
        phase, self.phase = self.phase, "scripted"
        try:
            self.crash(simnode, why)
        finally:
            self.phase = phase

    async def restart(self, simnode: SimNode) -> None:
        await simnode.stopped.wait()
        self.start(simnode)
        await self.wait_until(lambda: simnode.node is not None, f"{simnode.id} up", 5.0)

    def arm_crash(self, simnode: SimNode, operation: str, path_prefix: str) -> None:
        """Crash ``simnode`` at its next ``operation`` on a path under ``path_prefix``."""

        def hook(seen_operation: str, path: str) -> None:
            if seen_operation == operation and path.startswith(path_prefix):
                simnode.disk.hook = None
                self.crash_now(simnode, f"at {operation} of {path}")

        simnode.disk.hook = hook
        self.trace.record("arm", f"{simnode.id} crashes at its next {operation} of {path_prefix}")

    # --- faults ---------------------------------------------------------------------------------

    async def fault_loop(self) -> None:
        options = self.options
        rates = [
            ("crash", options.crashes_per_minute),
            ("partition", options.partitions_per_minute),
            ("transfer", options.transfers_per_minute),
            ("membership", options.membership_changes_per_minute),
        ]
        total_per_s = sum(rate for _, rate in rates) / 60
        if total_per_s == 0:
            return
        while self.phase == "faults":
            await trio.sleep(self.rng.expovariate(total_per_s))
            if self.phase != "faults":
                return
            kind = self.pick_fault(rates)
            if kind == "crash":
                self.crash_fault()
            elif kind == "partition":
                await self.partition_fault()
            elif kind == "transfer":
                self.transfer_fault()
            else:
                await self.membership_step(toward_full=False)

    def pick_fault(self, rates: list[tuple[str, float]]) -> str:
        pick = self.rng.uniform(0, sum(rate for _, rate in rates))
        for kind, rate in rates:
            if pick < rate:
                return kind
            pick -= rate
        return rates[-1][0]

    def leader(self) -> SimNode | None:
        leaders = [
            simnode
            for simnode in self.nodes
            if simnode.node is not None and simnode.node.raft.core.role is Role.LEADER
        ]
        return max(leaders, key=lambda s: s.node.raft.core.term if s.node else 0, default=None)

    def crash_fault(self) -> None:
        options = self.options
        if self.rng.random() < options.snapshot_crash_share:
            self.arm_snapshot_crash(self.nodes[self.rng.randrange(len(self.nodes))])
            return
        leader = self.leader()
        if leader is not None and self.rng.random() < options.leader_crash_share:
            self.crash(leader, "the leader")
            return
        up = [simnode for simnode in self.nodes if simnode.scope is not None]
        if not up:
            return
        victim = up[self.rng.randrange(len(up))]
        self.crash(victim, "random")
        rot = victim is not leader and self.rng.random() < options.corruption_share
        if rot and self.may_rot():
            path = victim.disk.rot_synced_record()
            if path is not None:
                victim.rotten, victim.rotten_at = True, trio.current_time()
                self.faults.corruptions += 1
                self.trace.record("corrupt", f"{victim.id}: a synced record of {path}")

    def rot_unnoticed(self) -> bool:
        """The fault atlas: a node rotted too recently for the leader to know it is silent
        (``ROT_NOTICED_S``). No check can tell a node gone for good a moment ago from one that
        answered a moment ago; a voter removed then leaves two, one never to answer again, as
        a second node lost would (seed 5100041: the operator removed the leader 20 ms after
        the rot). The operator removes nothing then; after, the leader must refuse itself
        (``sim.schedules.rot_remove``, mutant ``reconfig_loses_quorum``)."""
        now = trio.current_time()
        return any(s.rotten and now - s.rotten_at < ROT_NOTICED_S for s in self.nodes)

    def may_rot(self) -> bool:
        """The fault atlas: corrupt a node's synced data only while every node is a voter and
        none is being repaired, so the corrupted node is the only one out (a minority). A node
        still catching up after its repair does not count towards a majority yet."""
        leader = self.leader()
        if leader is None or leader.node is None:
            return False
        membership = leader.node.raft.core.membership
        everyone = tuple(simnode.id for simnode in self.nodes)
        healthy = not any(simnode.rotten or simnode.repairing for simnode in self.nodes)
        return healthy and membership.voters == everyone and not membership.learners

    async def partition_fault(self) -> None:
        names = [simnode.id for simnode in self.nodes]
        kind = self.rng.choice(["isolate", "split", "one_way", "bridge"])
        shuffled = names[:]
        self.rng.shuffle(shuffled)
        cuts: list[tuple[str, str]] = []
        if kind == "isolate":
            lonely = shuffled[0]
            others = [*shuffled[1:], *self.producer_names()]
            cuts = [(a, b) for a in [lonely] for b in others] + [(b, lonely) for b in others]
        elif kind == "split":
            size = self.rng.randint(1, len(names) // 2)
            minority, majority = shuffled[:size], shuffled[size:]
            cuts = [(a, b) for a in minority for b in majority]
            cuts += [(b, a) for a in minority for b in majority]
        elif kind == "one_way":
            cuts = [(shuffled[0], shuffled[1])]
        else:  # a node that reaches everyone while the others cannot reach each other
            rest = shuffled[1:]
            cuts = [(a, b) for a in rest for b in rest if a != b]
        self.faults.partitions += 1
        self.network.set_cuts(cuts)
        self.trace.record("partition", f"{kind} {sorted(cuts)}")
        await trio.sleep(self.rng.uniform(0.1, self.options.partition_max_s))
        if self.phase == "faults":
            self.network.heal()
            self.trace.record("heal", "network healed")

    def transfer_fault(self) -> None:
        leader = self.leader()
        if leader is None or leader.node is None:
            return
        targets = [simnode for simnode in self.nodes if simnode is not leader]
        self.transfer_to(leader, targets[self.rng.randrange(len(targets))])

    def transfer_to(self, leader: SimNode, target: SimNode) -> None:
        if leader.node is None:
            return
        self.faults.transfers += 1
        self.trace.record("transfer", f"{leader.id} -> {target.id}")
        leader.node.raft.transfer_leadership(target.id)

    @contextlib.asynccontextmanager
    async def operator(self) -> AsyncIterator[Client]:
        """A client for cluster operations (``raftq cluster add|remove``), from its own
        endpoint, which partitions never cut."""
        async with connect(
            self.addresses,
            network=self.network.endpoint("operator"),
            rng=random.Random(self.rng.random()),
            timeout=CLIENT_TIMEOUT_S,
        ) as client:
            yield client

    async def membership_step(self, *, toward_full: bool) -> None:
        """One operator action through the client API: add back (learner, then promoted; or,
        half the time, only as a learner until the next step) a node that is out or only a
        learner, or (unless ``toward_full``; while a node is out,
        half the time) remove a voter, down to a single one."""
        leader = self.leader()
        if leader is None or leader.node is None:
            return
        current = leader.node.raft.core.membership
        outside = [
            simnode
            for simnode in self.nodes
            if simnode.id not in current.voters and not simnode.repairing
        ]
        # Half the time, shrink further while a node is out: down to one voter and back.
        shrink = not toward_full and len(current.voters) > 1
        shrink = shrink and (not outside or self.rng.random() < 0.5)
        if shrink and self.rot_unnoticed():
            return
        async with self.operator() as client:
            try:
                if outside and not shrink:
                    simnode = outside[0]
                    if simnode.id not in current.learners and self.rng.random() < 0.5:
                        # Only as a learner, for now: the next step promotes it. A learner
                        # ahead of lagging voters must not count for commit.
                        action = f"add {simnode.id} as a learner"
                        await client._change_membership(  # no public add-learner call
                            "add_learner", simnode.id, simnode.config.address
                        )
                    else:
                        action = f"add {simnode.id}"
                        await client.add_node(simnode.id, simnode.config.address)
                elif shrink:
                    removed = current.voters[self.rng.randrange(len(current.voters))]
                    action = f"remove {removed}"
                    await client.remove_node(removed)
                else:
                    return
            except RaftqError as error:
                self.trace.record("membership", f"{action} not done: {type(error).__name__}")
                return
        self.faults.membership_changes += 1
        self.trace.record("membership", f"{action} done")

    async def reset_loop(self) -> None:
        rate = self.options.network.reset_per_second
        while rate and self.phase == "faults":
            await trio.sleep(self.rng.expovariate(rate))
            if self.phase == "faults":
                self.faults.resets += 1
                self.network.reset_random_connection()

    def producer_names(self) -> list[str]:
        return [f"c{number}" for number in range(1, self.options.producers + 1)]

    # --- workload -------------------------------------------------------------------------------

    async def producer(self, number: int) -> None:
        rng = random.Random(f"{self.options.seed}:producer:{number}")
        ledger = self.ledger
        interval_s = self.options.enqueue_interval_ms / 1000
        async with connect(
            self.addresses,
            network=self.network.endpoint(f"c{number}"),
            rng=random.Random(rng.random()),
            timeout=CLIENT_TIMEOUT_S,
        ) as client:
            for sequence in range(1_000_000):
                if self.phase != "faults":
                    return
                await trio.sleep(interval_s * rng.uniform(0.5, 1.5))
                if ledger.acked and rng.random() < self.options.cancel_share:
                    keys = sorted(ledger.acked)
                    job_id = ledger.acked[keys[rng.randrange(len(keys))]]
                    try:
                        state = await client.cancel(job_id)
                    except RaftqError as error:
                        state = f"refused ({type(error).__name__})"
                    ledger.cancels += 1
                    self.trace.record("cancel", f"{job_id}: {state}")
                    continue
                unacked = sorted(key for key in ledger.unacked if key.startswith(f"p{number}-"))
                if unacked and rng.random() < 0.3:
                    key = unacked[rng.randrange(len(unacked))]
                    fields = ledger.unacked[key]
                else:
                    key, fields = f"p{number}-{sequence}", draw_job(rng, self.options)
                    fields |= job_group(self.options.seed, key)
                    fields |= job_unique(self.options.seed, key)
                    ledger.fields[key] = fields
                try:
                    job_id = await client.enqueue(JOB_TYPE, key=key, **fields)
                except RaftqError as error:
                    ledger.unacked[key] = fields
                    self.trace.record("enqueue", f"{key} not acknowledged: {type(error).__name__}")
                    continue
                ledger.unacked.pop(key, None)
                ledger.fresh_acks.append(job_id)
                try:
                    self.node_checks.acknowledged(self.nodes, job_id)
                except Violation as violation:
                    self.fail(violation)
                known = ledger.acked.setdefault(key, job_id)
                if known != job_id:
                    self.fail(Violation("idempotency keys dedupe", f"{key}: {known}, {job_id}"))
                self.trace.record("acked", f"{key} -> {job_id}")

    # --- checking -------------------------------------------------------------------------------

    async def check_loop(self) -> None:
        wall_started = time.monotonic()
        while True:
            await trio.sleep(CHECK_INTERVAL_S)
            # Young objects every few checks, everything every few simulated seconds (see
            # ``collections_on_schedule``): on virtual time, so the same in every process.
            if self._checks % FULL_COLLECTION_EVERY_CHECKS == 0:
                collect_garbage(2)
            elif self._checks % YOUNG_COLLECTION_EVERY_CHECKS == 0:
                collect_garbage(0)
            try:
                self.check()
            except Violation as violation:
                self.fail(violation)
                return
            if time.monotonic() - wall_started > self.wall_budget_s:
                self.wall_budget_exceeded()
                return

    def check(self) -> None:
        self._checks += 1
        for simnode in self.nodes:
            node = simnode.node
            if node is None:
                continue
            core = node.raft.core
            if core.role is Role.LEADER:
                self.committed.observe_leader(core.term, simnode.id)
            log = core.log
            # Entries are forgotten only below what every node's disk holds (``forget_below``):
            # a leader's snapshot being installed moves the log's first index in memory, but a
            # crash before the install is durable brings the node back with its older log.
            simnode.first_index = log.storage.first_index()
            low = max(simnode.checked_commit + 1, log.first_index())
            if low <= log.committed:
                for entry in log.entries(low, log.committed + 1):
                    self.committed.observe_committed(simnode.id, entry)
                simnode.checked_commit = log.committed
        self.catch_up()
        self.node_checks.check(self.nodes)
        self.reads.check()
        self.claim_rules.check()
        self.schedule_rules.check(self)
        for job_id in self.ledger.fresh_acks:
            # A node answers an enqueue once it applied it, so the oracle has it by now.
            if job_id not in self.oracle.machine.jobs:
                raise Violation("acknowledged enqueues are committed", f"{job_id} is not")
        self.ledger.fresh_acks.clear()
        now = trio.current_time()
        if self.oracle.applied_index > self._last_progress[0]:
            self._last_progress = (self.oracle.applied_index, now)
        elif self.phase == "faults" and now - self._last_progress[1] > NO_PROGRESS_S:
            raise Violation("progress", f"nothing committed for {NO_PROGRESS_S:.0f} s")
        if self._checks % DIGEST_EVERY_CHECKS == 0:
            self.check_digests()

    def catch_up(self) -> None:
        """The oracle applies what is newly committed; the rules of ``checkers_more`` and
        ``checkers_jobs`` read its state after each entry."""
        oracle, entries = self.oracle, self.committed.entries
        while (entry := entries.get(oracle.applied_index + 1)) is not None:
            self.job_rules.before(entry, oracle)
            self.dependency_rules.before(entry, oracle)
            self.policy_rules.before(entry, oracle)
            oracle.apply(entry)
            self.more_rules.observe(entry, oracle)
            self.job_rules.observe(entry, oracle)
            self.claim_rules.observe(entry, oracle)
            self.limit_rules.observe(entry, oracle)
            self.dependency_rules.observe(entry, oracle)
            self.policy_rules.observe(entry, oracle)
            self.schedule_rules.observe(entry, oracle)

    def check_digests(self) -> None:
        oracle = self.oracle
        lowest = min(simnode.first_index for simnode in self.nodes)
        self.committed.forget_below(min(lowest, oracle.applied_index + 1))
        self._rounds_since_digest += 1
        digesting = self._rounds_since_digest * DIGEST_JOBS_PER_SECOND >= len(oracle.machine.jobs)
        if digesting:
            self._rounds_since_digest = 0
            snapshot = oracle.machine.snapshot()
            self.committed.observe_digest("checker", oracle.applied_index, digest_of(snapshot))
            oracle.fork_twin(snapshot)
        parts = []
        for simnode in self.nodes:
            node = simnode.node
            if node is None:
                parts.append(f"{simnode.id}:down")
                continue
            applier = node.applier
            if digesting:
                self.committed.observe_digest(
                    simnode.id, applier.applied_index, applier.machine.digest()
                )
            core = node.raft.core
            parts.append(
                f"{simnode.id}:{core.role.value[0]}{core.term}"
                f"/c{core.log.committed}/a{applier.applied_index}"
            )
        self.trace.record(
            "status",
            f"{' '.join(parts)} oracle={oracle.applied_index} "
            f"acked={len(self.ledger.acked)} bytes={self.network.bytes_moved} "
            f"hash={self.trace.hash[:12]}",
        )

    # --- liveness -------------------------------------------------------------------------------

    async def liveness(self) -> None:
        self.phase = "liveness"
        self.resume()
        self.network.heal()
        for simnode in self.nodes:
            simnode.disk.faults_on = False
            simnode.snapshot_crash_armed = False
        self.trace.record("liveness", "network healed, disk faults off, every node restarts")
        self.start_stopped_nodes()
        deadline = trio.current_time() + self.liveness_bound_s()
        while trio.current_time() < deadline:
            await trio.sleep(0.1)
            self.start_stopped_nodes()
            await self.membership_step(toward_full=True)
            if self.converged():
                self.trace.record("liveness", "every acknowledged job finished; nodes converged")
                return
        raise_liveness = self.liveness_problem()
        self.fail(Violation("liveness", raise_liveness))

    def start_stopped_nodes(self) -> None:
        """Start every node whose process has exited, again at each step of the liveness
        phase: a crashed process may take seconds to finish exiting, and a node still
        exiting when the phase begins must come back too (nobody else may owe its restart)."""
        for simnode in self.nodes:
            if not simnode.running and not simnode.repairing:
                self.start(simnode)

    def liveness_bound_s(self) -> float:
        """The base, plus twice the longest the unfinished acknowledged jobs could keep every
        worker slot busy (all attempts at full length)."""
        work_ms = 0
        fields = {key: job for key, job in self.ledger.fields.items() if key in self.ledger.acked}
        for key, job in sorted(fields.items()):
            if not self.oracle.final(self.ledger.acked[key]):
                work_ms += int(job["payload"]["run_ms"]) * int(job["max_attempts"])
        if self.user_ledger is not None:  # user jobs: each attempt at most its timeout
            for job in self.user_ledger.jobs:
                work_ms += int(job.get("timeout_ms", 30_000)) * int(job.get("max_attempts", 3))
        slots = len(self.nodes) * self.options.worker_concurrency
        return LIVENESS_BASE_S + 2 * work_ms / 1000 / slots

    def converged(self) -> bool:
        # Asked every 0.1 s of the liveness phase: first the cheap question, newest
        # acknowledgements first (the oldest jobs finish first), which a heavy seed's
        # backlog answers at its first unfinished job instead of scanning every job (3% of
        # such a seed, profiled). The full answer follows once every job is final.
        final = self.oracle.final
        if not all(final(job) for job in reversed(self.ledger.acked.values())):
            return False
        if self.user_ledger is not None and not self.user_ledger.done:
            return False
        return not self.liveness_problem()

    def liveness_problem(self) -> str:
        highest = max((s.node.applier.applied_index for s in self.nodes if s.node), default=0)
        if self.oracle.applied_index < highest:
            return f"the checker lost the committed log at {self.oracle.applied_index + 1}"
        # dict.fromkeys: keys answered by one unique key's holder name the same job
        acked = dict.fromkeys(self.ledger.acked.values())
        unfinished = [job for job in acked if not self.oracle.final(job)]
        if self.user_ledger is not None:
            if not self.user_ledger.done:
                enqueued = len(self.user_ledger.acked)
                return f"{enqueued} of {len(self.user_ledger.jobs)} user jobs enqueued"
            user_ids = self.user_ledger.acked.values()
            unfinished += [job for job in user_ids if not self.oracle.final(job)]
        if unfinished:
            return f"{len(unfinished)} acknowledged jobs not final, e.g. {sorted(unfinished)[:3]}"
        states = set()
        for simnode in self.nodes:
            if simnode.node is None:
                return f"{simnode.id} is not up"
            applier = simnode.node.applier
            states.add((applier.applied_index, simnode.node.raft.core.log.committed))
        everyone = (tuple(s.id for s in self.nodes), ())
        memberships = {
            (s.node.raft.core.membership.voters, s.node.raft.core.membership.learners)
            for s in self.nodes
            if s.node is not None
        }
        if memberships != {everyone}:
            return f"membership not restored: {sorted(memberships)}"
        if len(states) != 1:
            return f"nodes did not converge: (applied, commit) {sorted(states)}"
        digests = {simnode.node.applier.machine.digest() for simnode in self.nodes if simnode.node}
        if len(digests) != 1:
            return "nodes at the same index hold different states"
        return ""


def run_seed(
    seed: int,
    *,
    nodes: int | None = None,
    sim_seconds: float = 20.0,
    wall_budget_s: float = WALL_BUDGET_S,
    keep_trace: bool = False,
    force: tuple[str, ...] = (),
    disable: tuple[str, ...] = (),
    user: UserModule | None = None,
    handler_faults: bool = False,
) -> Report:
    """Run one seed in this process (``trio.run`` inside); ``force``/``disable`` override
    the fault kinds it draws (``Options.draw``). ``user``: the user's module (``--import``),
    whose jobs run too, under handler faults (those of its handlers' runs only); with
    ``handler_faults``, the simulator's own handler's runs are struck too."""
    forced = handler_faults_forced(force)
    options = Options.draw(
        seed,
        nodes,
        sim_seconds,
        force=force,
        disable=disable,
        handler_faults=handler_faults or user is not None or forced,
    )
    if user is not None:
        options = attrs.evolve(
            options,
            producers=USER_RUN_PRODUCERS,
            enqueue_interval_ms=USER_RUN_ENQUEUE_INTERVAL_MS,
        )
    return run_options(
        options,
        wall_budget_s=wall_budget_s,
        keep_trace=keep_trace,
        user=user,
        own_handler_faults=handler_faults or (forced and user is None),
    )


def run_options(
    options: Options,
    *,
    wall_budget_s: float = WALL_BUDGET_S,
    keep_trace: bool = False,
    script: Script | None = None,
    user: UserModule | None = None,
    own_handler_faults: bool = False,
) -> Report:
    simulation = Simulation(
        options,
        wall_budget_s=wall_budget_s,
        keep_trace=keep_trace,
        script=script,
        user=user,
        own_handler_faults=own_handler_faults,
    )
    watchdog = _WallWatchdog(wall_budget_s, simulation.wall_budget_exceeded)
    clock = virtual_clock()
    started = time.monotonic()
    cpu_started = time.process_time()
    sim_seconds = 0.0

    async def main() -> None:
        nonlocal sim_seconds
        poll_io_every(IO_POLL_EVERY_LOOPS, watchdog)
        try:
            await simulation.main()
        finally:
            sim_seconds = trio.current_time()

    crashed = ""
    with deterministic_scheduling(options.seed), collections_on_schedule(), _quiet_logging():
        try:
            trio.run(main, clock=clock)
        except Exception as error:  # the simulator's own bug: still a report, never a hang
            crashed = f"simulator error: {describe(error)}"
    violations = [str(violation) for violation in simulation.violations]
    if crashed:
        violations.append(crashed)
    return Report(
        seed=options.seed,
        options=options,
        verdict="fail" if violations else "pass",
        trace_hash=simulation.trace.hash,
        sim_seconds=sim_seconds,
        wall_seconds=time.monotonic() - started,
        cpu_seconds=time.process_time() - cpu_started,
        faults=_faults(simulation),
        jobs_acked=len(simulation.ledger.acked),
        jobs_succeeded=len(simulation.oracle.succeeded),
        violations=violations,
        trace_tail=list(simulation.trace.last)[-TRACE_TAIL_REPORTED:],
        trace_lines=simulation.trace.all_lines,
    )


def _faults(simulation: Simulation) -> FaultCounts:
    faults = simulation.faults
    faults.resets = simulation.network.resets
    faults.disk_faults = sum(
        simnode.disk.sync_errors + simnode.disk.slow_syncs for simnode in simulation.nodes
    )
    faults.sync_errors = sum(simnode.disk.sync_errors for simnode in simulation.nodes)
    return faults


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """raftq logs to the ``raftq`` logger; in a simulation its lines would only be noise (the
    trace says what happened), and formatting them costs time. Restored afterwards: tests in
    the same process read those logs."""
    raftq_logger = logging.getLogger("raftq")
    level, propagate = raftq_logger.level, raftq_logger.propagate
    raftq_logger.setLevel(logging.CRITICAL)
    raftq_logger.propagate = False
    try:
        yield
    finally:
        raftq_logger.setLevel(level)
        raftq_logger.propagate = propagate
