"""Limits through a node: the client API (async and sync), the CLI (``raftq limit``,
``raftq enqueue --group``) and the job file's ``group`` (CONTRACT.md; docs/limits.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from raftq import limits
from raftq.client.client import CommandRejected, connect
from raftq.client.jobfile import parse_job_file
from raftq.client.sync_client import SyncClient
from raftq.errors import ConfigError
from tests.node_helpers import running_cluster, wait_for_leader


async def run_raftq(*arguments: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "raftq", *arguments],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def test_the_client_sets_lists_and_removes_limits(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, 1) as nodes:
        await wait_for_leader(nodes)
        (node,) = nodes.values()
        async with connect(node.config.address, timeout=10) as client:
            await client.set_limit(group="tenant-1", concurrency=1)
            await client.set_limit(queue="mail", rate=10, per=60)
            ids = [await client.enqueue("t", n, group="tenant-1") for n in range(3)]
            leases = await client.claim("w", max_jobs=10)
            assert [lease.job_id for lease in leases] == ids[:1]
            job = await client.get(ids[1])
            assert job.group == "tenant-1"
            assert job.to_json()["group"] == "tenant-1"
            rows = await client.limits()
            assert rows == [
                {
                    "scope": "group",
                    "name": "tenant-1",
                    "concurrency": 1,
                    "rate": 0,
                    "window_s": 0.0,
                    "running": 1,
                    "pending": 2,
                    "started_in_window": 0,
                },
                {
                    "scope": "queue",
                    "name": "mail",
                    "concurrency": 0,
                    "rate": 10,
                    "window_s": 60.0,
                    "running": 0,
                    "pending": 0,
                    "started_in_window": 0,
                },
            ]
            await client.remove_limit(group="tenant-1")
            assert [lease.job_id for lease in await client.claim("w", max_jobs=10)] == ids[1:]
            with pytest.raises(CommandRejected, match="no limit") as refused:
                await client.remove_limit(group="tenant-1")
            assert refused.value.code == "not_found"


async def test_the_client_refuses_what_is_not_a_limit_before_sending_it(tmp_path: Path) -> None:
    async with connect("127.0.0.1:1", timeout=1) as client:
        for bad, problem in (
            ({"queue": "q", "group": "g", "concurrency": 1}, "exactly one"),
            ({"concurrency": 1}, "exactly one"),
            ({"group": "g"}, "concurrency or a rate"),
            ({"group": "g", "rate": 5}, "count and a window"),
            ({"group": "g", "rate": 5, "per": 0}, "out of range"),
            ({"group": "g", "concurrency": -2}, "concurrency limit must be 1"),
            ({"group": "g", "concurrency": 10**7}, "concurrency must be 1 to"),
            ({"group": "", "concurrency": 1}, "group must be"),
        ):
            with pytest.raises(ConfigError, match=problem):
                await client.set_limit(**bad)  # type: ignore[arg-type]


async def test_a_claim_waiting_for_a_rate_window_gets_its_job_when_the_window_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rate window opens as time passes, with no entry to wake a claim waiting on the
    leader: the wait looks again every ``LIMIT_RECHECK_MS`` (else the claim waited for the
    end of its long poll, here made 5 s long so that the difference is plain)."""
    monkeypatch.setattr(limits, "CLAIM_LONG_POLL_MS", 5_000)
    # No lease expiry entries either: nothing is applied while the claim waits.
    async with running_cluster(tmp_path, 1, expire_interval_ms=600_000) as nodes:
        await wait_for_leader(nodes)
        (node,) = nodes.values()
        async with connect(node.config.address, timeout=20) as client:
            await client.set_limit(queue="q", rate=1, per=0.3)
            first, second = await client.enqueue_many(
                [{"payload": n, "queue": "q"} for n in range(2)]
            )
            assert [lease.job_id for lease in await client.claim("w", max_jobs=2)] == [first]
            started = trio.current_time()
            leases = await client.claim("w", max_jobs=2)  # one long poll
            assert [lease.job_id for lease in leases] == [second]
            assert trio.current_time() - started < 3


async def test_the_sync_client_sets_lists_and_removes_limits(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, 1) as nodes:
        await wait_for_leader(nodes)
        (node,) = nodes.values()

        def in_a_thread() -> list[dict[str, object]]:
            with SyncClient(node.config.address, timeout=10) as client:
                client.set_limit(group="g", concurrency=2, rate=5, per=1)
                job_id = client.enqueue("t", {}, group="g")
                assert client.get(job_id).group == "g"
                rows = client.limits()
                client.remove_limit(group="g")
                assert client.limits() == []
                return rows

        rows = await trio.to_thread.run_sync(in_a_thread)
        assert [(row["name"], row["concurrency"], row["rate"], row["pending"]) for row in rows] == [
            ("g", 2, 5, 1)
        ]


async def test_the_cli_sets_lists_and_removes_limits(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, 1) as nodes:
        await wait_for_leader(nodes)
        (node,) = nodes.values()
        cluster = ("--cluster", node.config.address)
        done = await run_raftq(
            "limit", "set", "--group", "g", "--concurrency", "2", "--rate", "10/60", *cluster
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode() == "group g: at most 2 running, at most 10 started per 60 s\n"
        enqueued = await run_raftq("enqueue", "t", "--group", "g", *cluster)
        assert enqueued.returncode == 0, enqueued.stderr
        job_id = enqueued.stdout.decode().strip()
        shown = await run_raftq("job", job_id, "--json", *cluster)
        assert json.loads(shown.stdout)["group"] == "g"
        text = await run_raftq("job", job_id, *cluster)
        assert "group         g\n" in text.stdout.decode()
        listed = await run_raftq("limit", "list", "--json", *cluster)
        assert listed.returncode == 0, listed.stderr
        [row] = json.loads(listed.stdout)
        assert (row["name"], row["concurrency"], row["rate"], row["window_s"]) == ("g", 2, 10, 60)
        assert row["pending"] == 1
        table = await run_raftq("limit", "list", *cluster)
        assert "group  g" in table.stdout.decode()
        assert "10 started per 60 s" in table.stdout.decode()
        removed = await run_raftq("limit", "remove", "--group", "g", *cluster)
        assert removed.returncode == 0, removed.stderr
        again = await run_raftq("limit", "remove", "--group", "g", *cluster)
        assert again.returncode == 1
        assert b"no limit on group g" in again.stderr
        empty = await run_raftq("limit", "list", *cluster)
        assert empty.stdout == b"no limits\n"


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (("set", "--group", "g"), b"--concurrency N, --rate N/SECONDS"),
        (("set", "--group", "g", "--rate", "ten"), b"give N/SECONDS"),
        (("set", "--group", "g", "--rate", "0/1"), b"rate limit must be 1 or more"),
        (("set", "--queue", "q", "--group", "g", "--concurrency", "1"), b"not allowed with"),
        (("remove",), b"one of the arguments --queue --group is required"),
    ],
)
async def test_the_cli_refuses_bad_limits_with_exit_2(
    arguments: tuple[str, ...], problem: bytes
) -> None:
    result = await run_raftq("limit", *arguments, "--cluster", "127.0.0.1:1", "--timeout", "1")
    assert result.returncode == 2, result
    assert problem in result.stderr


def test_the_job_file_takes_a_group_and_checks_it() -> None:
    [spec] = parse_job_file('[{"payload": 1, "group": "tenant-9"}]')
    assert spec.group == "tenant-9"
    with pytest.raises(ConfigError, match="index 0, field 'group': must be a string"):
        parse_job_file('[{"payload": 1, "group": 7}]')
    with pytest.raises(ConfigError, match="field 'group': 129 characters"):
        parse_job_file(json.dumps([{"payload": 1, "group": "g" * 129}]))
