"""Schedules through a real node (docs/schedules.md): ``raftq schedule`` as a user runs it
(a subprocess: output and exit codes), the client API, the SyncClient, the node's config
file, and the node refusing a bad expression that reached it without the client's checks."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import raftq
from raftq.client.client import CommandRejected
from raftq.errors import ConfigError
from raftq.jobs.commands import PutSchedule, ScheduleSpec
from raftq.node.__main__ import build_parser, config_from
from raftq.node.node import Node, open_node
from raftq.transport.wire import Failure, SubmitCommand
from tests.node_helpers import RawClient, member_map, node_config, the_leader, wait_until


@asynccontextmanager
async def one_node(tmp_path: Path, **options: object) -> AsyncIterator[Node]:
    members = member_map(1)
    async with open_node(node_config("n1", members, tmp_path, **options)) as node:
        await wait_until(lambda: the_leader({"n1": node}) is not None)
        yield node


async def run_raftq(address: str, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "raftq", *arguments, "--cluster", address, "--timeout", "10"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


def fired_slots(node: Node, name: str) -> list[int]:
    prefix = f"schedule:{name}:"
    return sorted(
        int(key[len(prefix) :]) for key in node.applier.machine.keys if key.startswith(prefix)
    )


async def test_the_cli_adds_lists_and_removes_a_schedule_that_fires_each_second(
    tmp_path: Path,
) -> None:
    async with one_node(tmp_path) as node:
        address = node.config.address
        added = await run_raftq(
            address, "schedule", "add", "tick", "--every", "1", "--type", "noop",
            "--payload", '{"n": 1}', "--priority", "5", "--max-attempts", "2",
            "--job-timeout", "120", "--group", "ticks",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        assert added.stdout.decode() == "tick added\n"
        await wait_until(lambda: len(fired_slots(node, "tick")) >= 2, 10)
        listed = await run_raftq(address, "schedule", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        (shown,) = json.loads(listed.stdout)
        assert shown["name"] == "tick"
        assert shown["every_s"] == 1
        assert shown["tz"] is None
        assert shown["payload"] == {"n": 1}
        job_options = ("priority", "max_attempts", "timeout_s", "group")
        assert [shown[option] for option in job_options] == [5, 2, 120, "ticks"]
        machine = node.applier.machine
        fired_job = machine.get(machine.keys[f"schedule:tick:{fired_slots(node, 'tick')[0]}"])
        assert fired_job is not None
        assert (fired_job.priority, fired_job.timeout_ms, fired_job.group) == (5, 120_000, "ticks")
        assert shown["last_fired_ms"] >= fired_slots(node, "tick")[1]
        assert shown["next_ms"] == shown["last_fired_ms"] + 1_000
        text = await run_raftq(address, "schedule", "list")
        assert text.stdout.decode().splitlines()[1].startswith("tick  every 1 s  ")
        removed = await run_raftq(address, "schedule", "remove", "tick")
        assert removed.stdout.decode() == "tick removed\n"
        fired = fired_slots(node, "tick")
        assert fired == sorted(set(fired))
        assert all(later - earlier == 1_000 for earlier, later in itertools.pairwise(fired))
        again = await run_raftq(address, "schedule", "remove", "tick")
        assert again.returncode == 1
        assert again.stderr.decode() == "raftq: no schedule tick\n"


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["--cron", "61 * * * *"], "raftq: bad cron expression '61 * * * *': "),
        (
            ["--cron", "0 3 * * *", "--tz", "Mars/Olympus"],
            "raftq: unknown time zone 'Mars/Olympus'",
        ),
        (["--every", "0.5"], "raftq: every of 0.5 s is out of range"),
        (["--every", "1", "--tz", "UTC"], "raftq: a time zone applies to a cron expression only"),
        (
            ["--every", "1", "--max-attempts", "0"],
            "raftq: bad schedule 's': max_attempts: 0 is out of range",
        ),
        (["--every", "1", "--job-timeout", "-1"], "raftq: timeout of -1.0 s is out of range"),
    ],
)
async def test_a_bad_schedule_exits_2_with_one_line_and_sends_nothing(
    arguments: list[str], problem: str
) -> None:
    # No node at all: the command is refused before it connects.
    result = await run_raftq("127.0.0.1:9", "schedule", "add", "s", "--type", "t", *arguments)
    assert result.returncode == 2
    message = result.stderr.decode()
    assert message.startswith(problem), message
    assert message.count("\n") == 1


async def test_the_client_api_and_the_node_refuse_what_cannot_fire(tmp_path: Path) -> None:
    async with one_node(tmp_path) as node, raftq.connect(node.config.address) as client:
        assert (
            await client.add_schedule("n", "report", cron="0 3 * * *", tz="Asia/Tokyo") == "added"
        )
        assert await client.add_schedule("n", "report", cron="0 3 * * *", tz="Asia/Tokyo") == (
            "unchanged"
        )
        assert await client.add_schedule("n", "report", cron="0 4 * * *") == "updated"
        (shown,) = await client.schedules()
        assert (shown["cron"], shown["tz"], shown["last_fired_ms"]) == ("0 4 * * *", "UTC", None)
        assert shown["next_ms"] % 3_600_000 == 0
        with pytest.raises(ConfigError, match="bad cron expression"):
            await client.add_schedule("bad", "t", cron="not cron")
        with pytest.raises(TypeError, match="'timeout_ms' is not an option of a schedule"):
            await client.add_schedule("bad", "t", every=5, timeout_ms=5)  # type: ignore[call-arg]
        with pytest.raises(CommandRejected, match="no schedule other"):
            await client.remove_schedule("other")
        # A definition that skipped the client's checks is refused by the node, not stored.
        async with RawClient.connect(node.config.address) as raw:
            bad = ScheduleSpec(name="raw", type="t", cron="0 3 * * *", tz="Nowhere/Else")
            reply = await raw.call(SubmitCommand(command=PutSchedule(now_ms=0, schedule=bad)))
        assert isinstance(reply, Failure)
        assert reply.code == "bad_request"
        assert "unknown time zone 'Nowhere/Else'" in reply.message
        assert [each["name"] for each in await client.schedules()] == ["n"]


async def test_the_sync_client_manages_schedules(tmp_path: Path) -> None:
    async with one_node(tmp_path) as node:

        def use() -> list[str]:
            with raftq.SyncClient(node.config.address) as client:
                assert client.add_schedule("hourly", "t", {"a": 1}, cron="0 * * * *") == "added"
                names = [each["name"] for each in client.schedules()]
                client.remove_schedule("hourly")
                return names + [each["name"] for each in client.schedules()]

        assert await trio.to_thread.run_sync(use) == ["hourly"]


async def test_the_config_file_s_schedules_are_put_in_place_when_the_node_leads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        'id = "n1"\n'
        f'cluster = "n1={member_map(1)["n1"]}"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        "[schedules.nightly]\n"
        'cron = "0 3 * * *"\n'
        'tz = "Europe/Berlin"\n'
        'type = "report"\n'
        'payload = {kind = "daily"}\n'
        "[schedules.pulse]\n"
        "every_s = 30\n"
        'type = "ping"\n'
        'catch_up = "all"\n'
        'group = "pings"\n'
        "timeout_s = 90\n"
    )
    config, _ = config_from(build_parser().parse_args(["--config", str(path)]))
    assert [spec.name for spec in config.schedules] == ["nightly", "pulse"]
    async with open_node(config) as node, raftq.connect(config.address) as client:
        await wait_until(lambda: len(node.applier.machine.schedules.by_name) == 2)
        shown = {each["name"]: each for each in await client.schedules()}
        assert shown["nightly"]["payload"] == {"kind": "daily"}
        assert shown["nightly"]["tz"] == "Europe/Berlin"
        assert shown["pulse"]["every_s"] == 30
        assert shown["pulse"]["catch_up"] == "all"
        assert (shown["pulse"]["group"], shown["pulse"]["timeout_s"]) == ("pings", 90)
        assert (shown["nightly"]["group"], shown["nightly"]["timeout_s"]) == (None, 30)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('cron = "0 3 * * *"\nevery_s = 5\ntype = "t"\n', "schedules.s: give a schedule either"),
        ('cron = "0 3 * *"\ntype = "t"\n', "schedules.s: bad cron expression '0 3 * *'"),
        ("every_s = 5\n", "schedules.s.type: is required"),
        ('every_s = 5\ntype = "t"\ncolour = "red"\n', "unknown key schedules.s.colour"),
    ],
)
def test_a_bad_schedule_in_the_config_file_names_it(
    tmp_path: Path, table: str, problem: str
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        f'id = "n1"\ncluster = "n1=127.0.0.1:7100"\ndata_dir = "d"\n[schedules.s]\n{table}'
    )
    with pytest.raises(ConfigError) as refused:
        config_from(build_parser().parse_args(["--config", str(path)]))
    assert problem in str(refused.value)
