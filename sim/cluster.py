"""The simulated processes: each node runs the real ``open_node`` assembly, plus an in-process
worker, inside its own cancel scope. A crash cuts the disk back to what was durable, resets the
node's connections and cancels the scope; a restart recovers from the ``SimDisk`` left behind."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

import trio

from raftq import limits
from raftq.app import App
from raftq.client.client import connect
from raftq.client.worker import Worker, WorkerClient
from raftq.errors import CorruptionError, StorageError
from raftq.ids import NodeId
from raftq.node.applier import run_inline
from raftq.node.config import NodeConfig
from raftq.node.node import Node, open_node
from raftq.raft.types import Entry
from sim.disk import SimDisk
from sim.network import SimNetwork
from sim.options import Options
from sim.trace import Trace

EPOCH_MS = 1_767_225_600_000
"""The wall time the simulated world starts at (2026-01-01)."""

CLIENT_TIMEOUT_S = 3.0
"""Clients (workers and producers) give up a request after this; they then retry or report."""

WORKER_GRACE_S = 1.0


class SkewedClock:
    """A node's wall clock: virtual time, off by a skew (clocks never agree). The skew is
    fixed, except that the ``lease_skew`` schedule makes it jump (``sim.schedules``)."""

    def __init__(self, skew_ms: int) -> None:
        self.skew_ms = skew_ms

    def now_ms(self) -> int:
        return EPOCH_MS + int(trio.current_time() * 1000) + self.skew_ms


WAL_SEGMENT_BYTES_PER_SNAPSHOT_ENTRY = 192
"""A simulated node's WAL segment holds about one and a half snapshot intervals (entries are
~120 bytes; production's segments are 64 MiB, which a short run never fills). Compaction keeps
the segment that holds the older kept snapshot, and that segment may have rolled while it
still holds entries past the newest snapshot: segments longer than a snapshot interval are
what makes that case, and so a compaction bug there, come up within a run."""
WAL_SEGMENT_BYTES_NO_SNAPSHOTS = 16 * 1024
"""Without snapshots nothing is compacted; small segments still roll several times a run."""


def wal_segment_bytes(snapshot_entries: int) -> int:
    if snapshot_entries == 0:
        return WAL_SEGMENT_BYTES_NO_SNAPSHOTS
    return max(
        limits.WAL_SEGMENT_BYTES_MIN, snapshot_entries * WAL_SEGMENT_BYTES_PER_SNAPSHOT_ENTRY
    )


class SimNode:
    """One node's machine: its disk and clock persist; its process comes and goes."""

    def __init__(
        self, node_id: NodeId, members: dict[NodeId, str], options: Options, rng: random.Random
    ) -> None:
        self.id = node_id
        self.config = NodeConfig(
            node_id=node_id,
            members=members,
            data_dir=f"sim/{node_id}",
            snapshot_entries=options.snapshot_entries,
            wal_segment_bytes=wal_segment_bytes(options.snapshot_entries),
        )
        self.disk = SimDisk(random.Random(rng.random()), options.disk)
        self.clock = SkewedClock(rng.randint(-options.clock_skew_max_ms, options.clock_skew_max_ms))
        self.seed = rng.getrandbits(64)
        self.node: Node | None = None
        self.worker: Worker | None = None
        """Its process's in-process worker, while it runs (``late_release`` stops it)."""
        self.scope: trio.CancelScope | None = None
        self.task: trio.lowlevel.Task | None = None
        """Its process's root task while it runs: every task of the process descends from it
        (``pause`` holds them all)."""
        self.stopped = trio.Event()
        self.stopped.set()
        self.starts = 0
        self.crashing = False
        self.checked_commit = 0
        self.first_index = 1
        """The first index its log held when last seen (its snapshot + 1)."""
        self.sync_errors_at_start = 0
        self.snapshot_crash_armed = False
        self.rotten = False
        """Its disk holds a corrupted synced record: it must refuse to start."""
        self.rotten_at = 0.0
        """When it rotted (virtual time)."""
        self.repairing = False
        """The operator is removing, wiping and restarting it (``Simulation.repair``)."""
        self.disk_rng = random.Random(rng.random())

    @property
    def running(self) -> bool:
        return not self.stopped.is_set()


ProcessDied = Callable[[SimNode, BaseException], None]
EntryObserver = Callable[[str, Entry], None]


async def run_process(
    simnode: SimNode,
    network: SimNetwork,
    app: App,
    options: Options,
    trace: Trace,
    died: ProcessDied,
    applied: EntryObserver,
    watch: Callable[[WorkerClient], WorkerClient] = lambda client: client,
) -> None:
    """One life of the node's process, until it crashes or stops itself. The caller marks
    the node running (``simnode.stopped = trio.Event()``) before starting this task."""
    assert simnode.running, simnode.id
    simnode.starts += 1
    simnode.crashing = False
    simnode.checked_commit = 0
    simnode.sync_errors_at_start = simnode.disk.sync_errors
    rng = random.Random(f"{simnode.seed}:{simnode.starts}")
    simnode.task = trio.lowlevel.current_task()
    endpoint = network.endpoint(simnode.id)
    addresses = [simnode.config.members[peer] for peer in sorted(simnode.config.members)]
    try:
        with trio.CancelScope() as scope:
            simnode.scope = scope
            async with open_node(
                simnode.config,
                network=endpoint,
                disk=simnode.disk,
                clock=simnode.clock,
                rng=random.Random(rng.getrandbits(64)),
                offload=run_inline,  # a thread's timing would make a seed's run differ
            ) as node:
                simnode.node = node
                node.applier.entry_observer = functools.partial(applied, simnode.id)
                log = node.raft.core.log
                trace.record(
                    "process",
                    f"{simnode.id} up (start {simnode.starts}) snapshot={log.first_index() - 1} "
                    f"last={log.last_index()} commit={log.committed}",
                )
                async with connect(
                    addresses,
                    network=endpoint,
                    rng=random.Random(rng.getrandbits(64)),
                    timeout=CLIENT_TIMEOUT_S,
                ) as client:
                    worker = Worker(
                        watch(client),
                        app,
                        concurrency=options.worker_concurrency,
                        claimer_id=f"{simnode.id}-w{simnode.starts}",
                        grace_s=WORKER_GRACE_S,
                        rng=random.Random(rng.getrandbits(64)),
                    )
                    simnode.worker = worker
                    await worker.run()
    except BaseException as error:  # an ExceptionGroup from the node's nursery, mostly
        failures = [leaf for leaf in _leaves(error) if not isinstance(leaf, trio.Cancelled)]
        if not failures:
            raise  # the whole simulation is ending
        # The process is gone (with a cancellation mixed in, if the node died while a crash
        # or the run's end was cancelling it): report it unless the simulator crashed it.
        if not simnode.crashing:
            died(simnode, error)
    finally:
        simnode.node = None
        simnode.worker = None
        simnode.scope = None
        simnode.task = None
        simnode.stopped.set()


def caused_by_sync_error(simnode: SimNode, error: BaseException) -> bool:
    """Whether the process stopped because an injected fdatasync failed (what it must do)."""
    if simnode.disk.sync_errors == simnode.sync_errors_at_start:
        return False
    return any(isinstance(leaf, StorageError | OSError) for leaf in _leaves(error))


def refused_corruption(error: BaseException) -> bool:
    """Whether the process refused its data directory, naming the file and the offset."""
    return any(
        isinstance(leaf, CorruptionError) and leaf.path and "at byte" in str(leaf)
        for leaf in _leaves(error)
    )


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def describe(error: BaseException) -> str:
    return "; ".join(f"{type(leaf).__name__}: {leaf}" for leaf in _leaves(error))
