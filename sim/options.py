"""What one seed chooses: the run's shape, and which faults are on and how hard.

Swarm testing, as TigerBeetle's VOPR does it: a seed does not turn every fault on at a mild
rate; it draws a few fault kinds (``FAULT_KINDS``) and runs those hard. A seed that never
partitions explores crashes more deeply, one that never crashes explores partitions and
membership changes; over many seeds every combination of a few kinds is reached. The kinds a
seed drew are its ``swarm``: the run's JSON and trace name them, and ``--force KIND`` /
``--disable KIND`` override the draw (the intensities stay those the seed drew, so forcing one
kind on changes nothing else about the seed).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import attrs

from raftq.storage.memory_disk import TailFate
from sim.disk import DiskProfile
from sim.network import NetworkProfile

EXTRA_KINDS = (
    "deposed_read",
    "figure_8",
    "held_snapshot",
    "late_release",
    "slow_snapshot",
    "rot_remove",
    "lost_answers",
    "pause",
)
"""Kinds added after the first fifteen: each is drawn on its own (``EXTRA_KIND_SHARE``), from
a generator of its own, so the seeds drawn before they existed keep their swarms."""

EXTRA_KIND_SHARE = 1 / 6
"""Each extra kind runs in this share of the seeds (a kind of the first fifteen runs in about
one seed in six too: ``SWARM_SIZES`` average 2.6 of 15)."""

FAULT_KINDS = (
    "crash",
    "snapshot_crash",
    "corruption",
    "partition",
    "transfer",
    "membership",
    "reset",
    "delay",
    "slow_disk",
    "sync_error",
    "clock_skew",
    # Fault schedules: multi-step cases random faults rarely line up (``sim.schedules``).
    "ack_crash",
    "down_compaction",
    "membership_partition",
    "lease_skew",
    *EXTRA_KINDS,
)
"""Every fault kind a seed may draw. ``corruption`` implies ``crash`` (it strikes a crashed
follower); ``down_compaction`` implies snapshots (``snapshot_entries`` 60)."""

HANDLER_KINDS = ("handler_crash", "lease_expiry", "lost_report", "run_failover", "clock_jump")
"""Faults that strike a handler's run (``sim.handlers``): the node crashes after the handler's
side effects and before its report; the run stalls past its lease just before a side effect
lands (or before its report); the report is lost on the way (the request, or its answer);
the leader fails over as the run starts; the leader's clock jumps as the run starts. Drawn
only when handler faults are on (``--import``, ``--handler-faults`` or ``--force`` of one of
them), each from a generator of its own (``HANDLER_KIND_SHARE``): a run without them draws
and runs exactly as before they existed."""

HANDLER_KIND_SHARE = 1 / 2
"""Each handler fault kind runs in this share of the seeds that have handler faults on: the
point of those runs is the handlers, so their faults are drawn often."""

HANDLER_FAULT_SHARES = (0.2, 0.3, 0.5)
"""Of a user's handler runs, the share a seed strikes with one of its handler faults: a
module's twenty jobs or so need that many for each kind to strike in a few seeds (at 0.05 to
0.2, seeds 1-8 of the tutorial never struck a run with ``run_failover`` or ``clock_jump``).
Runs of the simulator's own handler (``--handler-faults``), ten times as many, are struck a
fifth as often (``sim.handlers.OWN_RUN_SHARE``)."""

ALL_KINDS = (*FAULT_KINDS, *HANDLER_KINDS)

UNIQUE_PRODUCER_SEEDS_MOD = (16, (7, 9, 11, 13, 15))
"""Seeds ``s`` with ``s % 16`` in these, five of the six that run the dependent producer, give
half the producers' jobs a unique-while-active key too (``sim.workload.job_unique``). The
producers send an unacknowledged key again later with the same command, so an enqueue
answered by the key's holder and sent again after the holder finished is reached: the answer
must name the holder again (mutant ``unique_answer_forgets_key``, which no seed found while
only the dependent producer used unique keys: its retries come within one client call).
Only these seeds draw ``lost_answers`` (``UNIQUE_PRODUCER_KINDS``), which makes such retries.
Seeds 6 mod 16 are left out: seed 86 is pinned to ``limit_wake_stale``."""

UNIQUE_PRODUCER_KINDS = frozenset({"lost_answers"})
"""Drawn (one seed in six, as every extra kind) only by seeds with unique producers: the
other seeds, among them those the tests pin (1, 3, 4, 5, 16, 19, 26, 86), run as before."""


def unique_producers(seed: int) -> bool:
    modulus, remainders = UNIQUE_PRODUCER_SEEDS_MOD
    return seed % modulus in remainders


FIVE_NODES_SHARE = 0.5
"""Of the seeds that change membership (``MEMBERSHIP_KINDS``) and are not given ``--nodes``,
this share runs five nodes: a commit rule that counts a learner loses an entry only with three
voters and a learner at least (mutant ``commit_counts_learners``). About one seed in six: five
nodes cost about 1.7 times three."""
MEMBERSHIP_KINDS = frozenset({"membership", "membership_partition"})


def nodes_arguments(nodes: int | None) -> list[str]:
    """``--nodes N`` for a child process, or nothing to let the seed draw it."""
    return [] if nodes is None else ["--nodes", str(nodes)]


SWARM_SIZES = (1, 1, 2, 2, 2, 3, 3, 4, 5)
"""How many kinds a seed draws: mostly few, so each is run hard and alone or in pairs."""


@attrs.frozen(kw_only=True)
class Options:
    seed: int
    nodes: int
    sim_seconds: float
    """Length of the fault phase; the liveness phase follows."""
    swarm: tuple[str, ...] = ()
    """The fault kinds this seed runs (``FAULT_KINDS``), in that order."""
    network: NetworkProfile
    disk: DiskProfile
    crashes_per_minute: float
    leader_crash_share: float
    """Of the crashes, the share aimed at the leader."""
    snapshot_crash_share: float
    """Of the crashes, the share armed to strike during a snapshot write or install."""
    down_max_s: float
    corruption_share: float
    """Of the crashes of a follower, the share that also rots a synced WAL record on it (one
    node at a time: a minority). It must refuse to start; the operator removes it, wipes it
    and adds it back (learner, then voter)."""
    partitions_per_minute: float
    partition_max_s: float
    transfers_per_minute: float
    membership_changes_per_minute: float
    """Remove a voter, add it back as a learner, promote it: one step per change."""
    schedule_pause_s: float = 3.0
    """Virtual time between two runs of the seed's fault schedules."""
    snapshot_entries: int
    clock_skew_max_ms: int
    producers: int
    enqueue_interval_ms: int
    worker_concurrency: int
    job_fail_share: float
    job_timeout_share: float
    job_heartbeat_share: float
    cancel_share: float
    handler_fault_share: float = 0.0
    """Of the handler runs, the share struck by one of the swarm's ``HANDLER_KINDS``."""

    @classmethod
    def draw(
        cls,
        seed: int,
        nodes: int | None,
        sim_seconds: float,
        *,
        force: Iterable[str] = (),
        disable: Iterable[str] = (),
        handler_faults: bool = False,
    ) -> Options:
        """The seed's options. Every intensity is drawn whether its kind is on or not, so
        ``force``/``disable`` change which kinds run and nothing else. ``nodes`` None: the
        seed draws 3 or 5 (``FIVE_NODES_SHARE``); given, nothing else changes (a replay
        with ``--nodes`` runs the same seed). ``handler_faults``: draw ``HANDLER_KINDS`` too
        (from generators of their own, so nothing else about the seed changes)."""
        rng = random.Random(f"options:{seed}")
        extra_rng = random.Random(f"options-extra:{seed}")
        swarm = draw_swarm(
            rng,
            extra_rng,
            force=force,
            disable=disable,
            unavailable=frozenset() if unique_producers(seed) else UNIQUE_PRODUCER_KINDS,
        )
        handler_rng = random.Random(f"options-handler:{seed}")
        handler_share = handler_rng.choice(HANDLER_FAULT_SHARES)
        if handler_faults:
            swarm = _with_handler_kinds(swarm, handler_rng, disable)
        on = set(swarm)
        fast_network = NetworkProfile(delay_min_ms=0.05, delay_max_ms=rng.uniform(0.5, 3.0))
        slow_network = NetworkProfile(
            delay_min_ms=rng.uniform(0.5, 3.0),
            delay_max_ms=rng.uniform(5.0, 25.0),
            spike_probability=rng.choice([0.005, 0.02, 0.05]),
            spike_max_ms=rng.uniform(50, 400),
        )
        reset_per_second = rng.choice([0.5, 1.0, 3.0])
        disk = DiskProfile(
            sync_min_ms=rng.uniform(0.02, 0.5),
            sync_max_ms=rng.uniform(0.5, 8.0),
            slow_probability=rng.choice([0.01, 0.03, 0.1]) if "slow_disk" in on else 0.0,
            slow_max_ms=rng.uniform(100, 1000),
            sync_error_probability=(
                rng.choice([0.0005, 0.002, 0.005]) if "sync_error" in on else 0.0
            ),
            tail_fate=rng.choice([None, None, TailFate.LOST, TailFate.TORN, TailFate.ZEROED]),
        )
        network = attrs.evolve(
            slow_network if "delay" in on else fast_network,
            reset_per_second=reset_per_second if "reset" in on else 0.0,
        )
        crashes = rng.choice([6.0, 12.0, 30.0])
        leader_share = rng.choice([0.0, 0.5, 1.0])
        snapshot_share = rng.choice([0.3, 0.6])
        corruption_share = rng.choice([0.3, 0.6])
        partitions = rng.choice([6.0, 12.0, 20.0])
        transfers = rng.choice([12.0, 30.0])
        memberships = rng.choice([6.0, 15.0])
        skew_ms = rng.choice([300, 1000, 3000])
        snapshot_entries = rng.choice([0, 200, 1000])
        if on & {"down_compaction", "snapshot_crash", "held_snapshot", "slow_snapshot"}:
            # Compaction is these kinds' subject: snapshot often. (Every seed snapshotting
            # every 60 entries spent 7% of a heavy seed encoding snapshots: profiled.)
            snapshot_entries = 60
        crashing = bool(on & {"crash", "snapshot_crash", "corruption"})
        options = cls(
            seed=seed,
            nodes=nodes or 3,
            sim_seconds=sim_seconds,
            swarm=swarm,
            network=network,
            disk=disk,
            crashes_per_minute=crashes if crashing else 0.0,
            leader_crash_share=leader_share,
            snapshot_crash_share=snapshot_share if "snapshot_crash" in on else 0.0,
            down_max_s=rng.choice([0.5, 2.0, 5.0]),
            corruption_share=corruption_share if "corruption" in on else 0.0,
            partitions_per_minute=partitions if "partition" in on else 0.0,
            partition_max_s=rng.choice([1.0, 4.0]),
            transfers_per_minute=transfers if "transfer" in on else 0.0,
            membership_changes_per_minute=memberships if "membership" in on else 0.0,
            schedule_pause_s=rng.choice([1.0, 3.0, 6.0]),
            snapshot_entries=snapshot_entries,
            clock_skew_max_ms=skew_ms if "clock_skew" in on else rng.choice([0, 50]),
            producers=rng.randint(1, 3),
            enqueue_interval_ms=rng.choice([40, 120, 400]),
            worker_concurrency=rng.choice([2, 4, 8]),
            job_fail_share=rng.choice([0.0, 0.1, 0.3]),
            job_timeout_share=rng.choice([0.0, 0.02, 0.1]),
            job_heartbeat_share=rng.choice([0.0, 0.3]),
            cancel_share=rng.choice([0.0, 0.05]),
            handler_fault_share=handler_share if set(HANDLER_KINDS) & on else 0.0,
        )
        five_nodes = rng.random() < FIVE_NODES_SHARE  # drawn last: the draws above stay put
        if nodes is None and five_nodes and on & MEMBERSHIP_KINDS:
            options = attrs.evolve(options, nodes=5)
        return options

    @classmethod
    def quiet(cls, seed: int, nodes: int = 3, **overrides: Any) -> Options:
        """No random faults at all, a steady workload: the base of a scripted scenario."""
        fields: dict[str, Any] = {
            "seed": seed,
            "nodes": nodes,
            "sim_seconds": 0.0,
            "network": NetworkProfile(),
            "disk": DiskProfile(),
            "crashes_per_minute": 0.0,
            "leader_crash_share": 0.0,
            "snapshot_crash_share": 0.0,
            "down_max_s": 1.0,
            "corruption_share": 0.0,
            "partitions_per_minute": 0.0,
            "partition_max_s": 1.0,
            "transfers_per_minute": 0.0,
            "membership_changes_per_minute": 0.0,
            "snapshot_entries": 0,
            "clock_skew_max_ms": 50,
            "producers": 2,
            "enqueue_interval_ms": 40,
            "worker_concurrency": 4,
            "job_fail_share": 0.1,
            "job_timeout_share": 0.02,
            "job_heartbeat_share": 0.2,
            "cancel_share": 0.02,
        }
        fields.update(overrides)
        return cls(**fields)

    def summary(self) -> dict[str, object]:
        return attrs.asdict(self, recurse=True, value_serializer=_plain)


def draw_swarm(
    rng: random.Random,
    extra_rng: random.Random,
    *,
    force: Iterable[str] = (),
    disable: Iterable[str] = (),
    unavailable: frozenset[str] = frozenset(),
) -> tuple[str, ...]:
    """A few fault kinds (``SWARM_SIZES``) and each of ``EXTRA_KINDS`` in some seeds (but
    ``unavailable`` ones: their draws are made all the same), then ``force`` added and
    ``disable`` removed."""
    forced, disabled = set(force), set(disable)
    unknown = sorted((forced | disabled) - set(ALL_KINDS))
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(ALL_KINDS)}")
    drawn = set(rng.sample(FAULT_KINDS[: -len(EXTRA_KINDS)], rng.choice(SWARM_SIZES)))
    drawn |= {kind for kind in EXTRA_KINDS if extra_rng.random() < EXTRA_KIND_SHARE}
    drawn -= unavailable
    if "corruption" in drawn:
        drawn.add("crash")
    chosen = (drawn | forced) - disabled
    return tuple(kind for kind in ALL_KINDS if kind in chosen)


def _with_handler_kinds(
    swarm: tuple[str, ...], handler_rng: random.Random, disable: Iterable[str]
) -> tuple[str, ...]:
    """``swarm`` plus each of ``HANDLER_KINDS`` in ``HANDLER_KIND_SHARE`` of the seeds."""
    drawn = {kind for kind in HANDLER_KINDS if handler_rng.random() < HANDLER_KIND_SHARE}
    chosen = (set(swarm) | drawn) - set(disable)
    return tuple(kind for kind in ALL_KINDS if kind in chosen)


def handler_faults_forced(force: Iterable[str]) -> bool:
    """Whether ``--force`` names a handler fault kind (which turns handler faults on)."""
    return bool(set(force) & set(HANDLER_KINDS))


def _plain(_instance: object, _field: object, value: object) -> object:
    return getattr(value, "value", value)
