"""DESIGN.md, "One owner per piece of state": the Raft peer alone writes the durable log (others
ask it), the applier alone owns the job state machine, and status, metrics and the steward read
published views. Checked in the code's structure and at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from raftq.raft.types import SnapshotMeta
from tests.node_helpers import running_cluster, wait_for_leader, wait_until

PACKAGE = Path(__file__).resolve().parent.parent / "raftq"

LOG_WRITERS = {"node/raft_peer.py", "node/log_writer.py"}
"""The modules that may write the durable log: the Raft peer and its helper."""

VIEW_READERS = ["node/client_service.py", "node/steward.py", "node/node.py", "node/__main__.py"]
"""Modules that read the Raft peer's and the applier's state: through their views only."""


def _modules() -> dict[str, ast.Module]:
    return {
        str(path.relative_to(PACKAGE)): ast.parse(path.read_text(), str(path))
        for path in PACKAGE.rglob("*.py")
    }


def _imported_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_only_the_raft_peer_makes_a_log_writer() -> None:
    makers = {
        name
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "LogWriter"
    }
    assert makers == {"node/raft_peer.py"}


def test_no_actor_but_the_raft_peer_reaches_the_durable_log() -> None:
    """The applier, the client service and the steward import neither the log nor its writer
    (node.py opens the log and hands it to the core and the peer; it only reads it)."""
    for name, tree in _modules().items():
        if not name.startswith("node/") or name in LOG_WRITERS | {"node/node.py"}:
            continue
        imported = _imported_names(tree)
        assert "raftq.storage.durable_log.DurableLog" not in imported, name
        assert "raftq.node.log_writer.LogWriter" not in imported, name


@pytest.mark.parametrize("module", VIEW_READERS)
def test_readers_use_the_published_views_not_the_core_or_the_machine(module: str) -> None:
    tree = _modules()[module]
    reaching = [
        f"line {node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in {"core", "machine"}
    ]
    assert reaching == []


def test_the_role_is_told_once_through_the_raft_peer() -> None:
    """No second notification path next to ``RaftPeer.role_changed()``."""
    source = "\n".join(path.read_text() for path in (PACKAGE / "node").glob("*.py"))
    assert "on_soft_state" not in source
    assert "steward_box" not in source


async def test_writing_the_log_from_another_task_fails_at_once(tmp_path: Path) -> None:
    """The log writer refuses a write from any task but the Raft peer's (and its children):
    an applier that saved its snapshot itself, as it once did, would stop here."""
    async with running_cluster(tmp_path, 1, snapshot_entries=3) as nodes:
        (node,) = nodes.values()
        await wait_for_leader(nodes)
        await wait_until(lambda: node.applier.applied_index >= 3)
        await wait_until(lambda: node.log_writer.statistics.snapshots_saved >= 1)
        meta = SnapshotMeta(index=node.applier.applied_index, term=node.raft.term)
        with pytest.raises(AssertionError, match="only the Raft peer writes"):
            await node.log_writer.save_snapshot(meta, node.applier.machine.snapshot())
