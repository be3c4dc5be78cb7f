"""Real ``python -m raftq.node`` processes on 127.0.0.1, for the demo and the benchmarks.

A ``LocalCluster`` picks free ports, gives every node its own data directory under ``root``
and its own log file, and owns the processes it starts: ``stop()`` ends every one of them
(SIGTERM, then SIGKILL after a grace period), and ``open_local_cluster`` calls it on any exit,
Ctrl-C included. Nodes run in their own session, so a terminal's Ctrl-C reaches only the
program that started them, which then stops them in order. And every node holds the cluster's
lifeline (``raftq.lifeline``): if this program dies without stopping them (SIGKILL, a crash, a
test runner killed at its timeout), each node sees the pipe close and stops by itself.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from raftq.lifeline import Lifeline

STOP_GRACE_S = 5.0
"""A node given SIGTERM hands over leadership and lets running jobs finish; past this it is
killed. The demo's and the benchmarks' jobs are short, so a few seconds is plenty."""


LISTEN_PORTS_LOWEST = 10_000
"""Ports for local nodes are drawn from here up to just below the kernel's ephemeral range."""

PORT_DRAWS_MAX = 1_000


def free_ports(count: int) -> list[int]:
    """Ports free right now on 127.0.0.1, drawn at random below the kernel's ephemeral range.

    A port from ``bind(("127.0.0.1", 0))`` comes from the ephemeral range, which is also where
    every outgoing connection on the machine takes its local port: under load (a test suite
    beside other work) one of them took a node's port between the probe and the node's bind
    ("Address already in use"). Below that range only another program that listens can take
    it, and random draws make two such programs picking the same port unlikely. Still a race
    a local tool accepts: the port is free when checked, then released."""
    lowest, highest = LISTEN_PORTS_LOWEST, _ephemeral_lowest() - 1
    if highest - lowest < 100 * count:  # an odd kernel setting: let the kernel choose
        return _kernel_chosen_ports(count)
    draw = random.Random()  # local tooling, not replicated state: any randomness will do
    ports: list[int] = []
    for _ in range(PORT_DRAWS_MAX):
        port = draw.randint(lowest, highest)
        if port not in ports and _is_free(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    return _kernel_chosen_ports(count)


def _ephemeral_lowest() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_chosen_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


class NodeExited(RuntimeError):
    """A node this program started has exited on its own."""


class LocalCluster:
    """``size`` nodes named n1, n2, ... on free 127.0.0.1 ports, data under ``root``."""

    def __init__(
        self,
        root: Path,
        size: int = 3,
        *,
        workers: int = 0,
        fsync: bool = True,
        tick_ms: int = 30,
        extra_flags: Sequence[str] = (),
    ) -> None:
        assert 1 <= size <= 9, size
        self.root = root
        self.addresses = {
            f"n{n}": f"127.0.0.1:{port}" for n, port in enumerate(free_ports(size), 1)
        }
        self.workers = workers
        self.fsync = fsync
        self.tick_ms = tick_ms
        self.extra_flags = list(extra_flags)
        self.processes: dict[str, trio.Process] = {}
        self._lifeline: Lifeline | None = None

    @property
    def cluster_flag(self) -> str:
        """The ``--cluster`` value of every node: ``n1=127.0.0.1:PORT,...``."""
        return ",".join(f"{node}={address}" for node, address in self.addresses.items())

    @property
    def client_addresses(self) -> list[str]:
        return list(self.addresses.values())

    def data_dir(self, node: str) -> Path:
        return self.root / node

    def log_file(self, node: str) -> Path:
        return self.root / f"{node}.log"

    def command(self, node: str) -> list[str]:
        return [
            sys.executable, "-m", "raftq.node",
            "--id", node,
            "--cluster", self.cluster_flag,
            "--data-dir", str(self.data_dir(node)),
            "--workers", str(self.workers),
            "--tick-ms", str(self.tick_ms),
            "--fsync", "always" if self.fsync else "off",
            "--log-level", "warning",
            *self.extra_flags,
        ]  # fmt: skip

    async def start(self, node: str) -> trio.Process:
        assert node in self.addresses, node
        assert node not in self.processes, f"{node} is already running"
        self.root.mkdir(parents=True, exist_ok=True)
        if self._lifeline is None:
            self._lifeline = Lifeline()
        with self.log_file(node).open("ab") as log:  # the child keeps its own descriptor
            process = await trio.lowlevel.open_process(
                [*self.command(node), *self._lifeline.flags()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=self._lifeline.pass_fds,
            )
        self.processes[node] = process
        return process

    async def start_all(self) -> None:
        for node in self.addresses:
            await self.start(node)

    def check_running(self) -> None:
        """Raise ``NodeExited`` (with the end of its log) if a started node has exited."""
        for node, process in self.processes.items():
            if process.returncode is not None:
                raise NodeExited(
                    f"node {node} exited with code {process.returncode}; the end of its log "
                    f"({self.log_file(node)}):\n{self.log_tail(node)}"
                )

    def pid(self, node: str) -> int:
        return self.processes[node].pid

    def cpu_seconds(self) -> float:
        """User + system CPU of every running node process so far (Linux ``/proc``): a cost
        per job that holds even when other work shares the machine, unlike jobs per second."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for process in self.processes.values():
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return total

    async def kill(self, node: str) -> None:
        """kill -9 (no chance to flush or hand over), and reap it."""
        process = self.processes.pop(node)
        process.send_signal(signal.SIGKILL)
        with trio.CancelScope(shield=True):
            await process.wait()

    async def terminate(self, node: str) -> int:
        """SIGTERM (a clean stop), SIGKILL after ``STOP_GRACE_S``; the exit code."""
        process = self.processes.pop(node)
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(STOP_GRACE_S):
                    await process.wait()
                if process.returncode is None:
                    process.send_signal(signal.SIGKILL)
                    await process.wait()
        assert process.returncode is not None
        return process.returncode

    async def stop(self) -> None:
        """Stop every node still running, all at once; then let go of the lifeline."""
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for node in list(self.processes):
                    nursery.start_soon(self.terminate, node)
        assert not self.processes
        if self._lifeline is not None:
            self._lifeline.close()
            self._lifeline = None

    def log_tail(self, node: str, lines: int = 20) -> str:
        try:
            text = self.log_file(node).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@asynccontextmanager
async def open_local_cluster(
    root: Path,
    size: int = 3,
    *,
    workers: int = 0,
    fsync: bool = True,
    tick_ms: int = 30,
    extra_flags: Sequence[str] = (),
) -> AsyncIterator[LocalCluster]:
    """Start ``size`` nodes; on leaving the block, however it is left, stop all of them."""
    cluster = LocalCluster(
        root, size, workers=workers, fsync=fsync, tick_ms=tick_ms, extra_flags=extra_flags
    )
    try:
        await cluster.start_all()
        yield cluster
    finally:
        await cluster.stop()


def rss_bytes(pid: int) -> int:
    """The resident set of process ``pid`` (Linux ``/proc``); 0 where that is not available."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
