"""Nodes end when the program that started them dies, however it dies (issue 13, item 9).

``raftq demo`` killed with SIGKILL once left its three nodes running for good. Now every node
that ``LocalCluster`` starts (the demo, the benchmarks, tests) holds the read end of a pipe
whose only write end is in the starting program (``raftq.lifeline``); when that program ends,
the kernel closes the pipe and each node stops at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from raftq.errors import ConfigError
from raftq.lifeline import LIFELINE_ENV, Lifeline, lifeline_fd, wait_for_parent_exit
from raftq.local_cluster import free_ports, process_alive

ROOT = Path(__file__).resolve().parent.parent
GONE_WITHIN_S = 30
"""A node whose lifeline closed stops at once (no grace period, no hand-over): well under a
second here; the bound is generous for a loaded machine."""


def wait_until_gone(pids: list[int], seconds: float = GONE_WITHIN_S) -> list[int]:
    """The pids still alive after ``seconds`` (polled, bounded)."""
    deadline = time.monotonic() + seconds
    alive = list(pids)
    for _ in range(int(seconds / 0.1) + 1):
        alive = [pid for pid in alive if process_alive(pid)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return alive


@contextmanager
def killed_at_exit(pids: list[int]) -> Iterator[list[int]]:
    """SIGKILL whatever of ``pids`` still runs when the block ends, pass or fail."""
    try:
        yield pids
    finally:
        for pid in pids:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_pipe_that_closes_wakes_the_watcher() -> None:
    lifeline = Lifeline()
    watched = lifeline_fd(lifeline.read_fd)
    assert watched == lifeline.read_fd

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            woke = trio.Event()

            async def watch() -> None:
                await wait_for_parent_exit(lifeline.read_fd)
                woke.set()

            nursery.start_soon(watch)
            await trio.testing.wait_all_tasks_blocked()
            assert not woke.is_set()  # open: the parent lives
            os.close(lifeline._write_fd)  # what the kernel does when the parent dies
            with trio.fail_after(5):
                await woke.wait()

    trio.run(main)
    os.close(lifeline.read_fd)


def test_the_fd_must_be_an_open_pipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (
        (tmp_path / "file").open("w") as file,
        pytest.raises(ConfigError, match="not an open pipe"),
    ):
        lifeline_fd(file.fileno())
    with pytest.raises(ConfigError, match="--lifeline-fd 99999 is not an open pipe"):
        lifeline_fd(99_999)
    monkeypatch.setenv(LIFELINE_ENV, "seven")
    with pytest.raises(ConfigError, match=f"\\${LIFELINE_ENV} must be a file descriptor"):
        lifeline_fd(None)
    assert LIFELINE_ENV not in os.environ  # taken out, so our own children never see it
    assert lifeline_fd(None) is None


def test_a_node_given_a_bad_lifeline_exits_2_with_one_line(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "raftq.node",
            "--id",
            "n1",
            "--cluster",
            f"n1=127.0.0.1:{port}",
            "--data-dir",
            str(tmp_path / "n1"),
            "--lifeline-fd",
            "0",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "--lifeline-fd 0 is not an open pipe" in done.stderr
    assert "Traceback" not in done.stderr


PARENT = textwrap.dedent(
    """
    import sys, trio
    from pathlib import Path
    from raftq.local_cluster import open_local_cluster

    async def main():
        async with open_local_cluster(Path(sys.argv[1]), int(sys.argv[2])) as cluster:
            print(*(cluster.pid(node) for node in cluster.addresses), flush=True)
            await trio.sleep_forever()

    trio.run(main)
    """
)


@pytest.mark.slow
def test_nodes_of_a_local_cluster_end_when_its_program_is_killed_with_sigkill(
    tmp_path: Path,
) -> None:
    """Nothing of the parent runs after SIGKILL: no finally, no stop(). Its nodes stop."""
    with subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path), "3"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as parent:
        node_pids: list[int] = []
        with killed_at_exit(node_pids):
            try:
                assert parent.stdout is not None
                node_pids.extend(int(pid) for pid in parent.stdout.readline().split())
                assert len(node_pids) == 3
                assert all(process_alive(pid) for pid in node_pids)
            finally:
                parent.kill()
                parent.wait()
            assert wait_until_gone(node_pids) == []


@pytest.mark.slow
def test_a_node_started_with_the_lifeline_in_its_environment_stops_cleanly_when_it_closes(
    tmp_path: Path,
) -> None:
    """``$RAFTQ_LIFELINE_FD``: how a script's ``raftq run ... &`` gets one. The node stops
    at once, exit 0; the test runner's own lifeline is its write end."""
    (port,) = free_ports(1)
    lifeline = Lifeline()
    try:
        node = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "raftq",
                "run",
                "--listen",
                f"127.0.0.1:{port}",
                "--data-dir",
                str(tmp_path / "data"),
                "--workers",
                "0",
                "--log-level",
                "info",
            ],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **lifeline.environment()},
            pass_fds=lifeline.pass_fds,
        )
    except BaseException:
        lifeline.close()
        raise
    with killed_at_exit([node.pid]), node:
        assert node.stderr is not None
        for _ in range(200):  # its log, until it serves
            line = node.stderr.readline()
            if "role=leader" in line or not line:
                break
        assert process_alive(node.pid)
        lifeline.close()
        assert node.wait(timeout=GONE_WITHIN_S) == 0
        assert "lifeline closed" in node.stderr.read()
