"""The client library and the client CLI against a fake cluster (``tests/fake_node.py``): real
TCP and handshake, the real job state machine, scripted failures. Each test names the promise
of CONTRACT.md or DESIGN.md it checks.

The client runs unchanged under asyncio and Trio (CONTRACT.md "Every kind of Python program"),
so every client test runs on both (``anyio_backend``, tests/conftest.py); the fake cluster runs
in a thread of its own, with its own ``trio.run``. The CLI tests run once: the CLI is its own
program, with its own loop."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import attrs
import pytest

import raftq
from raftq.cli import main
from raftq.client.commands import describe
from raftq.client.cursor import decode_cursor, encode_cursor
from raftq.client.job import HistoryEntry, Job
from raftq.client.status import cluster_status
from raftq.jobs.commands import Claim, Enqueue
from raftq.transport.wire import GetJob, Redirect, StatusReply, SubmitCommand
from tests.fake_node import FakeCluster, failure, fake_cluster_in_thread

pytestmark = pytest.mark.anyio

FAST = 2.0
"""Client timeout for tests that expect success: generous, never reached when things work."""

trio_only = pytest.mark.parametrize("anyio_backend", ["trio"])
"""For the CLI tests: the CLI runs its own loop in a thread, whatever the test's loop is."""


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    with fake_cluster_in_thread(FakeCluster(("n1",))) as fake:
        yield fake


@pytest.fixture
def three() -> Iterator[FakeCluster]:
    with fake_cluster_in_thread(FakeCluster(("n1", "n2", "n3"), leader="n2")) as fake:
        yield fake


def closed_port_address() -> str:
    """An address where nothing listens (bound, then closed)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    return f"127.0.0.1:{port}"


# --- Python API: CONTRACT.md "Python API" ---------------------------------------------------------


async def test_enqueue_then_get_returns_the_job_with_its_payload(cluster: FakeCluster) -> None:
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        job_id = await client.enqueue("resize", {"file": "a.png"}, queue="images", priority=5)
        job = await client.get(job_id)
    assert isinstance(job, raftq.Job)
    assert (job.id, job.type, job.queue, job.state) == (job_id, "resize", "images", "pending")
    assert job.payload == {"file": "a.png"}
    assert job.result is None
    assert (job.priority, job.attempts, job.max_attempts) == (5, 0, 3)
    assert [entry.event for entry in job.history] == ["enqueued"]
    assert set(job.to_json()) >= {
        "id", "type", "queue", "state", "priority", "attempts", "max_attempts", "payload",
        "result", "error", "enqueued_ms", "history",
    }  # fmt: skip


async def test_seconds_become_milliseconds(cluster: FakeCluster) -> None:
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        await client.enqueue("noop", delay=1.5, timeout=2.25, max_attempts=7)
    (command,) = cluster.submitted(Enqueue)
    assert isinstance(command, Enqueue)
    (spec,) = command.jobs
    assert (spec.delay_ms, spec.timeout_ms, spec.max_attempts) == (1500, 2250, 7)
    assert spec.payload == b"null"
    assert spec.key  # a key was made up, so a retry dedupes


async def test_enqueue_many_is_one_command_and_keeps_order(cluster: FakeCluster) -> None:
    jobs: list[dict[str, object]] = [{"payload": {"n": n}, "type": "echo"} for n in range(5)]
    jobs.append({"id": "job-001", "payload": {}, "timeout_ms": 5000})  # the seed format
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        ids = await client.enqueue_many(jobs)
        assert ids[-1] == "job-001"
        assert [(await client.get(i)).payload for i in ids[:5]] == [{"n": n} for n in range(5)]
    assert len(cluster.submitted(Enqueue)) == 1


async def test_a_retried_enqueue_is_not_duplicated(cluster: FakeCluster) -> None:
    """DESIGN.md "An enqueue, end to end": the command committed but its answer was lost (a
    leader change, then a reset connection); the client retries with the same key."""
    cluster.inject(failure("dropped"), apply_first=True)
    cluster.inject(failure("no_quorum"), apply_first=True)
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        job_id = await client.enqueue("noop", {"x": 1})
        assert len(await client.list()) == 1
    enqueues = cluster.submitted(Enqueue)
    assert len(enqueues) == 3
    keys = {command.jobs[0].key for command in enqueues if isinstance(command, Enqueue)}
    assert len(keys) == 1
    assert cluster.machine.list_jobs()[0].id == job_id


async def test_the_client_follows_redirects_to_the_leader(three: FakeCluster) -> None:
    follower = three.nodes["n1"].address
    async with raftq.connect(follower, timeout=FAST) as client:
        job_id = await client.enqueue("noop")
        await client.get(job_id)
    nodes = [node for node, call in three.calls]
    assert nodes == ["n1", "n2", "n2"]  # redirected once, then straight to the leader
    assert client.addresses[-1] == three.nodes["n2"].address


async def test_the_client_skips_unreachable_nodes(cluster: FakeCluster) -> None:
    dead = closed_port_address()
    async with raftq.connect([dead, dead, cluster.addresses], timeout=FAST) as client:
        for _ in range(3):  # whichever it starts with
            await client.enqueue("noop")


async def test_retryable_failures_are_retried_across_nodes(three: FakeCluster) -> None:
    three.inject(Redirect(leader_id="", leader_address=""))  # election in progress
    three.inject(failure("shutting_down"))
    three.inject(failure("busy"), times=2)
    async with raftq.connect(three.addresses, timeout=FAST) as client:
        await client.enqueue("noop")
    assert len(three.machine.list_jobs()) == 1


async def test_no_answer_within_the_timeout_is_no_quorum() -> None:
    dead = closed_port_address()
    async with raftq.connect(dead, timeout=0.3) as client:
        started = anyio.current_time()
        with pytest.raises(raftq.NoQuorum, match="cannot connect"):
            await client.enqueue("noop")
    assert 0.3 <= anyio.current_time() - started < 1.0


async def test_a_cluster_that_stays_busy_is_busy(cluster: FakeCluster) -> None:
    cluster.inject(failure("busy"), times=1000)
    async with raftq.connect(cluster.addresses, timeout=0.3) as client:
        with pytest.raises(raftq.Busy):
            await client.enqueue("noop")


async def test_a_stuck_node_is_given_up_on(three: FakeCluster) -> None:
    """One request waits at most ATTEMPT_TIMEOUT_S; here the client's timeout is shorter."""
    three.nodes["n2"].delay = lambda call: 60.0
    async with raftq.connect(three.nodes["n2"].address, timeout=0.3) as client:
        with pytest.raises(raftq.NoQuorum):
            await client.enqueue("noop")


async def test_an_attempt_the_deadline_cuts_short_keeps_what_the_cluster_last_said(
    cluster: FakeCluster,
) -> None:
    """The last attempt may start with little of the timeout left; its running out says
    nothing about the cluster, so the error keeps the cluster's last answer (here: it cannot
    persist). It used to say "no answer in time" (a flaky full-disk test under load)."""
    submits: list[object] = []

    def delay(call: object) -> float:
        if isinstance(call, SubmitCommand):
            submits.append(call)
            return 0.0 if len(submits) == 1 else 60.0  # answered once, then stuck
        return 0.0

    cluster.nodes["n1"].delay = delay
    cluster.inject(failure("storage_error"))
    async with raftq.connect(cluster.addresses, timeout=0.5) as client:
        with pytest.raises(raftq.NoQuorum, match="storage_error"):
            await client.enqueue("noop")
    assert len(submits) >= 2


async def test_errors_map_to_the_contract_exceptions(cluster: FakeCluster) -> None:
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        with pytest.raises(raftq.JobNotFound):
            await client.get("nope")
        with pytest.raises(raftq.JobNotFound):
            await client.cancel("nope")
        job_id = await client.enqueue("noop")
        assert await client.cancel(job_id) == "cancelled"
        with pytest.raises(raftq.CommandRejected) as rejected:
            await client.cancel(job_id)
        assert rejected.value.code == "finished"
        with pytest.raises(raftq.CommandRejected, match="only dead or failed"):
            await client.retry(await client.enqueue("noop"))
        (lease,) = await client.claim("w1", ["noop"])
        with pytest.raises(raftq.LeaseLost):
            await client.complete(lease.job_id, lease.fence + 1)
        assert await client.complete(lease.job_id, lease.fence, {"ok": True}) == "succeeded"
        assert (await client.get(lease.job_id)).result == {"ok": True}


async def test_bad_arguments_are_config_errors(cluster: FakeCluster) -> None:
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        for call in (
            client.enqueue("", {}),
            client.enqueue("noop", priority=10**9),
            client.enqueue("noop", delay=-1),
            client.enqueue("noop", timeout=0),
            client.enqueue("noop", {"bad": float("nan")}),
            client.enqueue("noop", object()),
            client.enqueue_many([{"type": "noop"}]),  # no payload
            client.list(state="sleeping"),
            client.list(limit=0),
        ):
            with pytest.raises(raftq.ConfigError):
                await call
    assert cluster.calls == []  # refused before anything was sent
    with pytest.raises(raftq.ConfigError):
        async with raftq.connect("no-port"):
            pass


async def test_a_wrong_cluster_id_is_a_config_error(cluster: FakeCluster) -> None:
    async with raftq.connect(cluster.addresses, cluster_id="other", timeout=FAST) as client:
        with pytest.raises(raftq.ConfigError, match="wrong_cluster"):
            await client.enqueue("noop")


async def test_list_filters_by_state_and_queue(cluster: FakeCluster) -> None:
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        first = await client.enqueue("noop", queue="a")
        await client.enqueue("noop", queue="b")
        await client.cancel(first)
        assert [j.id for j in await client.list(state="cancelled")] == [first]
        assert [j.queue for j in await client.list(queue="b")] == ["b"]
        assert len(await client.list(limit=1)) == 1


async def test_wait_returns_once_the_job_finished(cluster: FakeCluster) -> None:
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        job_id = await client.enqueue("noop")

        async def finish_later() -> None:
            await anyio.sleep(0.1)
            (lease,) = await client.claim("w1", ["noop"])
            await client.complete(lease.job_id, lease.fence, 42)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(finish_later)
            job = await client.wait(job_id, timeout=FAST)
        assert (job.state, job.result) == ("succeeded", 42)
        with pytest.raises(TimeoutError):
            await client.wait(await client.enqueue("noop"), timeout=0.1)


async def test_requests_share_one_connection_concurrently(cluster: FakeCluster) -> None:
    """Multiplexing: many requests in flight on one connection, matched by request_id, while
    the node answers them out of order."""
    node = cluster.nodes["n1"]
    node.delay = lambda call: 0.05 if isinstance(call, GetJob) and call.job_id == "slow" else 0.0
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        ids = [await client.enqueue("noop", id=f"j{n}") for n in range(20)]
        got: dict[str, str] = {}

        async def get(job_id: str) -> None:
            try:
                got[job_id] = (await client.get(job_id)).id
            except raftq.JobNotFound:
                got[job_id] = "missing"

        async with anyio.create_task_group() as tasks:
            for job_id in ["slow", *ids]:
                tasks.start_soon(get, job_id)
    assert got == {"slow": "missing", **{i: i for i in ids}}
    assert node.clients == 1


async def test_errors_leave_the_client_block_unwrapped(cluster: FakeCluster) -> None:
    """``except raftq.JobNotFound`` works around ``async with raftq.connect(...)``: the
    client's internal nursery does not wrap the caller's errors in an ExceptionGroup."""
    with pytest.raises(raftq.JobNotFound):
        async with raftq.connect(cluster.addresses, timeout=FAST) as client:
            await client.get("nope")


async def test_status_has_the_contract_shape(three: FakeCluster) -> None:
    """CONTRACT.md ``raftq status --json``: every node listed, one unreachable."""
    async with raftq.connect(three.addresses, timeout=FAST) as client:
        await client.enqueue("noop", queue="mail")
        await client.pause("mail")
        await client.status()  # learn every node's id while all answer
        three.in_loop(three.nodes["n3"].stop)
        await anyio.sleep(0.01)
        report = await client.status()
    assert report["cluster"]["leader"] == "n2"
    assert report["cluster"]["term"] == 3
    assert report["cluster"]["commit_index"] == three.index
    roles = {node["id"]: node["role"] for node in report["cluster"]["nodes"]}
    assert roles == {"n1": "follower", "n2": "leader", "n3": "unreachable"}
    for node in report["cluster"]["nodes"]:
        assert set(node) >= {"id", "addr", "role", "term", "commit_index", "applied_index"}
    assert report["jobs"] == {
        "pending": 1, "running": 0, "succeeded": 0, "failed": 0, "dead": 0, "cancelled": 0,
        "waiting": 0,  # CONTRACT.md: blocked on dependencies
    }  # fmt: skip
    assert report["queues"] == {"mail": {"paused": True, "pending": 1, "running": 0}}
    json.dumps(report)


def test_status_totals_count_jobs_ever_enqueued_and_finished() -> None:
    """``totals`` only grow while jobs flow (the dashboard's rates come from them): 10 jobs
    ever enqueued, 4 not finished now, so 6 finished, 2 of them since purged."""
    counts = {"pending": 2, "running": 1, "failed": 1, "succeeded": 3, "dead": 1, "cancelled": 0}
    reply = StatusReply(
        node_id="n1", address="a:1", role="leader", term=2, leader_id="n1", commit_index=9,
        applied_index=9, jobs=counts, queues={}, fsync=True, enqueued_total=10,
    )  # fmt: skip
    report = cluster_status([("a:1", reply)], {})
    assert report["totals"] == {"enqueued": 10, "finished": 6}


async def test_status_with_no_node_answering_is_no_quorum() -> None:
    async with raftq.connect(closed_port_address(), timeout=0.5) as client:
        with pytest.raises(raftq.NoQuorum):
            await client.status()


# --- the CLI: CONTRACT.md "Client commands" -------------------------------------------------------


async def cli(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    """Run ``raftq ARGUMENTS`` in-process (its own trio.run, in a thread)."""
    code = await anyio.to_thread.run_sync(main, list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@trio_only
async def test_cli_enqueue_job_and_jobs(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    at = ("--cluster", cluster.addresses)
    code, out, _ = await cli(capsys, "enqueue", "echo", "--payload", '{"a": 1}', *at)
    assert code == 0
    job_id = out.strip()
    code, out, _ = await cli(capsys, "job", job_id, "--json", *at)
    assert code == 0
    job = json.loads(out)
    assert (job["id"], job["type"], job["payload"], job["state"]) == (
        job_id,
        "echo",
        {"a": 1},
        "pending",
    )
    assert job["history"][0]["event"] == "enqueued"
    code, out, _ = await cli(capsys, "job", job_id, *at)
    assert "history:" in out
    code, out, _ = await cli(capsys, "jobs", "--json", "--state", "pending", *at)
    assert [j["id"] for j in json.loads(out)] == [job_id]
    code, out, _ = await cli(capsys, "jobs", *at)
    assert job_id in out


@trio_only
async def test_cli_jobs_filter_by_type_and_go_on_by_cursor(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """``raftq jobs --type T --limit N`` prints N jobs and, on stderr, the cursor that goes on;
    ``--cursor C`` goes on from there (``--json`` then prints the page object), to the end."""
    at = ("--cluster", cluster.addresses)
    async with raftq.connect(cluster.addresses, timeout=5) as client:
        ids = await client.enqueue_many(
            [{"type": "a" if n % 3 else "b", "payload": n} for n in range(10)]
        )
    of_type_a = [job_id for n, job_id in enumerate(ids) if n % 3]
    code, out, err = await cli(capsys, "jobs", "--type", "a", "--limit", "4", *at)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == of_type_a[:4]
    (cursor,) = re.findall(r"^next cursor: (\S+)$", err, re.MULTILINE)
    code, out, err = await cli(capsys, "jobs", "--type", "a", "--cursor", cursor, "--json", *at)
    assert code == 0
    page = json.loads(out)
    assert [job["id"] for job in page["jobs"]] == of_type_a[4:]
    assert page["next_cursor"] is None
    assert err == ""
    code, out, _ = await cli(capsys, "jobs", "--cursor", "start", "--limit", "2", "--json", *at)
    first = json.loads(out)
    assert [job["id"] for job in first["jobs"]] == ids[:2]
    assert decode_cursor(first["next_cursor"], "oldest") > 0  # the HTTP API's cursors
    code, out, _ = await cli(capsys, "jobs", "--type", "b", "--json", *at)  # no --cursor: a list
    assert [job["id"] for job in json.loads(out)] == ids[::3]


@trio_only
@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (("--cursor", "nonsense"), "--cursor: 'nonsense' is not a cursor that raftq made"),
        (("--cursor", encode_cursor(5, "newest")), "made for order=newest, not oldest"),
        (("--limit", "0"), "--limit must be from 1 to 10000, not 0"),
        (("--limit", "10001"), "--limit must be from 1 to 10000"),
    ],
)
async def test_cli_jobs_bad_cursor_or_limit_is_exit_2_with_a_clear_error(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], arguments: tuple[str, ...], words: str
) -> None:
    code, out, err = await cli(capsys, "jobs", *arguments, "--cluster", cluster.addresses)
    assert (code, out) == (2, "")
    assert words in err
    assert err.count("\n") == 1


def test_cli_jobs_help_names_every_option() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "raftq", "jobs", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    for option in ("--state", "--queue Q", "--type T", "--limit N", "--cursor C", "--json"):
        assert option in help_text, option
    assert "next cursor" in help_text


def test_raftq_job_shows_each_failed_attempts_error_by_its_last_line() -> None:
    entry = HistoryEntry(at_ms=5, event="failed", attempt=1, node="", fence=2, index=3)
    job = Job(
        id="j", type="t", queue="q", state="failed", priority=0, attempts=1, max_attempts=3,
        payload=None, result=None, error="Traceback ...\nValueError: last", enqueued_ms=0,
        run_at_ms=0, timeout_ms=1, finished_ms=0,
        history=(attrs.evolve(entry, error="Traceback ...\nKeyError: 'first'\n"), entry,
                 attrs.evolve(entry, error=" \n ")),
    )  # fmt: skip
    text = describe(job)
    assert "  5  failed  attempt=1  fence=2\n    error: KeyError: 'first'\n" in text
    assert text.count("    error:") == 1  # an event without an error (or a blank one) shows none


@trio_only
async def test_cli_enqueue_file_prints_one_id_per_line(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"id": f"job-{n:03}", "payload": {"n": n}} for n in range(3)]))
    code, out, _ = await cli(capsys, "enqueue", "--file", str(jobs), "--cluster", cluster.addresses)
    assert (code, out.split()) == (0, ["job-000", "job-001", "job-002"])
    # the same file again: every key was seen, nothing new is enqueued
    code, out, _ = await cli(capsys, "enqueue", "--file", str(jobs), "--cluster", cluster.addresses)
    assert (code, out.split()) == (0, ["job-000", "job-001", "job-002"])
    assert len(cluster.machine.list_jobs()) == 3


@trio_only
async def test_cli_a_bad_job_file_exits_2_naming_index_and_field(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"payload": 1}, {"payload": 2, "priority": "high"}]))
    code, out, err = await cli(
        capsys, "enqueue", "--file", str(jobs), "--cluster", cluster.addresses
    )
    assert (code, out) == (2, "")
    assert "index 1, field 'priority'" in err
    assert cluster.calls == []


@trio_only
async def test_cli_exit_codes(cluster: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    at = ("--cluster", cluster.addresses)
    assert (await cli(capsys, "job", "nope", *at))[0] == 1
    assert (await cli(capsys, "cancel", "nope", *at))[0] == 1
    assert (await cli(capsys, "enqueue", "noop", "--payload", "{bad", *at))[0] == 2
    assert (await cli(capsys, "enqueue", *at))[0] == 2  # neither TYPE nor --file
    dead = closed_port_address()
    code, _, err = await cli(capsys, "status", "--cluster", dead, "--timeout", "0.3")
    assert code == 4, err
    code, _, err = await cli(capsys, "--timeout", "0.3", "enqueue", "noop", "--cluster", dead)
    assert code == 4, err


@trio_only
async def test_cli_operator_commands(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    at = ("--cluster", cluster.addresses)
    code, out, _ = await cli(capsys, "enqueue", "fail", "--max-attempts", "1", *at)
    job_id = out.strip()
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        (lease,) = await client.claim("w1", ["fail"])
        await client.fail(lease.job_id, lease.fence, "boom")
    assert (await cli(capsys, "retry", job_id, *at))[:2] == (0, f"{job_id} pending\n")
    assert (await cli(capsys, "cancel", job_id, *at))[:2] == (0, f"{job_id} cancelled\n")
    assert (await cli(capsys, "pause", "q1", *at))[:2] == (0, "q1 paused\n")
    code, out, _ = await cli(capsys, "status", "--json", *at)
    assert json.loads(out)["queues"]["q1"]["paused"] is True
    assert (await cli(capsys, "resume", "q1", *at))[:2] == (0, "q1 resumed\n")
    code, out, _ = await cli(capsys, "status", *at)
    assert code == 0
    assert "leader n1" in out


@trio_only
async def test_cli_enqueue_wait_prints_the_finished_job(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    async def work() -> None:
        async with raftq.connect(cluster.addresses, timeout=FAST) as client:
            for _ in range(1000):  # bounded: 10 s at most
                if leases := await client.claim("w1", ["echo"]):
                    break
                await anyio.sleep(0.01)
            await client.complete(leases[0].job_id, leases[0].fence, {"done": True})

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(work)
        code, out, _ = await cli(
            capsys, "enqueue", "echo", "--wait", "--cluster", cluster.addresses
        )
    assert code == 0
    job_id, finished = out.splitlines()
    assert json.loads(finished)["result"] == {"done": True}
    assert json.loads(finished)["id"] == job_id
    assert cluster.submitted(Claim)


@trio_only
async def test_the_raftq_command_reads_raftq_cluster(cluster: FakeCluster) -> None:
    """The real entry point, as a subprocess: $RAFTQ_CLUSTER, stdout, exit code."""
    with anyio.fail_after(30):
        result = await anyio.run_process(
            [sys.executable, "-m", "raftq", "enqueue", "noop", "--key", "k1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=False,
            env={"RAFTQ_CLUSTER": cluster.addresses, "PATH": ""},
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == cluster.machine.list_jobs()[0].id
    assert isinstance(cluster.calls[0][1], SubmitCommand)
