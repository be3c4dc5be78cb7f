"""The cost of schedules on the leader (issue 17 "Figures"): three real node processes on
127.0.0.1, fsync on, no workers; the leader's own CPU (user + system, Linux ``/proc``) over
``--seconds``, measured

- ``none``: with no schedule (the idle floor: heartbeats, the steward's lease expiry);
- ``idle``: with ``--schedules`` schedules that do not fire in the window (half cron
  expressions at 03:00 in ten time zones, half hourly intervals, none due in the window): the
  scheduler sleeps until the earliest slot, so they should cost nothing but memory;
- ``firing``: with the same number of schedules every ``--every`` seconds (each slot a log
  entry and a pending job): the cost per firing.

    python benchmarks/bench_schedules.py [--schedules 1000] [--seconds 30] [--every 60] [--json]

Target (issue 17): 1,000 idle schedules cost the leader under 1% of a core.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

import raftq
from raftq.client.client import Client
from raftq.local_cluster import LocalCluster

ZONES = (
    "UTC",
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Africa/Johannesburg",
)


PUTS_IN_FLIGHT = 64
"""Schedules added at once: they batch into few log entries, as many clients would."""


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def leader_of(client: Client) -> str:
    for _ in range(600):
        try:
            leader = (await client.status())["cluster"]["leader"]
        except raftq.NoQuorum:
            leader = None
        if leader:
            return str(leader)
        await trio.sleep(0.05)
    raise RuntimeError("no leader")


async def leader_cpu_share(cluster: LocalCluster, client: Client, seconds: float) -> float:
    """The leader's CPU over ``seconds``, as a share of one core (percent)."""
    pid = cluster.pid(await leader_of(client))
    cpu_started, started = process_cpu_s(pid), time.monotonic()
    await trio.sleep(seconds)
    return 100 * (process_cpu_s(pid) - cpu_started) / (time.monotonic() - started)


async def add_idle_schedules(client: Client, count: int) -> None:
    """Schedules none of which is due within the next hour or so: daily crons at 03:00 in
    ten zones (none fire within ``seconds`` unless run just before a zone's 03:00), and
    hourly intervals (due at the next full hour)."""
    schedules: list[tuple[str, dict[str, Any]]] = []
    for number in range(count):
        if number % 2:
            zone = ZONES[number % len(ZONES)]
            schedules.append((f"cron-{number}", {"cron": "0 3 * * *", "tz": zone}))
        else:
            schedules.append((f"every-{number}", {"every": 3600}))
    await put_all(client, schedules)


async def put_all(client: Client, schedules: list[tuple[str, dict[str, Any]]]) -> None:
    """Add (or replace) every schedule, ``PUTS_IN_FLIGHT`` at a time."""
    limiter = trio.CapacityLimiter(PUTS_IN_FLIGHT)

    async def put(name: str, when: dict[str, Any]) -> None:
        async with limiter:
            await client.add_schedule(name, "noop", {"n": name}, **when)

    async with trio.open_nursery() as nursery:
        for name, when in schedules:
            nursery.start_soon(put, name, when)


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as root:
        cluster = LocalCluster(Path(root), 3)
        try:
            await cluster.start_all()
            async with raftq.connect(cluster.client_addresses, timeout=30) as client:
                await leader_of(client)
                await trio.sleep(2)  # past the start-up elections and first snapshots
                none = await leader_cpu_share(cluster, client, arguments.seconds)
                await add_idle_schedules(client, arguments.schedules)
                assert len(await client.schedules()) == arguments.schedules
                await trio.sleep(2)
                idle = await leader_cpu_share(cluster, client, arguments.seconds)
                every = {"every": arguments.every}
                await put_all(
                    client, [(shown["name"], every) for shown in await client.schedules()]
                )
                await trio.sleep(2)
                fired_before = (await client.status())["jobs"]["pending"]
                firing = await leader_cpu_share(cluster, client, arguments.seconds)
                fired = (await client.status())["jobs"]["pending"] - fired_before
        finally:
            await cluster.stop()
    return {
        "schedules": arguments.schedules,
        "seconds": arguments.seconds,
        "leader_cpu_percent_none": round(none, 2),
        "leader_cpu_percent_idle": round(idle, 2),
        "idle_cost_percent": round(idle - none, 2),
        "every_s": arguments.every,
        "leader_cpu_percent_firing": round(firing, 2),
        "firings": fired,
        "leader_cpu_ms_per_firing": round(
            (firing - none) * 10 * arguments.seconds / max(fired, 1), 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    result = trio.run(run, arguments)
    if arguments.json:
        print(json.dumps(result))
        return
    print(
        f"{result['schedules']} schedules, leader CPU over {result['seconds']:g} s: "
        f"none {result['leader_cpu_percent_none']}% of a core, "
        f"idle {result['leader_cpu_percent_idle']}% (cost {result['idle_cost_percent']}%); "
        f"every {result['every_s']:g} s: {result['leader_cpu_percent_firing']}%, "
        f"{result['firings']} firings, {result['leader_cpu_ms_per_firing']} ms CPU each"
    )


if __name__ == "__main__":
    main()
