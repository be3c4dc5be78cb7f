"""How one node is configured: identity, cluster members, storage and timing."""

from __future__ import annotations

import importlib
import ipaddress
import re
import tomllib
import typing
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from raftq import codec, limits
from raftq.errors import ConfigError, DecodeError
from raftq.ids import NodeId, parse_node_id
from raftq.jobs.commands import ScheduleSpec
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
    wal_segment_bytes: int = limits.WAL_SEGMENT_BYTES
    """WAL segments roll over past this size (limits.py says why the default). The simulator sets
    a small one so its short runs roll and compact segments as a long production run does."""
    lease_extension_ms: int = 10_000
    """A new leader's ExtendAll: no lease expires within this of the failover."""
    expire_interval_ms: int = 1_000
    """How often the leader proposes ExpireLeases."""
    retention_ms: int = 7 * 24 * 3600 * 1000
    """Finished jobs are purged this long after they finished."""
    workers: int = 0
    """In-process workers: a Worker with this concurrency, claiming through the cluster."""
    workers_grace_ms: int = 30_000
    """On a clean stop, running jobs of the in-process workers get this long to finish; then
    they are cancelled and reported failed (retried at once elsewhere). A supervisor must
    allow the node longer than this to stop (systemd's TimeoutStopSec)."""
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
    schedules: tuple[ScheduleSpec, ...] = ()
    """Schedules the config file declares: the first time this node leads after it starts,
    it adds each one the cluster lacks or holds differently (docs/schedules.md)."""

    def __attrs_post_init__(self) -> None:
        if self.wal_segment_bytes < limits.WAL_SEGMENT_BYTES_MIN:
            raise ConfigError(f"wal_segment_bytes must be at least {limits.WAL_SEGMENT_BYTES_MIN}")
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
        if self.http_addr:
            check_web_installed("--http-addr")
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


WEB_MODULES = ("starlette", "hypercorn")
"""What the web app needs beyond raftq's own dependencies: the ``web`` extra."""


def check_web_installed(what: str) -> None:
    """``ConfigError`` (exit 2) saying what to install if the web extra is missing."""
    for module in WEB_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigError(
                f"{what} needs raftq's web extra ({module} is not installed): "
                "pip install 'raftq[web]'"
            ) from None


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


# --- the --config file ------------------------------------------------------------------------
#
# ``python -m raftq.node --config FILE`` reads a TOML file into ``NodeSettings`` with the
# project's cattrs converter (``raftq.codec``: strict types, so ``workers = "8"`` is refused,
# never converted), refusing unknown keys; flags given on the command line override the file.
# docs/operations.md lists every key with its default (a test compares it with this class).


def _default(name: str) -> Any:
    """``NodeConfig``'s default for ``name``: one source for the node's defaults."""
    return attrs.fields_dict(NodeConfig)[name].default


def _setting(default: Any, *, minimum: int | None = None, choices: tuple[str, ...] = ()) -> Any:
    return attrs.field(default=default, metadata={"minimum": minimum, "choices": choices})


@attrs.frozen(kw_only=True)
class RaftSettings:
    """``[raft]``: timing. Every member should use the same values."""

    tick_ms: int = _setting(_default("tick_ms"), minimum=1)
    election_ticks: int = _setting(_default("election_ticks"), minimum=2)
    heartbeat_ticks: int = _setting(_default("heartbeat_ticks"), minimum=1)


@attrs.frozen(kw_only=True)
class StorageSettings:
    """``[storage]``: durability and compaction."""

    fsync: str = _setting("always", choices=("always", "off"))
    snapshot_entries: int = _setting(_default("snapshot_entries"), minimum=0)
    snapshot_bytes: int = _setting(_default("snapshot_bytes"), minimum=0)


@attrs.frozen(kw_only=True)
class JobsSettings:
    """``[jobs]``: the leader's duties to leases, how long finished jobs are kept, and how
    long running jobs may finish when the node stops."""

    lease_extension_ms: int = _setting(_default("lease_extension_ms"), minimum=1)
    expire_interval_ms: int = _setting(_default("expire_interval_ms"), minimum=1)
    retention_ms: int = _setting(_default("retention_ms"), minimum=0)
    stop_grace_ms: int = _setting(_default("workers_grace_ms"), minimum=0)


@attrs.frozen(kw_only=True)
class ScheduleSettings:
    """``[schedules.NAME]``: one schedule, as ``raftq schedule add NAME`` takes it."""

    type: str
    cron: str = ""
    tz: str = ""
    every_s: float = 0
    payload: Any = None
    queue: str = "default"
    catch_up: str = "latest"
    priority: int = 0
    max_attempts: int = 3
    timeout_s: float = 30.0
    group: str = ""


@attrs.frozen(kw_only=True)
class NodeSettings:
    """Everything ``--config`` may set. Top-level keys are the node's identity, process and
    security options, spelled as their flags with underscores; tunables sit in tables."""

    id: str = ""
    cluster: str = ""
    data_dir: str = ""
    cluster_id: str = _default("cluster_id")
    listen: str = _default("listen")
    workers: int = _setting(_default("workers"), minimum=0)
    imports: tuple[str, ...] = ()
    metrics_addr: str = _default("metrics_addr")
    http_addr: str = _default("http_addr")
    log_level: str = _setting("info", choices=("debug", "info", "warning"))
    secret_file: str = ""
    insecure: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    raft: RaftSettings = attrs.field(factory=RaftSettings)
    storage: StorageSettings = attrs.field(factory=StorageSettings)
    jobs: JobsSettings = attrs.field(factory=JobsSettings)
    schedules: dict[str, ScheduleSettings] = attrs.field(
        factory=dict, metadata={"table_of_tables": True}
    )
    """Listed in docs/schedules.md, not among the keys of docs/operations.md."""


def _module_names(value: Any, _: Any) -> tuple[str, ...]:
    """``imports``: an array of names; cattrs would take a string as its characters."""
    if not isinstance(value, list | tuple):
        raise DecodeError(f"expected an array of module names, got {type(value).__name__}")
    return tuple(codec.converter.structure(name, str) for name in value)


def _register_settings() -> None:
    """Structure hooks that refuse unknown keys, on the project's converter."""
    for cls in (RaftSettings, StorageSettings, JobsSettings, ScheduleSettings, NodeSettings):
        attrs.resolve_types(cls)  # field.type: classes, not the strings of the annotations
        overrides: dict[str, Any] = {}
        if cls is NodeSettings:
            overrides["imports"] = override(struct_hook=_module_names)
        hook = make_dict_structure_fn(
            cls, codec.converter, _cattrs_forbid_extra_keys=True, **overrides
        )
        codec.converter.register_structure_hook(cls, hook)


_register_settings()

FLAG_KEYS = {"tick_ms": "raft.tick_ms"} | {
    name: f"storage.{name}" for name in ("fsync", "snapshot_entries", "snapshot_bytes")
}
"""Flags whose key sits in a table; every other flag's key is its own name."""


def setting_keys(cls: Any = NodeSettings, prefix: str = "") -> dict[str, Any]:
    """Every key a config file may hold, dotted (``raft.tick_ms``), with its default."""
    keys: dict[str, Any] = {}
    for field in attrs.fields(cls):
        if field.metadata.get("table_of_tables"):
            continue
        if attrs.has(field.type):
            keys.update(setting_keys(field.type, f"{prefix}{field.name}."))
        else:
            default = field.default
            keys[prefix + field.name] = default.factory() if _is_factory(default) else default
    return keys


def _is_factory(default: Any) -> bool:
    return isinstance(default, attrs.Factory)  # type: ignore[arg-type]


def load_settings(path: str, flags: dict[str, Any]) -> NodeSettings:
    """The file at ``path`` (or none: "") with ``flags`` (name -> value, given ones only) over
    it; ``ConfigError`` naming the first wrong key."""
    document: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as file:
                document = tomllib.load(file)
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"--config {path}: {error}") from None
        try:
            settings_from(document)  # the file alone first: its errors name the file
        except ConfigError as error:
            raise ConfigError(f"--config {path}: {error}") from None
    for name, value in flags.items():
        *tables, key = FLAG_KEYS.get(name, name).split(".")
        table = document
        for name_of_table in tables:
            table = table.setdefault(name_of_table, {})
        table[key] = value
    return settings_from(document)


def settings_from(document: dict[str, Any]) -> NodeSettings:
    """``NodeSettings`` from a parsed TOML document; ``ConfigError`` naming the key."""
    try:
        settings = codec.converter.structure(document, NodeSettings)
    except Exception as error:  # cattrs' ClassValidationError, with a note per wrong key
        problems = cattrs.transform_error(error, path="$", format_exception=_describe)
        raise ConfigError(_key_first(problems[0]) if problems else str(error)) from None
    _check_bounds(settings)
    if settings.raft.election_ticks <= settings.raft.heartbeat_ticks:
        raise ConfigError(
            f"raft.election_ticks ({settings.raft.election_ticks}) must be greater than "
            f"raft.heartbeat_ticks ({settings.raft.heartbeat_ticks}): a leader must be heard "
            "from before followers give up on it"
        )
    return settings


_UNKNOWN = "\0unknown:"


def _describe(error: BaseException, kind: Any) -> str:
    if isinstance(error, cattrs.ForbiddenExtraKeysError):
        return _UNKNOWN + ",".join(sorted(error.extra_fields))
    if attrs.has(kind):
        return "must be a table"
    if isinstance(error, DecodeError):
        return str(error)  # "expected int, got str"
    if isinstance(error, KeyError):  # a key without a default (a schedule's type)
        return "is required"
    return f"cannot be read as {getattr(kind, '__name__', kind)}: {error}"


def _key_first(problem: str) -> str:
    """cattrs' "what @ $.raft.tick_ms" as "raft.tick_ms: what"."""
    what, _, where = problem.rpartition(" @ ")
    path = re.sub(r"\['([^']*)'\]", r".\1", where).removeprefix("$").removeprefix(".")
    if what.startswith(_UNKNOWN):
        unknown = what[len(_UNKNOWN) :].split(",")
        names = ", ".join(f"{path}.{key}" if path else key for key in unknown)
        elsewhere = [key for key in setting_keys() if key.rpartition(".")[2] in unknown]
        if elsewhere:
            return f"unknown key {names} (did you mean {' or '.join(elsewhere)}?)"
        table = f"[{path}]" if path else "the top level"
        known = ", ".join(field.name for field in attrs.fields(_settings_class_at(path)))
        return f"unknown key {names} (known in {table}: {known})"
    return f"{path}: {what}"


def _settings_class_at(path: str) -> Any:
    cls: Any = NodeSettings
    names = [name for name in path.split(".") if name]
    while names:
        cls = attrs.fields_dict(cls)[names.pop(0)].type
        if typing.get_origin(cls) is dict:  # [schedules.NAME]: NAME is the table's own
            cls = typing.get_args(cls)[1]
            names = names[1:]
    return cls


def _check_bounds(settings: Any, prefix: str = "") -> None:
    for field in attrs.fields(type(settings)):
        value = getattr(settings, field.name)
        key = prefix + field.name
        if field.metadata.get("table_of_tables"):
            continue  # checked whole by their own code (schedule_specs)
        if attrs.has(type(value)):
            _check_bounds(value, key + ".")
            continue
        minimum, choices = field.metadata.get("minimum"), field.metadata.get("choices")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{key}: must be at least {minimum}, not {value}")
        if choices and value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(choices)}, not {value!r}")


def schedule_specs(schedules: dict[str, ScheduleSettings]) -> tuple[ScheduleSpec, ...]:
    """The config file's ``[schedules.NAME]`` tables as schedules, by name; ``ConfigError``
    naming the schedule and its problem (a bad cron expression or zone, both or neither of
    ``cron`` and ``every_s``)."""
    from raftq.client.schedules import schedule_spec

    specs: list[ScheduleSpec] = []
    for name in sorted(schedules):
        settings = schedules[name]
        try:
            specs.append(
                schedule_spec(
                    name,
                    settings.type,
                    settings.payload,
                    {
                        "cron": settings.cron or None,
                        "every": settings.every_s or None,
                        "tz": settings.tz or None,
                        "queue": settings.queue,
                        "catch_up": settings.catch_up,
                        "priority": settings.priority,
                        "max_attempts": settings.max_attempts,
                        "timeout": settings.timeout_s,
                        "group": settings.group or None,
                    },
                )
            )
        except ConfigError as error:
            raise ConfigError(f"schedules.{name}: {error}") from None
    return tuple(specs)
