"""One raftq node: one nursery of actors, wired as DESIGN.md draws them.

```
 peers / clients --TCP--> listener + connections --+--> raft peer (owns the core; ticks it;
                                                   |        |   the durable log's only writer)
                          client service <---------+        |  Ready: early messages -> links
                             |   ^ results                  |  persist -> its log writer (WAL)
                             v   |                          |  messages -> peer links
                           raft peer                        v  committed -> applier
                                       applier (owns the job state machine; encodes snapshots
                                                off the loop) --save_snapshot--> raft peer
                                       steward (leader duties: ExtendAll, ExpireLeases)
                                       scheduler (leader duty: schedule firings)
```

Every channel is bounded. ``open_node`` recovers the data directory (snapshot + WAL), starts
every actor with ``nursery.start`` (each signals when ready), and yields a ``Node``. One owner
per piece of state: the Raft peer alone writes the log (its ``LogWriter`` is a helper it calls,
not an actor), the applier alone changes the job state machine; the client service, the
steward and metrics read the views they publish (``RaftPeer.role``, ``status()``,
``Applier.jobs``) and wait on ``RaftPeer.role_changed()``.
"""

from __future__ import annotations

import functools
import gc
import logging
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
from prometheus_client.core import GaugeMetricFamily, Metric

from raftq import limits
from raftq.app import App, load_app
from raftq.client.client import connect
from raftq.client.worker import Worker
from raftq.ids import NodeId
from raftq.jobs.machine import JobStateMachine
from raftq.jobs.snapshot import collector_paused
from raftq.metrics.http import handle_scrape
from raftq.metrics.node_metrics import NodeMetrics, counter, gauge, labelled_counter
from raftq.node.applier import Applier, ApplyBatch, Offload, run_in_thread
from raftq.node.client_service import ClientService
from raftq.node.clock import Clock, WallClock
from raftq.node.config import NodeConfig
from raftq.node.forwarder import Forwarder
from raftq.node.log_writer import LogWriter
from raftq.node.peers import Peers
from raftq.node.raft_peer import RaftPeer
from raftq.node.scheduler import Scheduler
from raftq.node.steward import Steward
from raftq.node.waiters import ProposalWaiters
from raftq.raft.core import RaftConfig, RaftCore
from raftq.raft.ready import Role
from raftq.raft.types import Membership
from raftq.storage.disk import Disk, RealDisk
from raftq.storage.durable_log import DurableLog
from raftq.transport import connections
from raftq.transport.auth import load_secret
from raftq.transport.connections import HandshakeGuard, Identity, TransportStatistics
from raftq.transport.network import FramedConnection, Network, TcpNetwork

logger = logging.getLogger("raftq.node")


@attrs.define(eq=False)
class Node:
    """A running node: its actors, for status, metrics and tests."""

    config: NodeConfig
    port: int
    raft: RaftPeer
    applier: Applier
    client_service: ClientService
    steward: Steward
    peers: Peers
    transport: TransportStatistics
    metrics: NodeMetrics
    metrics_port: int
    recovery_seconds: float
    cancel_scope: trio.CancelScope
    worker: Worker | None = None
    workers_done: trio.Event = attrs.field(factory=trio.Event)
    network: Network = attrs.field(factory=TcpNetwork)
    """How this node reaches the others (TLS when configured): its workers use it too."""
    secret: bytes | None = attrs.field(default=None, repr=False)

    @property
    def log_writer(self) -> LogWriter:
        """The Raft peer's log writer, for its statistics (only the peer writes through it)."""
        return self.raft.log_writer

    def stop(self) -> None:
        """Stop every actor (an abrupt stop: what was acknowledged is already durable)."""
        self.cancel_scope.cancel()

    async def stop_workers(self) -> None:
        """Stop claiming; wait for running jobs (up to the worker's grace period)."""
        if self.worker is not None:
            self.worker.stop()
            await self.workers_done.wait()


@asynccontextmanager
async def open_node(
    config: NodeConfig,
    *,
    network: Network | None = None,
    disk: Disk | None = None,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    app: App | None = None,
    offload: Offload[object] | None = None,
    freeze_recovered: bool = False,
) -> AsyncIterator[Node]:
    """Recover the data directory and run the node until the block exits. With
    ``config.workers``, in-process workers run ``app``'s handlers (plus those of
    ``config.imports``, plus the built-in ones). ``offload`` runs snapshot encoding and
    restoring off the event loop (``Offload``; a worker thread by default).

    ``freeze_recovered``: ``gc.freeze()`` the process right after the snapshot is restored
    (node processes do; an application that embeds a node decides for its own process). The
    restored state is millions of objects in the collector's youngest generation: without it,
    the first collections after start-up scan all of them (1.3 s of CPU at a million jobs),
    for nothing, since the state holds no reference cycles; frozen objects are still freed by
    reference counting. The collector is paused during the restore itself either way
    (``raftq.jobs.snapshot.collector_paused``)."""
    secret = load_secret(config.secret_file) if config.secret_file else None
    metrics_network = network or TcpNetwork()  # plain HTTP: Prometheus scrapes it
    network = network or TcpNetwork(config.tls)
    disk = disk or RealDisk(config.data_dir)
    clock = clock or WallClock()
    rng = rng or random.Random()
    recovery_started = trio.current_time()
    log = await DurableLog.open(disk, segment_bytes=config.wal_segment_bytes, fsync=config.fsync)
    try:
        snapshot = log.snapshot_meta
        if snapshot.index > 0:
            data = await log.snapshot_data()
            with collector_paused():  # also around what the restore does beyond its rows
                machine = JobStateMachine.restore(data)
                del data  # the snapshot's bytes (hundreds of MB): not for the node's lifetime
                if freeze_recovered:
                    gc.freeze()
        else:
            machine = JobStateMachine()
        initial_membership = Membership(voters=tuple(sorted(config.members)))
        core = RaftCore(
            RaftConfig(
                node_id=config.node_id,
                election_ticks=config.election_ticks,
                heartbeat_ticks=config.heartbeat_ticks,
                commit_notices=False,  # followers learn commits from the next message
            ),
            log,
            rng,
            initial_membership=initial_membership,
        )
        recovery_seconds = trio.current_time() - recovery_started
        logger.info(
            "node recovered node=%s seconds=%.3f snapshot=%d last_index=%d",
            config.node_id,
            recovery_seconds,
            snapshot.index,
            log.last_index(),
        )
        async with trio.open_nursery() as nursery:
            node = await _start(
                nursery,
                config,
                network,
                clock,
                rng,
                log,
                core,
                machine,
                snapshot.membership if snapshot.index > 0 else initial_membership,
                recovery_seconds,
                secret=secret,
                metrics_network=metrics_network,
                offload=offload or run_in_thread,
            )
            if config.workers:
                handlers = load_app(config.imports, base=app)
                await nursery.start(_run_workers, node, handlers)
            else:
                node.workers_done.set()
            try:
                yield node
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await log.close()


async def _start(
    nursery: trio.Nursery,
    config: NodeConfig,
    network: Network,
    clock: Clock,
    rng: random.Random,
    log: DurableLog,
    core: RaftCore,
    machine: JobStateMachine,
    membership: Membership,
    recovery_seconds: float,
    *,
    secret: bytes | None,
    metrics_network: Network,
    offload: Offload[object],
) -> Node:
    identity = Identity(
        cluster_id=config.cluster_id,
        node_id=config.node_id,
        peers=set(config.members),
        secret=secret,
    )
    peers = Peers(network, identity, config.members, random.Random(rng.random()))
    metrics = NodeMetrics()
    waiters = ProposalWaiters()
    apply_send, apply_receive = trio.open_memory_channel[ApplyBatch](limits.APPLY_QUEUE_BATCHES_MAX)
    raft = RaftPeer(
        core,
        log,
        clock,
        tick_ms=config.tick_ms,
        send=peers.send,
        apply=apply_send,
        waiters=waiters,
        on_membership=peers.update,
        observe_persist_seconds=metrics.wal_fsync_seconds.observe,
    )
    applier = Applier(
        machine,
        applied_index=log.snapshot_meta.index,
        membership=membership,
        waiters=waiters,
        save_snapshot=raft.save_snapshot,
        snapshot_entries=config.snapshot_entries,
        snapshot_bytes=config.snapshot_bytes,
        batches=apply_receive,
        offload=offload,
        observer=metrics,
        observe_snapshot_seconds=metrics.snapshot_seconds.observe,
    )
    steward = Steward(raft, config, clock)
    client_service = ClientService(
        raft,
        applier,
        peers=peers,
        node_address=config.address,
        fsync=config.fsync,
        election_timeout_s=config.election_ticks * config.tick_ms / 1000,
        forwarder=Forwarder(network, peers.address_of, config.cluster_id, nursery, secret),
    )
    transport = TransportStatistics()

    async def on_peer(peer: NodeId, connection: FramedConnection) -> None:
        peers.wake(peer)  # it is up: our link to it need not wait out its backoff
        await connections.receive_peer_messages(
            peer,
            connection,
            raft.deliver,
            idle_timeout_ms=max(60_000, 20 * config.election_ticks * config.tick_ms),
        )

    handler = functools.partial(
        connections.accept,
        identity=identity,
        statistics=transport,
        guard=HandshakeGuard(),
        on_peer=on_peer,
        on_client=client_service.serve,
    )
    port: int = await nursery.start(network.serve, config.listen_address, handler)
    await nursery.start(peers.run, core.membership)
    await nursery.start(applier.run)
    await nursery.start(raft.run)
    await nursery.start(steward.run)
    await nursery.start(Scheduler(raft, applier, clock, config.schedules).run)  # leader only
    metrics.add_collector(functools.partial(_scrape, raft, applier, transport, recovery_seconds))
    metrics_port = 0
    if config.metrics_addr:
        scrape = functools.partial(handle_scrape, registry=metrics.registry)
        metrics_port = await nursery.start(metrics_network.serve, config.metrics_addr, scrape)
    logger.info(
        "node serving node=%s port=%d members=%s",
        config.node_id,
        port,
        ",".join(core.membership.members),
    )
    _log_security(config, secret)
    return Node(
        config=config,
        port=port,
        raft=raft,
        applier=applier,
        client_service=client_service,
        steward=steward,
        peers=peers,
        transport=transport,
        metrics=metrics,
        metrics_port=metrics_port,
        recovery_seconds=recovery_seconds,
        cancel_scope=nursery.cancel_scope,
        network=network,
        secret=secret,
    )


def _log_security(config: NodeConfig, secret: bytes | None) -> None:
    """Say at start what protects this node, loudly when nothing does."""
    tls = "on" if config.tls is not None else "off"
    if secret is not None:
        logger.info("security: cluster secret required; tls=%s", tls)
    elif config.loopback_only:
        logger.warning(
            "security: no cluster secret; listening on loopback only (%s): anyone on this "
            "host can use the node. Give it --secret-file to serve other hosts; tls=%s",
            config.listen_address,
            tls,
        )
    else:
        logger.warning(
            "security: INSECURE: no cluster secret and listening on %s: anyone who can reach "
            "the port can read, enqueue and cancel jobs; tls=%s",
            config.listen_address,
            tls,
        )


def _scrape(
    raft: RaftPeer,
    applier: Applier,
    transport: TransportStatistics,
    recovery_seconds: float,
) -> Iterator[Metric]:
    status = raft.status()
    jobs = GaugeMetricFamily("raftq_jobs", "Jobs by queue and state", labels=["queue", "state"])
    for queue, counts in applier.jobs.queue_counts().items():
        for state, count in counts.items():
            jobs.add_metric([queue, state], count)
    yield jobs
    yield from _limit_metrics(applier.jobs.limit_rows())
    last_fired = GaugeMetricFamily(
        "raftq_schedule_last_fired_timestamp_seconds",
        "Time of the last slot each schedule fired (0: none yet)",
        labels=["schedule"],
    )
    for name, record in applier.jobs.schedules.by_name.items():
        last_fired.add_metric([name], record.last_fired_ms / 1000)
    yield last_fired
    yield gauge("raftq_raft_term", "Current Raft term", status.term)
    yield gauge("raftq_raft_is_leader", "1 if this node leads", int(status.role is Role.LEADER))
    yield gauge("raftq_raft_commit_index", "Highest committed log index", status.commit)
    yield gauge("raftq_raft_applied_index", "Highest applied log index", applier.applied_index)
    yield counter(
        "raftq_raft_leader_changes", "Role or leader changes seen", raft.statistics.leader_changes
    )
    now = trio.current_time()
    yield gauge(
        "raftq_raft_tick_late_seconds_max",
        "Longest a Raft tick came after it was due (an event-loop stall), last 10-20 s",
        raft.statistics.tick_late.value(now),
    )
    yield gauge(
        "raftq_raft_leader_silence_seconds_max",
        "On a follower, longest time between two messages from its leader, last 10-20 s",
        raft.statistics.leader_silence.value(now),
    )
    yield counter("raftq_wal_bytes", "Bytes written to the WAL", raft.wal_bytes_written)
    yield gauge("raftq_recovery_seconds", "Time to recover the data directory", recovery_seconds)
    yield gauge(
        "raftq_storage_writable",
        "0 while the disk refuses writes (full, failed fsync) and writes are not acknowledged",
        int(raft.storage_problem is None),
    )
    yield counter(
        "raftq_storage_errors",
        "Failed attempts to persist (full disk, failed write or fsync)",
        raft.log_statistics.storage_errors,
    )
    yield labelled_counter(
        "raftq_connections_refused",
        "Connections refused in the handshake (TLS, authentication, protocol), by reason",
        "reason",
        transport.refused,
    )


LIMIT_GAUGES = (
    ("running", "Jobs handed out and not finished under each limit (prefetched ones count)"),
    ("pending", "Jobs held back by each limit: waiting for a slot, a window or their time"),
    ("started_in_window", "Hand-outs the current window of each rate limit holds"),
    ("concurrency", "Each limit's most jobs running at once (0: no concurrency limit)"),
    ("rate", "Each limit's most jobs started per window (0: no rate limit)"),
)


def _limit_metrics(rows: list[dict[str, Any]]) -> Iterator[Metric]:
    """``raftq_limit_*{scope,name}``: what runs and waits under each limit (``raftq limit
    list``), so that a limit holding work back shows on a dashboard."""
    for field, documentation in LIMIT_GAUGES:
        family = GaugeMetricFamily(f"raftq_limit_{field}", documentation, labels=["scope", "name"])
        for row in rows:
            family.add_metric([row["scope"], row["name"]], row[field])
        yield family


async def _run_workers(
    node: Node, app: App, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """In-process workers: a Worker whose client talks to the cluster like any other, so it
    follows the leader wherever it is and obeys the same lease and fence rules."""
    config = node.config
    try:
        async with connect(
            [config.members[peer] for peer in sorted(config.members)],
            cluster_id=config.cluster_id,
            timeout=limits.CLIENT_REQUEST_TIMEOUT_MS / 1000,
            network=node.network,
            secret=node.secret,
        ) as client:
            node.worker = Worker(
                client,
                app,
                concurrency=config.workers,
                claimer_id=f"{config.node_id}/workers",
                grace_s=config.workers_grace_ms / 1000,
            )
            await node.worker.run(task_status=task_status)
    finally:
        node.workers_done.set()
