"""The layering rules of DESIGN.md, checked on the import statements of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "raftq"

# Pure layers: decisions only. Time, randomness and I/O arrive as arguments.
PURE_PACKAGES = ("raftq/raft", "raftq/jobs")
PURE_MODULES = (
    "raftq/codec.py",
    "raftq/ids.py",
    "raftq/limits.py",
    "raftq/errors.py",
    "raftq/storage/record.py",
)
FORBIDDEN_IN_PURE = ("trio", "socket", "os", "time", "threading", "asyncio", "sim", "secrets")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def pure_files() -> list[Path]:
    files = [ROOT / module for module in PURE_MODULES]
    for package in PURE_PACKAGES:
        files.extend(sorted((ROOT / package).rglob("*.py")))
    return files


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_modules_import_no_io_clock_or_random(path: Path) -> None:
    for name in imported_modules(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN_IN_PURE, f"{path.relative_to(ROOT)} imports {name}"


def global_random_uses(path: Path) -> list[str]:
    """Uses of the ``random`` module's shared generator; ``random.Random`` (a type, or an
    injected instance's class) is the one allowed name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    uses = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
            and node.attr != "Random"
        ):
            uses.append(f"random.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            uses.extend(f"from random import {alias.name}" for alias in node.names)
    return [use for use in uses if use != "from random import Random"]


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_modules_use_no_global_random(path: Path) -> None:
    assert global_random_uses(path) == []


def test_the_random_checker_sees_global_use(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import random\nfrom random import choice\n"
        "def f(rng: random.Random) -> float:\n    return random.random()\n"
    )
    assert global_random_uses(sample) == ["from random import choice", "random.random"]


def test_raftq_never_imports_sim() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in imported_modules(path):
            assert name.split(".")[0] != "sim", f"{path.relative_to(ROOT)} imports {name}"


def test_the_checker_sees_imports() -> None:
    """Guard the guard: the scanner must find imports of every form."""
    source = ROOT / "raftq" / "storage" / "disk.py"
    assert {"os", "trio", "fcntl"} <= imported_modules(source)


def test_pure_list_is_not_empty() -> None:
    assert any(path.name == "types.py" for path in pure_files())


def test_the_web_app_is_a_client_and_never_reaches_into_a_node() -> None:
    """DESIGN.md: web/ is an ASGI app over the client library; what it changes goes through
    the replicated log, so it imports neither the node nor the job state machine's insides."""
    for path in sorted((PACKAGE / "web").rglob("*.py")):
        for name in imported_modules(path):
            assert not name.startswith(("raftq.node", "raftq.raft", "raftq.storage")), (
                f"{path.relative_to(ROOT)} imports {name}"
            )
            assert name not in ("raftq.jobs.machine", "raftq.jobs.listing"), name
