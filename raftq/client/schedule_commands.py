"""``raftq schedule add | list | remove`` (CONTRACT.md "Scheduling"; docs/schedules.md).

A bad cron expression, time zone, interval or payload is refused before anything is sent, in
one line on stderr, with exit code 2; an unknown schedule to remove exits 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any

from raftq.client.client import Client
from raftq.client.jobfile import parse_json
from raftq.jobs.commands import CATCH_UP_MODES


def add_schedule_commands(commands: Any, with_timeout: argparse.ArgumentParser) -> None:
    """Add ``schedule`` and its actions to ``commands`` (an argparse subparsers action)."""
    schedule = commands.add_parser(
        "schedule",
        help="cron and interval schedules",
        description="Schedules are replicated: each slot fires one job, keyed "
        "schedule:NAME:SLOT_MS, at most once ever and at least once while the cluster has a "
        "leader (docs/schedules.md).",
    )
    actions = schedule.add_subparsers(dest="schedule_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", parents=[with_timeout], help="add or replace a schedule")
    add.add_argument("name", metavar="NAME")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help='a cron expression, e.g. "0 3 * * *"')
    when.add_argument("--every", type=float, metavar="SECONDS", help="a fixed interval")
    add.add_argument("--tz", metavar="ZONE", help="the cron expression's time zone (default UTC)")
    add.add_argument("--type", dest="job_type", required=True, metavar="TYPE")
    add.add_argument("--payload", default="null", metavar="JSON")
    add.add_argument("--queue", default="default", metavar="Q")
    add.add_argument(
        "--catch-up",
        choices=CATCH_UP_MODES,
        default="latest",
        help="after an outage: fire the latest missed slot (default) or every one",
    )
    jobs = add.add_argument_group("the jobs it fires (as raftq enqueue takes them)")
    jobs.add_argument("--priority", type=int, default=0, metavar="N")
    jobs.add_argument("--max-attempts", type=int, default=3, metavar="N")
    jobs.add_argument(
        "--job-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long one attempt may run (default 30)",
    )
    jobs.add_argument(
        "--group", metavar="G", help="their limit group: limited to 1, runs never overlap"
    )
    listing = actions.add_parser("list", parents=[with_timeout], help="the schedules")
    listing.add_argument("--json", action="store_true")
    remove = actions.add_parser("remove", parents=[with_timeout], help="remove a schedule")
    remove.add_argument("name", metavar="NAME")


async def run_schedule(client: Client, arguments: argparse.Namespace) -> int:
    action = arguments.schedule_command
    if action == "add":
        state = await client.add_schedule(
            arguments.name,
            arguments.job_type,
            parse_json(arguments.payload),
            cron=arguments.cron,
            every=arguments.every,
            tz=arguments.tz,
            queue=arguments.queue,
            catch_up=arguments.catch_up,
            priority=arguments.priority,
            max_attempts=arguments.max_attempts,
            timeout=arguments.job_timeout,
            group=arguments.group,
        )
        print(f"{arguments.name} {state}")
    elif action == "remove":
        await client.remove_schedule(arguments.name)
        print(f"{arguments.name} removed")
    else:
        schedules = await client.schedules()
        if arguments.json:
            print(json.dumps(schedules))
        else:
            print(_table(schedules))
    return 0


def _table(schedules: list[dict[str, Any]]) -> str:
    if not schedules:
        return "no schedules"
    rows = [("NAME", "WHEN", "NEXT (UTC)", "LAST FIRED (UTC)", "TYPE", "QUEUE")]
    for shown in schedules:
        if "cron" in shown:
            when = f"cron {shown['cron']} {shown['tz']}"
        else:
            when = f"every {shown['every_s']} s"
        rows.append(
            (
                shown["name"],
                when,
                _utc(shown["next_ms"]),
                _utc(shown["last_fired_ms"]),
                shown["type"],
                shown["queue"],
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _utc(at_ms: int | None) -> str:
    if at_ms is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(at_ms / 1000, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")
