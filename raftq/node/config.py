"""How one node is configured: identity, cluster members, storage and timing."""

from __future__ import annotations

import ipaddress

import attrs

from raftq.errors import ConfigError
from raftq.ids import NodeId, parse_node_id
from raftq.transport.network import parse_address
from raftq.transport.tls import TlsConfig


@attrs.frozen(kw_only=True)
class NodeConfig:
    node_id: NodeId
    members: dict[NodeId, str]
    """Every voter of the initial cluster (this node included), id -> HOST:PORT."""
    data_dir: str
    cluster_id: str = "raftq"
    listen: str = ""
    """Where to listen; defaults to this node's address in ``members``."""
    tick_ms: int = 30
    """With ``election_ticks`` 10: followers wait 300-600 ms for a silent leader, so a failover
    takes well under a second."""
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    """A heartbeat every 60 ms: five in the shortest election timeout, and half the idle
    messages (and CPU) of one per tick. A heartbeat also carries the commit index to a
    follower that has nothing else coming (the node sends no commit notices: docs/raft.md)."""
    fsync: bool = True
    snapshot_entries: int = 10_000
    """Snapshot the job state after this many applied entries (0: never)..."""
    snapshot_bytes: int = 64 * 1024 * 1024
    """... or after this many bytes of applied entries (0: never), whichever comes first: a
    log of large jobs is compacted as promptly as one of many small ones, so neither the WAL
    on disk nor a restart's replay grows past about this much."""
    lease_extension_ms: int = 10_000
    """A new leader's ExtendAll: no lease expires within this of the failover."""
    expire_interval_ms: int = 1_000
    """How often the leader proposes ExpireLeases."""
    retention_ms: int = 7 * 24 * 3600 * 1000
    """Finished jobs are purged this long after they finished."""
    workers: int = 0
    """In-process workers: a Worker with this concurrency, claiming through the cluster."""
    imports: tuple[str, ...] = ()
    """Modules that register job handlers (``--import``)."""
    metrics_addr: str = ""
    """HOST:PORT to serve Prometheus metrics at ``/metrics`` ("" for none)."""
    http_addr: str = ""
    """HOST:PORT to serve the dashboard, the JSON API and ``/metrics`` at ("" for none)."""
    secret_file: str = ""
    """The cluster secret (``--secret-file``); "" for none: then loopback only, or insecure."""
    insecure: bool = False
    """Serve beyond loopback without a secret: anyone who reaches the port may use the node."""
    tls: TlsConfig | None = None
    """TLS for every connection (``--tls-cert``, ``--tls-key``, ``--tls-ca``)."""

    def __attrs_post_init__(self) -> None:
        if self.node_id not in self.members:
            raise ConfigError(f"--cluster must list this node ({self.node_id}) with its address")
        for address in self.members.values():
            parse_address(address)
        if self.tls is not None and not self.tls.cert_file:
            raise ConfigError("a node with TLS needs --tls-cert and --tls-key")
        if not self.secret_file and not self.insecure and not self.loopback_only:
            raise ConfigError(
                f"without --secret-file a node listens on loopback only, not on "
                f"{self.listen_address}: give the cluster a secret, or pass --insecure to "
                "let anyone who can reach the port read, enqueue and cancel jobs"
            )
        if self.metrics_addr:
            parse_address(self.metrics_addr, any_port=True)
        if self.http_addr and not self.secret_file and not self.insecure:
            host, _ = parse_address(self.http_addr, any_port=True)
            if not _is_loopback(host):
                raise ConfigError(
                    f"without --secret-file the web app listens on loopback only, not on "
                    f"{self.http_addr}: give the cluster a secret (the web app then asks for a "
                    "token), or pass --insecure"
                )
        if self.tick_ms <= 0 or self.election_ticks <= self.heartbeat_ticks:
            raise ConfigError("need tick_ms > 0 and election_ticks > heartbeat_ticks")

    @property
    def loopback_only(self) -> bool:
        """Whether the node listens only where other hosts cannot reach it."""
        host, _ = parse_address(self.listen_address, any_port=True)
        return _is_loopback(host)

    @property
    def address(self) -> str:
        return self.members[self.node_id]

    @property
    def listen_address(self) -> str:
        return self.listen or self.address


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def parse_members(text: str) -> dict[NodeId, str]:
    """``ID=HOST:PORT,ID=HOST:PORT`` -> {id: address}, or ``ConfigError`` saying why."""
    members: dict[NodeId, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        node, separator, address = item.partition("=")
        if not separator:
            raise ConfigError(f"cluster member {item!r} must be ID=HOST:PORT")
        node_id = parse_node_id(node)
        parse_address(address)
        if node_id in members:
            raise ConfigError(f"cluster member {node_id} listed twice")
        members[node_id] = address
    if not members:
        raise ConfigError("--cluster lists no members")
    return members
