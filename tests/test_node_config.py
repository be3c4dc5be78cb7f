"""``python -m raftq.node --config FILE`` (issue 13, item 6): a TOML file can set every node
tunable, unknown keys and wrong types are refused naming the key (exit 2, one line), the
mapping is the project's cattrs converter (strict: no silent conversion), flags override the
file, and docs/operations.md lists exactly the keys there are, with their defaults."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

import raftq
from raftq.errors import ConfigError
from raftq.local_cluster import free_ports
from raftq.node.__main__ import build_parser, config_from
from raftq.node.config import NodeConfig, NodeSettings, setting_keys
from raftq.node.node import open_node
from tests.node_helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "operations.md"
IDENTITY = 'id = "n1"\ncluster = "n1=127.0.0.1:7100"\n'

EVERY_KEY = """\
id = "n2"
cluster = "n1=127.0.0.1:7101,n2=127.0.0.1:7102,n3=127.0.0.1:7103"
data_dir = "DATA"
cluster_id = "orders"
listen = "127.0.0.1:7102"
workers = 5
imports = ["tests.handlers.slow"]
metrics_addr = "127.0.0.1:9102"
http_addr = "127.0.0.1:8102"
log_level = "debug"
secret_file = ""
insecure = false
tls_cert = ""
tls_key = ""
tls_ca = ""

[raft]
tick_ms = 20
election_ticks = 15
heartbeat_ticks = 3

[storage]
fsync = "off"
snapshot_entries = 500
snapshot_bytes = 1048576

[jobs]
lease_extension_ms = 20000
expire_interval_ms = 250
retention_ms = 3600000
stop_grace_ms = 5000
"""


def load(tmp_path: Path, text: str, *flags: str) -> tuple[NodeConfig, NodeSettings]:
    path = tmp_path / "node.toml"
    path.write_text(text.replace("DATA", str(tmp_path / "data")))
    return config_from(build_parser().parse_args(["--config", str(path), *flags]))


def refusal(tmp_path: Path, text: str, *flags: str) -> str:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, text, *flags)
    return str(refused.value)


def test_every_key_reaches_the_node_s_config(tmp_path: Path) -> None:
    config, settings = load(tmp_path, EVERY_KEY)
    assert config == NodeConfig(
        node_id=config.node_id,
        members={"n1": "127.0.0.1:7101", "n2": "127.0.0.1:7102", "n3": "127.0.0.1:7103"},
        data_dir=str(tmp_path / "data"),
        cluster_id="orders",
        listen="127.0.0.1:7102",
        tick_ms=20,
        election_ticks=15,
        heartbeat_ticks=3,
        fsync=False,
        snapshot_entries=500,
        snapshot_bytes=1_048_576,
        lease_extension_ms=20_000,
        expire_interval_ms=250,
        retention_ms=3_600_000,
        workers=5,
        workers_grace_ms=5_000,
        imports=("tests.handlers.slow",),
        metrics_addr="127.0.0.1:9102",
        http_addr="127.0.0.1:8102",
    )
    assert config.node_id == "n2"
    assert settings.log_level == "debug"


def test_the_example_sets_every_key() -> None:
    """So that the test above covers each one (a new key must be added to it)."""
    listed = set(re.findall(r"^(\w+) =", EVERY_KEY, re.MULTILINE))
    assert listed == {key.rpartition(".")[2] for key in setting_keys()}


def test_an_empty_file_gives_the_node_s_defaults(tmp_path: Path) -> None:
    config, settings = load(tmp_path, IDENTITY + 'data_dir = "DATA"\n')
    assert config == NodeConfig(
        node_id=config.node_id, members=config.members, data_dir=str(tmp_path / "data")
    )
    assert settings.log_level == "info"


def test_flags_override_the_file(tmp_path: Path) -> None:
    config, settings = load(
        tmp_path,
        EVERY_KEY,
        "--workers", "0", "--tick-ms", "40", "--fsync", "always", "--snapshot-entries", "7",
        "--import", "json", "--log-level", "warning", "--data-dir", str(tmp_path / "other"),
    )  # fmt: skip
    assert (config.workers, config.tick_ms, config.fsync) == (0, 40, True)
    assert (config.snapshot_entries, config.imports) == (7, ("json",))
    assert config.data_dir == str(tmp_path / "other")
    assert settings.log_level == "warning"
    assert config.election_ticks == 15  # what no flag set stays as the file says


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workerz = 3\n", "unknown key workerz (known in the top level: id, cluster,"),
        ("tick_ms = 20\n", "unknown key tick_ms (did you mean raft.tick_ms?)"),
        ("[raft]\ntick = 20\n", "unknown key raft.tick (known in [raft]: tick_ms, election_"),
        ("[rafts]\ntick_ms = 20\n", "unknown key rafts (known in the top level"),
        ("[raft.more]\nx = 1\n", "unknown key raft.more"),
    ],
    ids=["top-level", "misplaced", "in-a-table", "unknown-table", "nested-table"],
)
def test_an_unknown_key_is_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    assert message in refusal(tmp_path, IDENTITY + text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('workers = "8"\n', "workers: expected int, got str"),
        ("workers = 8.0\n", "workers: expected int, got float"),
        ("insecure = 1\n", "insecure: expected bool, got int"),
        ('imports = "myapp.jobs"\n', "imports: expected an array of module names, got str"),
        ("imports = [1]\n", "imports: "),
        ("id = 7\n", "id: expected str, got int"),
        ('[raft]\ntick_ms = "fast"\n', "raft.tick_ms: expected int, got str"),
        ("[raft]\ntick_ms = { ms = 30 }\n", "raft.tick_ms: expected int, got dict"),
        ("raft = 30\n", "raft: must be a table"),
        ("[storage]\nfsync = false\n", "storage.fsync: expected str, got bool"),
        ("[[jobs]]\nretention_ms = 1\n", "jobs: must be a table"),
    ],
)
def test_a_wrong_type_is_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    text = text if text.startswith("id") else IDENTITY + text
    assert message in refusal(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workers = -1\n", "workers: must be at least 0, not -1"),
        ("[raft]\ntick_ms = 0\n", "raft.tick_ms: must be at least 1, not 0"),
        ('[storage]\nfsync = "sometimes"\n', "storage.fsync: must be one of always, off"),
        ('log_level = "loud"\n', "log_level: must be one of debug, info, warning"),
        (
            "[raft]\nelection_ticks = 2\nheartbeat_ticks = 2\n",
            "raft.election_ticks (2) must be greater than raft.heartbeat_ticks (2)",
        ),
    ],
)
def test_a_value_out_of_range_is_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    assert message in refusal(tmp_path, IDENTITY + text)


def test_a_flag_is_checked_like_the_file(tmp_path: Path) -> None:
    assert "workers: must be at least 0, not -2" in refusal(
        tmp_path, IDENTITY, "--data-dir", str(tmp_path), "--workers", "-2"
    )


def test_the_file_s_errors_name_the_file(tmp_path: Path) -> None:
    message = refusal(tmp_path, IDENTITY + "workers = true\n")
    assert message.startswith(f"--config {tmp_path / 'node.toml'}: workers: ")
    assert "is required" in refusal(tmp_path, IDENTITY)  # data_dir: neither file nor flag


def run_node(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftq.node", *arguments],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[raft]\nticks = 3\n", "unknown key raft.ticks"),
        ("[jobs]\nretention_ms = '1d'\n", "jobs.retention_ms: expected int, got str"),
        ("workers = \n", "Invalid value"),  # not TOML
    ],
)
def test_the_node_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(IDENTITY + f'data_dir = "{tmp_path}"\n' + text)
    done = run_node("--config", str(path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"python -m raftq.node: error: --config {path}: ")
    assert message in done.stderr


def documented_keys() -> dict[str, str]:
    """The table of docs/operations.md's "Every key of the config file": key -> default."""
    text = OPERATIONS.read_text()
    section = text.split("### Every key of the config file", 1)[1].split("\n#", 1)[0]
    return dict(re.findall(r"^\| `([\w.]+)` \| `([^`]*)` \|", section, re.MULTILINE))


def toml_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(toml_text(item) for item in value) + "]"
    return str(value)


def test_the_docs_list_exactly_the_keys_with_their_defaults() -> None:
    expected = {key: toml_text(default) for key, default in setting_keys().items()}
    assert documented_keys() == expected


async def test_stop_grace_ms_bounds_how_long_a_stopping_node_waits_for_its_jobs(
    tmp_path: Path,
) -> None:
    """``jobs.stop_grace_ms`` reaches the in-process workers: a job that would run 30 s is
    cancelled (and reported failed) 0.2 s after the node starts stopping."""
    config, _ = load(
        tmp_path,
        IDENTITY.replace("7100", str(free_ports(1)[0]))
        + 'data_dir = "DATA"\nworkers = 1\nimports = ["tests.handlers.slow"]\n'
        + "[jobs]\nstop_grace_ms = 200\n",
    )
    async with open_node(config) as node:
        await wait_until(lambda: node.steward.extend_alls > 0)
        async with raftq.connect(config.address, timeout=10) as client:
            job_id = await client.enqueue("slow", {"seconds": 30})
            await wait_until(lambda: node.worker is not None and node.worker.statistics.running > 0)
            with trio.fail_after(5):
                await node.stop_workers()
            job = await client.get(job_id)
            assert job.state in {"failed", "pending"}, job.state  # failed, to be retried
