"""``python -m raftq.node``: run one node until SIGTERM or SIGINT.

Exit codes (CONTRACT.md): 0 clean stop, 2 bad arguments or config, 3 data directory unusable
or corrupt (the message names the file and byte offset).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence

import trio

from raftq.errors import ConfigError, DataDirError
from raftq.ids import parse_node_id
from raftq.interrupts import honour_sigint, interrupted
from raftq.lifeline import lifeline_fd, wait_for_parent_exit
from raftq.node.config import (
    NodeConfig,
    NodeSettings,
    load_settings,
    parse_members,
    schedule_specs,
)
from raftq.node.node import Node, open_node
from raftq.raft.ready import Role
from raftq.transport.tls import tls_config_from

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_DATA_DIR = 3

logger = logging.getLogger("raftq.node")


def build_parser(prog: str = "python -m raftq.node") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run one raftq node: a member of a Raft-replicated job queue.",
    )
    parser.add_argument("--id", help="this node's id, as listed in --cluster")
    parser.add_argument(
        "--cluster",
        help="every initial member as ID=HOST:PORT,ID=HOST:PORT,... (this node included)",
    )
    parser.add_argument("--data-dir", help="where this node keeps its log and snapshots")
    parser.add_argument("--cluster-id", default=None, help="a name all members share (raftq)")
    parser.add_argument("--workers", type=int, default=None, help="in-process workers (0)")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        help="import MODULE to register job handlers (repeatable)",
    )
    parser.add_argument("--metrics-addr", default=None, help="serve Prometheus metrics here")
    parser.add_argument(
        "--http-addr",
        default=None,
        help="serve the dashboard, the JSON API (/api/v1) and /metrics here (docs/web.md)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a TOML file with any of these settings and more (docs/operations.md); "
        "flags given here override it",
    )
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning"])
    parser.add_argument(
        "--snapshot-entries",
        type=int,
        default=None,
        help="snapshot the job state every N applied entries (10000)",
    )
    parser.add_argument(
        "--snapshot-bytes",
        type=int,
        default=None,
        help="... or every N bytes of applied entries, whichever first (64 MiB)",
    )
    parser.add_argument(
        "--fsync",
        default=None,
        choices=["always", "off"],
        help="off is UNSAFE: acknowledged jobs can be lost (for measuring only)",
    )
    parser.add_argument("--tick-ms", type=int, default=None, help="Raft tick (30 ms)")
    parser.add_argument(
        "--lifeline-fd",
        type=int,
        default=None,
        metavar="FD",
        help="stop at once when this inherited pipe reaches end-of-file: the program "
        "that started the node has exited ($RAFTQ_LIFELINE_FD; raftq.lifeline)",
    )
    add_security_arguments(parser)
    return parser


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    security = parser.add_argument_group("security (docs/security.md)")
    security.add_argument(
        "--secret-file",
        default=None,
        help="the cluster secret that peers and clients must prove ($RAFTQ_SECRET_FILE)",
    )
    security.add_argument(
        "--insecure",
        action="store_const",
        const=True,
        default=None,
        help="listen beyond loopback without a secret: anyone who can connect may use the node",
    )
    security.add_argument("--tls-cert", default=None, help="this node's certificate (PEM)")
    security.add_argument("--tls-key", default=None, help="its private key (PEM)")
    security.add_argument("--tls-ca", default=None, help="the CA that signs every node (PEM)")


NOT_SETTINGS = frozenset({"config", "lifeline_fd"})
"""Flags that are no key of the config file: the file itself, and process plumbing."""


def config_from(arguments: argparse.Namespace) -> tuple[NodeConfig, NodeSettings]:
    """The node's config from the --config file with the flags given over it (a flag wins);
    and the settings it came from. ``ConfigError`` names the first wrong key or flag."""
    flags = {
        name: value
        for name, value in vars(arguments).items()
        if value is not None and value != [] and name not in NOT_SETTINGS
    }
    if "imports" in flags:
        flags["imports"] = tuple(flags["imports"])
    settings = load_settings(arguments.config or "", flags)
    for required in ("id", "cluster", "data_dir"):
        if not getattr(settings, required):
            raise ConfigError(
                f"--{required.replace('_', '-')} (or {required} in --config) is required"
            )
    config = NodeConfig(
        node_id=parse_node_id(settings.id),
        members=parse_members(settings.cluster),
        data_dir=settings.data_dir,
        cluster_id=settings.cluster_id,
        listen=settings.listen,
        tick_ms=settings.raft.tick_ms,
        election_ticks=settings.raft.election_ticks,
        heartbeat_ticks=settings.raft.heartbeat_ticks,
        fsync=settings.storage.fsync != "off",
        snapshot_entries=settings.storage.snapshot_entries,
        snapshot_bytes=settings.storage.snapshot_bytes,
        lease_extension_ms=settings.jobs.lease_extension_ms,
        expire_interval_ms=settings.jobs.expire_interval_ms,
        retention_ms=settings.jobs.retention_ms,
        workers_grace_ms=settings.jobs.stop_grace_ms,
        workers=settings.workers,
        metrics_addr=settings.metrics_addr,
        http_addr=settings.http_addr,
        imports=settings.imports,
        secret_file=settings.secret_file or os.environ.get("RAFTQ_SECRET_FILE", ""),
        insecure=settings.insecure,
        tls=tls_config_from(settings.tls_cert, settings.tls_key, settings.tls_ca),
        schedules=schedule_specs(settings.schedules),
    )
    return config, settings


async def serve(config: NodeConfig, lifeline: int | None = None) -> None:
    """Run the node until SIGTERM, SIGINT, a client's drain, or end-of-file on the
    ``lifeline`` pipe (the program that started the node has exited); then stop: cleanly
    (running jobs finish, leadership is handed over), or at once for the lifeline."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_node(config, freeze_recovered=True) as node, trio.open_nursery() as nursery:
            if not config.fsync:
                logger.warning("fsync is OFF: acknowledged writes can be lost on a crash")
            await nursery.start(freeze_survivors)
            if config.http_addr:
                await nursery.start(serve_web, config, node)
            node.client_service.drainable = True
            reason = await _stop_requested(signals, node.client_service.drain_requested, lifeline)
            logger.info("stopping reason=%s", reason)
            if reason != PARENT_EXITED:
                await node.stop_workers()  # stop claiming; running jobs finish or time out
                await hand_over(node)
            nursery.cancel_scope.cancel()  # the collector (this body is in its scope too)


PARENT_EXITED = "lifeline closed: the program that started this node has exited"
"""Then the node stops at once, without the grace period or the hand-over: the cluster it was
started in is going away with that program, its peers are stopping too, and a job's report
could wait out the whole grace period for a quorum that is gone. What was acknowledged is on
disk; running jobs are cancelled and their leases expire (they run again if the cluster
ever does)."""


async def serve_web(
    config: NodeConfig, node: Node, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """The dashboard, the JSON API and ``/metrics`` on ``--http-addr``: the web app is a client
    of the cluster (this node first), so its actions go through the replicated log."""
    from raftq.transport.auth import load_secret
    from raftq.web.app import asgi_app
    from raftq.web.serve import serve_http

    addresses = [config.address, *(a for n, a in config.members.items() if n != config.node_id)]
    app = asgi_app(
        addresses,
        secret=load_secret(config.secret_file) if config.secret_file else None,
        cluster_id=config.cluster_id,
        tls=config.tls,
        metrics_registry=node.metrics.registry,
    )
    tls = config.tls
    await serve_http(
        app,
        config.http_addr,
        certfile=tls.cert_file if tls else "",
        keyfile=tls.key_file if tls else "",
        task_status=task_status,
    )


GC_FREEZE_INTERVAL_S = 10.0

GC_FULL_COLLECTION_YOUNG_PASSES = 1_000
"""While ``freeze_survivors`` runs, Python's own full collections wait for this many passes
of its middle generation instead of 10 (its third threshold): a backstop only, minutes apart
under load, for the timed full collection every ``GC_FREEZE_INTERVAL_S`` does that work. By
Python's own rule a full pass came every time the objects surviving the young passes grew by
a quarter of those the last full pass kept: each object that survives (a job's record) was
scanned about five times before the next freeze. Measured with the node processes' collector
timed (``gc.callbacks``) through ``bench_node.py --workers 64 --jobs 60000``: full passes
0.44-0.59 s of the 3.8-6.0 s of CPU each node spent, against 0.02-0.15 s this way; the three
nodes' CPU per job 0.195-0.222 ms against 0.160-0.168 ms (docs/performance.md)."""


async def freeze_survivors(
    interval_s: float = GC_FREEZE_INTERVAL_S,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep Python's full garbage collections short and few. A full collection scans every
    tracked object: with a million jobs it stalls the process for most of a second, past the
    election timeout, so a busy leader would be deposed by its own garbage collector. Instead,
    every ``interval_s``, collect and then ``gc.freeze()`` what survived: each collection then
    scans only what was allocated since the last one; and meanwhile Python's own full
    collections are held back (``GC_FULL_COLLECTION_YOUNG_PASSES``), the young generations
    collected as usual. Frozen objects are still freed by reference counting (the job state
    holds no reference cycles: tests/test_jobs_commands.py); what this gives up is reclaiming
    a cycle among objects that lived past one interval and died after (a closed long-lived
    connection's tasks: a few kB each), and a cycle that outlived the young generations waits
    for the next interval. Only node processes do this: an application that embeds a node
    decides for its own process."""
    young, middle, full = gc.get_threshold()
    gc.collect()
    gc.freeze()  # the recovered state
    gc.set_threshold(young, middle, max(full, GC_FULL_COLLECTION_YOUNG_PASSES))
    try:
        task_status.started()
        while True:
            await trio.sleep(interval_s)
            started = trio.current_time()
            gc.collect()
            gc.freeze()
            logger.debug(
                "gc collected and froze survivors seconds=%.4f frozen=%d",
                trio.current_time() - started,
                gc.get_freeze_count(),
            )
    finally:
        gc.set_threshold(young, middle, full)


async def _stop_requested(
    signals: AsyncIterator[int], drain: trio.Event, lifeline: int | None
) -> str:
    """Wait for SIGTERM/SIGINT, a client's ``raftq drain`` or the lifeline's end; say which.
    A signal that came while the node was starting is waiting in ``signals``, and the
    lifeline's end-of-file stays: neither is missed for coming early."""
    reason = ""
    async with trio.open_nursery() as nursery:

        async def on_parent_exit(fd: int) -> None:
            nonlocal reason
            await wait_for_parent_exit(fd)
            reason = PARENT_EXITED
            nursery.cancel_scope.cancel()

        if lifeline is not None:
            nursery.start_soon(on_parent_exit, lifeline)

        async def on_signal() -> None:
            nonlocal reason
            async for received in signals:
                reason = f"signal {signal.Signals(received).name}"
                nursery.cancel_scope.cancel()

        async def on_drain() -> None:
            nonlocal reason
            await drain.wait()
            reason = "drain"
            nursery.cancel_scope.cancel()

        nursery.start_soon(on_signal)
        nursery.start_soon(on_drain)
    return reason


async def hand_over(node: Node, seconds: float = 2.0) -> None:
    """A leader that stops hands leadership to its most caught-up follower first, so the
    cluster does not wait an election timeout to notice it is gone."""
    raft = node.raft.status()
    if raft.role is not Role.LEADER:
        return
    candidates = sorted(
        (status.match, peer)
        for peer, status in raft.peers.items()
        if peer != raft.node_id and peer in raft.membership.voters
    )
    if not candidates:
        return
    target = candidates[-1][1]
    node.raft.transfer_leadership(target)
    with trio.move_on_after(seconds):
        for _ in range(int(seconds / 0.01)):
            if not _leading(node):
                break
            await trio.sleep(0.01)
    logger.info("leadership handed over target=%s done=%s", target, not _leading(node))


def _leading(node: Node) -> bool:
    return node.raft.role is Role.LEADER


def main(argv: Sequence[str] | None = None, prog: str = "python -m raftq.node") -> int:
    honour_sigint()
    parser = build_parser(prog)
    arguments = parser.parse_args(argv)
    try:
        config, settings = config_from(arguments)
        lifeline = lifeline_fd(arguments.lifeline_fd)
    except ConfigError as error:  # one line that names the key or flag; no usage after it
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper()),
        format="%(asctime)s level=%(levelname)s node=" + config.node_id + " %(message)s",
    )
    try:
        trio.run(serve, config, lifeline)
    except BaseExceptionGroup as group:
        if not interrupted(group):
            raise
        return _stopped_by_sigint()
    except KeyboardInterrupt:
        return _stopped_by_sigint()
    except DataDirError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return EXIT_DATA_DIR
    except ConfigError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def _stopped_by_sigint() -> int:
    """SIGINT came in the moments before ``serve`` put its own handler in place, or after it
    took it away as the node finished stopping: nothing was running, so a clean stop too."""
    logger.info("stopped by SIGINT outside serving")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
