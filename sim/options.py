"""What one seed chooses: the run's shape and which faults are on, how often (swarm testing:
a seed that never partitions explores crashes more deeply, and the other way round)."""

from __future__ import annotations

import random
from typing import Any

import attrs

from sim.disk import DiskProfile
from sim.network import NetworkProfile


@attrs.frozen(kw_only=True)
class Options:
    seed: int
    nodes: int
    sim_seconds: float
    """Length of the fault phase; the liveness phase follows."""
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
    snapshot_entries: int
    clock_skew_max_ms: int
    producers: int
    enqueue_interval_ms: int
    worker_concurrency: int
    job_fail_share: float
    job_timeout_share: float
    job_heartbeat_share: float
    cancel_share: float

    @classmethod
    def draw(cls, seed: int, nodes: int, sim_seconds: float) -> Options:
        rng = random.Random(f"options:{seed}")
        return cls(
            seed=seed,
            nodes=nodes,
            sim_seconds=sim_seconds,
            network=NetworkProfile.draw(rng),
            disk=DiskProfile.draw(rng),
            crashes_per_minute=rng.choice([0.0, 3.0, 8.0, 20.0]),
            leader_crash_share=rng.choice([0.0, 0.5, 1.0]),
            snapshot_crash_share=rng.choice([0.0, 0.6]),
            down_max_s=rng.choice([0.5, 2.0, 5.0]),
            corruption_share=rng.choice([0.0, 0.0, 0.3]),
            partitions_per_minute=rng.choice([0.0, 3.0, 10.0]),
            partition_max_s=rng.choice([1.0, 4.0]),
            transfers_per_minute=rng.choice([0.0, 0.0, 4.0]),
            membership_changes_per_minute=rng.choice([0.0, 0.0, 6.0]),
            snapshot_entries=rng.choice([0, 60, 200, 1000]),
            clock_skew_max_ms=rng.choice([0, 50, 1000]),
            producers=rng.randint(1, 3),
            enqueue_interval_ms=rng.choice([40, 120, 400]),
            worker_concurrency=rng.choice([2, 4, 8]),
            job_fail_share=rng.choice([0.0, 0.1, 0.3]),
            job_timeout_share=rng.choice([0.0, 0.02, 0.1]),
            job_heartbeat_share=rng.choice([0.0, 0.3]),
            cancel_share=rng.choice([0.0, 0.05]),
        )

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


def _plain(_instance: object, _field: object, value: object) -> object:
    return getattr(value, "value", value)
