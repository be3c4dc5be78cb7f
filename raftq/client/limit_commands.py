"""``raftq limit set|list|remove`` (CONTRACT.md "Scheduling"; docs/limits.md).

Registered by ``raftq.client.commands``, which connects, runs these, and maps errors to exit
codes (a bad value: 2; a rejected change: 1).
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from raftq.client.client import Client
from raftq.errors import ConfigError

RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d*)?|\.\d+)\s*$")
"""``--rate N/SECONDS``: a whole count of jobs per a window in seconds (``10/1``, ``100/60``,
``5/0.5``)."""


def add_limit_parser(commands: Any, connection: argparse.ArgumentParser) -> None:
    limit = commands.add_parser(
        "limit",
        help="concurrency and rate limits per queue or group",
        description="At most N jobs of a queue or group running at once (--concurrency), at "
        "most N started per window of SECONDS (--rate N/SECONDS, a sliding window), exact "
        "across the cluster and failover. A job counts from the claim that hands it out "
        "until it finishes, fails, is released or its lease expires. Jobs held back wait "
        "pending; jobs behind them in the queue run.",
    )
    actions = limit.add_subparsers(dest="limit_command", metavar="ACTION", required=True)
    set_limit = actions.add_parser("set", parents=[connection], help="set or replace a limit")
    remove = actions.add_parser("remove", parents=[connection], help="remove a limit")
    for action in (set_limit, remove):
        scope = action.add_mutually_exclusive_group(required=True)
        scope.add_argument("--queue", metavar="Q")
        scope.add_argument("--group", metavar="G")
    set_limit.add_argument(
        "--concurrency", type=int, metavar="N", help="at most N of its jobs running at once"
    )
    set_limit.add_argument(
        "--rate", metavar="N/SECONDS", help="at most N of its jobs started per SECONDS"
    )
    listing = actions.add_parser(
        "list", parents=[connection], help="every limit, with what runs and waits under it"
    )
    listing.add_argument("--json", action="store_true")


async def run_limit(client: Client, arguments: argparse.Namespace) -> int:
    """One ``raftq limit`` action; 0 when done (failures raise)."""
    action = arguments.limit_command
    if action == "list":
        rows = await client.limits()
        print(json.dumps(rows) if arguments.json else describe_limits(rows))
        return 0
    scope = {"queue": arguments.queue} if arguments.queue is not None else {}
    scope |= {"group": arguments.group} if arguments.group is not None else {}
    what = " ".join(f"{key} {value}" for key, value in scope.items())
    if action == "remove":
        await client.remove_limit(**scope)
        print(f"{what}: limit removed")
        return 0
    if arguments.concurrency is None and arguments.rate is None:
        raise ConfigError("limit set needs --concurrency N, --rate N/SECONDS, or both")
    rate, per = parse_rate(arguments.rate) if arguments.rate is not None else (None, None)
    await client.set_limit(**scope, concurrency=arguments.concurrency, rate=rate, per=per)
    print(f"{what}: {_limit_text(arguments.concurrency or 0, rate or 0, per or 0.0)}")
    return 0


def parse_rate(text: str) -> tuple[int, float]:
    """``N/SECONDS`` as (N, seconds)."""
    match = RATE.match(text)
    if match is None:
        raise ConfigError(f"--rate {text!r}: give N/SECONDS, e.g. 10/1 or 100/60")
    return int(match.group(1)), float(match.group(2))


def _limit_text(concurrency: int, rate: int, window_s: float) -> str:
    parts = [f"at most {concurrency} running"] if concurrency else []
    parts += [f"at most {rate} started per {window_s:g} s"] if rate else []
    return ", ".join(parts)


def describe_limits(rows: list[dict[str, Any]]) -> str:
    """``raftq limit list``: one line per limit."""
    if not rows:
        return "no limits"
    lines = [f"{'SCOPE':<6} {'NAME':<24} {'LIMIT':<50} {'RUNNING':>7} {'PENDING':>7} STARTED"]
    for row in rows:
        limit = _limit_text(row["concurrency"], row["rate"], row["window_s"])
        started = f"{row['started_in_window']}/{row['rate']}" if row["rate"] else "-"
        lines.append(
            f"{row['scope']:<6} {row['name']:<24} {limit:<50} "
            f"{row['running']:>7} {row['pending']:>7} {started}"
        )
    return "\n".join(lines)
