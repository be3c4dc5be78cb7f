"""Dependencies and unique keys through every door a user has: the job file, the client API
(asyncio and Trio, and the blocking SyncClient), the CLI flags and ``raftq job``'s text, against
the fake cluster (real TCP, the real job state machine; tests/fake_node.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import raftq
from raftq.client.client import CommandRejected
from raftq.client.jobfile import parse_job_file
from raftq.errors import ConfigError
from raftq.jobs.commands import Enqueue
from tests.fake_node import FakeCluster, fake_cluster_in_thread
from tests.test_client import FAST, cli, trio_only

pytestmark = pytest.mark.anyio


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    with fake_cluster_in_thread(FakeCluster(("n1",))) as fake:
        yield fake


# --- the job file -------------------------------------------------------------------------------


def test_a_job_file_carries_dependencies_and_a_unique_key() -> None:
    specs = parse_job_file(
        json.dumps(
            [
                {"id": "a", "payload": 1},
                {"payload": 2, "depends_on": ["a"], "on_parent_failure": "run"},
                {"payload": 3, "unique_while_active": "nightly"},
            ]
        )
    )
    assert (specs[0].depends_on, specs[0].on_parent_failure) == ((), "cancel")
    assert (specs[1].depends_on, specs[1].on_parent_failure) == (("a",), "run")
    assert specs[2].unique_while_active == "nightly"


@pytest.mark.parametrize(
    ("job", "field", "words"),
    [
        ({"depends_on": "a"}, "depends_on", "must be an array of job ids"),
        ({"depends_on": ["a", "a"]}, "depends_on", "names a job twice"),
        ({"depends_on": ["a", 7]}, "depends_on", "item 1: must be a string"),
        ({"depends_on": [""]}, "depends_on", "item 0: must not be empty"),
        ({"on_parent_failure": "ignore"}, "on_parent_failure", "must be one of 'cancel', 'run'"),
        ({"unique_while_active": 5}, "unique_while_active", "must be a string"),
    ],
)
def test_a_bad_dependency_field_is_refused_with_its_index_and_field(
    job: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(ConfigError, match=f"index 1, field '{field}': {words}"):
        parse_job_file(json.dumps([{"payload": 0}, {"payload": 1, **job}]))


# --- the client ---------------------------------------------------------------------------------


async def test_the_client_enqueues_a_chain_and_sees_it_wait(cluster: FakeCluster) -> None:
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        first = await client.enqueue("echo", 1)
        second = await client.enqueue("echo", 2, depends_on=[first], on_parent_failure="run")
        job = await client.get(second)
        assert (job.state, job.depends_on, job.parents_left) == ("waiting", (first,), 1)
        assert job.on_parent_failure == "run"
        assert (await client.status())["jobs"]["waiting"] == 1
        with pytest.raises(CommandRejected, match="not held"):
            await client.enqueue("echo", depends_on=["no-such-job"])
        with pytest.raises(ConfigError, match="names a job twice"):
            await client.enqueue("echo", depends_on=[first, first])
        with pytest.raises(ConfigError, match="must be one of"):
            await client.enqueue("echo", depends_on=[first], on_parent_failure="maybe")
        assert len(cluster.submitted(Enqueue)) == 3  # the refused-early ones sent nothing


async def test_a_unique_key_returns_the_holder_while_it_is_active(cluster: FakeCluster) -> None:
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        first = await client.enqueue("echo", unique_while_active="nightly")
        assert await client.enqueue("echo", unique_while_active="nightly") == first
        assert await client.cancel(first) == "cancelled"
        later = await client.enqueue("echo", unique_while_active="nightly")
        assert later != first
        assert (await client.get(later)).unique_while_active == "nightly"


def test_the_sync_client_takes_the_same_options(cluster: FakeCluster) -> None:
    with raftq.SyncClient(cluster.addresses, timeout=FAST) as client:
        first = client.enqueue("echo", 1)
        child = client.enqueue("echo", 2, depends_on=[first], unique_while_active="k")
        assert client.get(child).state == "waiting"
        assert client.enqueue("echo", 3, unique_while_active="k") == child


# --- the CLI ------------------------------------------------------------------------------------


@trio_only
async def test_cli_flags_and_the_job_text(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    at = ("--cluster", cluster.addresses)
    _, out, _ = await cli(capsys, "enqueue", "echo", *at)
    first = out.strip()
    _, out, _ = await cli(capsys, "enqueue", "echo", *at)
    second = out.strip()
    code, out, _ = await cli(
        capsys,
        "enqueue",
        "echo",
        "--depends-on",
        first,
        "--depends-on",
        second,
        "--on-parent-failure",
        "run",
        "--unique-while-active",
        "report",
        *at,
    )
    assert code == 0
    child = out.strip()
    code, out, _ = await cli(capsys, "job", child, *at)
    assert code == 0
    assert f"depends_on    {first} {second}, 2 still to finish" in out
    assert "if a parent fails run" in out
    assert "unique while active report" in out
    code, out, _ = await cli(capsys, "job", child, "--json", *at)
    job = json.loads(out)
    assert (job["state"], job["depends_on"], job["parents_left"]) == (
        "waiting",
        [first, second],
        2,
    )
    code, _, err = await cli(capsys, "enqueue", "echo", "--depends-on", "nope", *at)
    assert code == 1
    assert "not held" in err
