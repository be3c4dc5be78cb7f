"""SIGINT stops raftq's programs even when they were started with SIGINT ignored (issue 13,
item 9), as a script's ``command &`` starts them: POSIX shells ignore SIGINT in background
jobs when job control is off, exec keeps it, and Python and Trio then leave it ignored. That
is how Ctrl-C was lost in ``raftq demo`` (tests/test_demo.py); the worker lost it the same
way while importing its handlers. Nodes (``python -m raftq.node``, ``raftq run``) install
their own handler once serving, which took SIGINT back already; that is checked here too."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from raftq.interrupts import interrupted
from raftq.local_cluster import free_ports
from tests.test_demo import ignoring_sigint
from tests.test_lifeline import killed_at_exit

SLOW_IMPORT = """\
import time
print("importing", flush=True)
time.sleep(60)  # a handler module that takes its time: the worker is not serving yet
"""


def test_interrupted_sees_through_exception_groups() -> None:
    assert interrupted(KeyboardInterrupt())
    assert interrupted(
        BaseExceptionGroup("g", [ValueError(), BaseExceptionGroup("h", [KeyboardInterrupt()])])
    )
    assert not interrupted(BaseExceptionGroup("g", [ValueError()]))
    assert not interrupted(RuntimeError())


@pytest.mark.slow
def test_a_worker_interrupted_while_importing_its_handlers_exits_130(tmp_path: Path) -> None:
    (tmp_path / "slow_import.py").write_text(SLOW_IMPORT)
    command = [
        sys.executable, "-m", "raftq", "--cluster", "127.0.0.1:9",
        "worker", "--import", "slow_import",
    ]  # fmt: skip
    with (
        subprocess.Popen(
            ignoring_sigint(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        ) as worker,
        killed_at_exit([worker.pid]),
    ):
        assert worker.stdout is not None
        assert worker.stderr is not None
        assert worker.stdout.readline() == "importing\n"
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=20) == 130
        assert worker.stderr.read() == "raftq: interrupted\n"


@pytest.mark.slow
@pytest.mark.parametrize("program", ["raftq run", "python -m raftq.node"])
def test_a_node_started_with_sigint_ignored_stops_cleanly_on_sigint(
    program: str, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    address, data_dir = f"127.0.0.1:{port}", str(tmp_path / "data")
    if program == "raftq run":
        command = [sys.executable, "-m", "raftq", "run", "--listen", address]
        command += ["--data-dir", data_dir, "--log-level", "info"]
    else:
        command = [sys.executable, "-m", "raftq.node", "--id", "n1", "--cluster"]
        command += [f"n1={address}", "--data-dir", data_dir, "--log-level", "info"]
    with (
        subprocess.Popen(
            ignoring_sigint(command),
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        ) as node,
        killed_at_exit([node.pid]),
    ):
        assert node.stderr is not None
        for _ in range(200):  # its log, until it leads
            line = node.stderr.readline()
            if "role=leader" in line or not line:
                break
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=30) == 0
        assert "stopping reason=signal SIGINT" in node.stderr.read()
