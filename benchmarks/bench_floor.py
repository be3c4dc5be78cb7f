"""The latency floor of this machine: what a 3-node replicated commit costs with no Raft at all.

Run by hand; figures, not a test. It times the shape of a raftq commit stripped to its bones:
a client sends 200 bytes to a "leader" process, which forwards them to two "follower"
processes, appends them to its own file and fdatasyncs it; each follower appends and
fdatasyncs too and answers one byte; the leader answers the client once its own sync and one
follower's answer are in. Two builds of that pipeline:

1. ``blocking``: plain blocking sockets and ``os.fdatasync``: the least Python can do;
2. ``trio``: the same on Trio streams (what raftq is built on), fdatasync inline in the loop,
   with none of raftq's encoding, Raft, state machine or tasks.

Each is timed for ``--samples`` round trips, ``--gap-ms`` apart (low load, like the latency
figure of ``bench_node.py``). raftq's own enqueue latency cannot go below the ``trio`` figure
on the same machine: see docs/performance.md.

    python benchmarks/bench_floor.py [--samples 3000] [--gap-ms 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import select
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from raftq.local_cluster import free_ports

PAYLOAD = b"x" * 200


# --- blocking -------------------------------------------------------------------------------------


def _accept_one(port: int) -> socket.socket:
    with socket.create_server(("127.0.0.1", port)) as server:
        connection, _ = server.accept()
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def _connect(port: int) -> socket.socket:
    deadline = time.monotonic() + 10
    while True:
        try:
            connection = socket.create_connection(("127.0.0.1", port))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
            continue
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection


def blocking_follower(port: int, path: str) -> None:
    connection = _accept_one(port)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    while data := connection.recv(65536):
        os.write(fd, data)
        os.fdatasync(fd)
        connection.sendall(b"a")


def blocking_leader(port: int, followers: list[int], path: str) -> None:
    links = [_connect(follower) for follower in followers]
    client = _accept_one(port)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    acknowledged = [0] * len(links)
    sequence = 0
    while data := client.recv(65536):
        sequence += 1
        for link in links:
            link.sendall(data)
        os.write(fd, data)
        os.fdatasync(fd)
        while max(acknowledged) < sequence:
            readable, _, _ = select.select(links, [], [])
            for link in readable:
                acknowledged[links.index(link)] += len(link.recv(64))
        client.sendall(b"ok")


# --- trio -----------------------------------------------------------------------------------------


async def _trio_connect(port: int) -> trio.SocketStream:
    with trio.fail_after(10):
        while True:
            try:
                return await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.02)


async def _trio_follower(port: int, path: str) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    stream = await listeners[0].accept()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    while data := await stream.receive_some(65536):
        os.write(fd, data)
        os.fdatasync(fd)
        await stream.send_all(b"a")


async def _trio_leader(port: int, followers: list[int], path: str) -> None:
    links = [await _trio_connect(follower) for follower in followers]
    acknowledged = [0] * len(links)
    answered = trio.Condition()

    async def read_answers(index: int) -> None:
        while data := await links[index].receive_some(64):
            acknowledged[index] += len(data)
            async with answered:
                answered.notify_all()

    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        for index in range(len(links)):
            nursery.start_soon(read_answers, index)
        client = await listeners[0].accept()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        sequence = 0
        while data := await client.receive_some(65536):
            sequence += 1
            for link in links:
                await link.send_all(data)
            os.write(fd, data)
            os.fdatasync(fd)
            async with answered:
                while max(acknowledged) < sequence:
                    await answered.wait()
            await client.send_all(b"ok")
        nursery.cancel_scope.cancel()


def trio_follower(port: int, path: str) -> None:
    trio.run(_trio_follower, port, path)


def trio_leader(port: int, followers: list[int], path: str) -> None:
    trio.run(_trio_leader, port, followers, path)


# --- driver ---------------------------------------------------------------------------------------


def measure(
    leader: Callable[[int, list[int], str], None],
    follower: Callable[[int, str], None],
    samples: int,
    gap_ms: float,
) -> dict[str, float]:
    directory = tempfile.mkdtemp(prefix="raftq-floor-")
    leader_port, *follower_ports = free_ports(3)
    processes = [
        multiprocessing.Process(target=follower, args=(port, f"{directory}/f{port}"))
        for port in follower_ports
    ]
    processes.append(
        multiprocessing.Process(
            target=leader, args=(leader_port, follower_ports, f"{directory}/leader")
        )
    )
    for process in processes:
        process.start()
    try:
        client = _connect(leader_port)
        times: list[float] = []
        for _ in range(samples):
            started = time.perf_counter()
            client.sendall(PAYLOAD)
            if not client.recv(16):
                raise RuntimeError("the leader hung up")
            times.append(time.perf_counter() - started)
            time.sleep(gap_ms / 1000)
        client.close()
    finally:
        for process in reversed(processes):  # the leader first: it hangs up on the followers
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        for path in Path(directory).iterdir():
            path.unlink()
        Path(directory).rmdir()
    times.sort()
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
    }


def fdatasync_latency(samples: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile(prefix="raftq-floor-") as file:
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            os.write(file.fileno(), PAYLOAD)
            os.fdatasync(file.fileno())
            times.append(time.perf_counter() - started)
    times.sort()
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--gap-ms", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    samples, gap_ms = arguments.samples, arguments.gap_ms
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "fdatasync": fdatasync_latency(samples),
        "blocking": measure(blocking_leader, blocking_follower, samples, gap_ms),
        "trio": measure(trio_leader, trio_follower, samples, gap_ms),
    }
    if arguments.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return
    print(f"{results['cpus']} CPUs, {arguments.samples} samples {arguments.gap_ms:g} ms apart")
    for name in ("fdatasync", "blocking", "trio"):
        figures = results[name]
        label = {
            "fdatasync": "one write + fdatasync",
            "blocking": "3-process commit, blocking sockets",
            "trio": "3-process commit, Trio streams",
        }[name]
        print(f"{label}: p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms")


if __name__ == "__main__":
    main()
