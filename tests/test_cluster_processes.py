"""Real node processes (``python -m raftq.node``) on 127.0.0.1: a cluster forms, serves,
survives kill -9 of its leader, and a restarted node catches up. Every process started is
killed at the end, and holds this test process's lifeline (``raftq.lifeline``): if pytest
itself is killed, the nodes stop too."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from raftq.jobs.commands import Enqueue, EnqueueResult
from raftq.lifeline import Lifeline
from raftq.transport.wire import CommandReply, GetStatus, Redirect, StatusReply, SubmitCommand
from tests.node_helpers import RawClient, free_ports, spec


class ProcessCluster:
    def __init__(self, root: Path, size: int, *extra_flags: str) -> None:
        self.extra_flags = list(extra_flags)
        ports = free_ports(size)
        self.addresses = {f"n{i}": f"127.0.0.1:{port}" for i, port in enumerate(ports, start=1)}
        self.root = root
        self.processes: dict[str, trio.Process] = {}
        self.lifeline: Lifeline | None = None

    def command(self, node: str) -> list[str]:
        members = ",".join(f"{name}={address}" for name, address in self.addresses.items())
        return [
            sys.executable,
            "-m",
            "raftq.node",
            "--id",
            node,
            "--cluster",
            members,
            "--data-dir",
            str(self.root / node),
            "--tick-ms",
            "20",
            "--log-level",
            "warning",
            *self.extra_flags,
        ]

    async def start(self, node: str, command: list[str] | None = None) -> None:
        """Start ``node`` (with ``command``, else its usual one) holding the lifeline."""
        if self.lifeline is None:
            self.lifeline = Lifeline()
        with (self.root / f"{node}.log").open("ab") as log:  # the child keeps its own copy
            self.processes[node] = await trio.lowlevel.open_process(
                [*(command or self.command(node)), *self.lifeline.flags()],
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=self.lifeline.pass_fds,
            )

    async def kill(self, node: str) -> None:
        """kill -9, and reap it."""
        process = self.processes.pop(node)
        process.send_signal(signal.SIGKILL)
        with trio.fail_after(10):
            await process.wait()

    async def stop_all(self) -> None:
        for node in list(self.processes):
            await self.kill(node)
        if self.lifeline is not None:
            self.lifeline.close()
            self.lifeline = None

    async def status(self, node: str) -> StatusReply | None:
        try:
            with trio.fail_after(2):
                async with RawClient.connect(self.addresses[node]) as client:
                    reply = await client.call(GetStatus())
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, AssertionError):
            return None
        return reply if isinstance(reply, StatusReply) else None

    async def leader(self, seconds: float = 15) -> str:
        with trio.fail_after(seconds):
            for _ in range(int(seconds / 0.05)):
                for node in self.processes:
                    status = await self.status(node)
                    if status is not None and status.role == "leader":
                        return node
                await trio.sleep(0.05)
        raise AssertionError("no leader")

    async def enqueue(self, keys: list[str], seconds: float = 20) -> list[str]:
        """Enqueue with idempotency keys, following redirects and retrying across nodes."""
        with trio.fail_after(seconds):
            for _ in range(1000):
                node = await self.leader()
                try:
                    async with RawClient.connect(self.addresses[node]) as client:
                        reply = await client.call(
                            SubmitCommand(
                                command=Enqueue(now_ms=0, jobs=tuple(spec(key=k) for k in keys))
                            )
                        )
                except (OSError, trio.BrokenResourceError, AssertionError):
                    continue
                if isinstance(reply, CommandReply) and isinstance(reply.result, EnqueueResult):
                    return [job.job_id for job in reply.result.jobs]  # type: ignore[union-attr]
                assert isinstance(reply, Redirect | object)
                await trio.sleep(0.05)
        raise AssertionError("enqueue never succeeded")


@asynccontextmanager
async def process_cluster(
    root: Path, size: int = 3, *extra_flags: str
) -> AsyncIterator[ProcessCluster]:
    cluster = ProcessCluster(root, size, *extra_flags)
    try:
        for node in cluster.addresses:
            await cluster.start(node)
        yield cluster
    finally:
        with trio.CancelScope(shield=True):
            await cluster.stop_all()


async def test_a_cluster_survives_kill_9_of_its_leader_and_a_restart(tmp_path: Path) -> None:
    async with process_cluster(tmp_path) as cluster:
        first_leader = await cluster.leader()
        acknowledged: dict[str, str] = {}
        for batch in range(5):
            keys = [f"before-{batch}-{n}" for n in range(20)]
            acknowledged.update(zip(keys, await cluster.enqueue(keys), strict=True))
        await cluster.kill(first_leader)
        for batch in range(5):
            keys = [f"after-{batch}-{n}" for n in range(20)]
            acknowledged.update(zip(keys, await cluster.enqueue(keys), strict=True))
        # A retry of acknowledged keys returns the same ids and enqueues nothing.
        again = await cluster.enqueue(list(acknowledged)[:20])
        assert again == list(acknowledged.values())[:20]
        await cluster.start(first_leader)
        with trio.fail_after(20):
            for _ in range(400):
                statuses = [await cluster.status(node) for node in cluster.addresses]
                if all(s is not None for s in statuses):
                    applied = {s.applied_index for s in statuses if s is not None}
                    pending = {s.jobs["pending"] for s in statuses if s is not None}
                    if len(applied) == 1 and pending == {200}:
                        break
                await trio.sleep(0.05)
            else:
                raise AssertionError(f"nodes never agreed: {statuses}")


async def test_a_second_node_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    async with process_cluster(tmp_path, 1) as cluster:
        await cluster.leader()
        with trio.fail_after(30):
            second = await trio.run_process(cluster.command("n1"), capture_stderr=True, check=False)
        assert second.returncode == 3
        assert b"in use by another raftq process" in second.stderr


async def test_a_corrupt_wal_refuses_to_start_naming_file_and_offset(tmp_path: Path) -> None:
    async with process_cluster(tmp_path, 1) as cluster:
        await cluster.leader()
        await cluster.enqueue([f"k{n}" for n in range(10)])
        await cluster.stop_all()
    (segment,) = sorted((tmp_path / "n1" / "wal").glob("*.log"))
    data = bytearray(segment.read_bytes())
    data[12] ^= 0x40
    segment.write_bytes(bytes(data))
    with trio.fail_after(30):
        result = await trio.run_process(cluster.command("n1"), capture_stderr=True, check=False)
    assert result.returncode == 3
    assert f"wal/{segment.name} at byte 0" in result.stderr.decode()


async def test_bad_arguments_exit_2() -> None:
    with trio.fail_after(30):
        result = await trio.run_process(
            [sys.executable, "-m", "raftq.node", "--id", "n1", "--cluster", "n2=127.0.0.1:1"],
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 2
    assert b"--data-dir is required" in result.stderr or b"error" in result.stderr


async def agreed(
    cluster: ProcessCluster, pending: int, seconds: float = 20, nodes: list[str] | None = None
) -> list[StatusReply]:
    """Every node (of ``nodes``) answers, at the same applied index, with ``pending`` pending
    jobs."""
    statuses: list[StatusReply | None] = []
    with trio.fail_after(seconds):
        for _ in range(int(seconds / 0.05)):
            statuses = [await cluster.status(node) for node in nodes or cluster.addresses]
            ready = [s for s in statuses if s is not None]
            together = len({s.applied_index for s in ready}) == 1
            if (
                len(ready) == len(statuses)
                and together
                and {s.jobs["pending"] for s in ready} == {pending}
            ):
                return ready
            await trio.sleep(0.05)
    raise AssertionError(f"nodes never agreed: {statuses}")


async def test_a_node_restarted_after_compaction_catches_up_by_snapshot(tmp_path: Path) -> None:
    async with process_cluster(tmp_path, 3, "--snapshot-entries", "20") as cluster:
        leader = await cluster.leader()
        follower = next(node for node in cluster.addresses if node != leader)
        await cluster.kill(follower)
        for batch in range(60):  # 60 entries: the others snapshot and compact past them
            await cluster.enqueue([f"k{batch}-{n}" for n in range(5)])
        await cluster.start(follower)
        await agreed(cluster, pending=300)
    snapshots = sorted((tmp_path / follower / "snapshots").glob("*.snap"))
    assert snapshots, "the restarted follower should hold a snapshot"


async def test_sigterm_stops_a_node_cleanly_and_hands_over_leadership(tmp_path: Path) -> None:
    async with process_cluster(tmp_path, 3) as cluster:
        leader = await cluster.leader()
        await cluster.enqueue(["a", "b"])
        process = cluster.processes.pop(leader)
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            code = await process.wait()
        assert code == 0
        new_leader = await cluster.leader(seconds=5)
        assert new_leader != leader
        await cluster.enqueue(["c"])


async def run_cli(*arguments: str, timeout_s: float = 60) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(timeout_s):
        return await trio.run_process(
            [sys.executable, "-m", "raftq", *arguments],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def test_a_thousand_jobs_from_the_cli_and_the_client_run_on_in_process_workers(
    tmp_path: Path,
) -> None:
    import json

    import raftq

    async with process_cluster(tmp_path, 3, "--workers", "4") as cluster:
        await cluster.leader()
        addresses = ",".join(cluster.addresses.values())
        job_file = tmp_path / "jobs.json"
        job_file.write_text(
            json.dumps(
                [{"id": f"cli-{n}", "type": "echo", "payload": {"n": n}} for n in range(500)]
            )
        )
        result = await run_cli("--cluster", addresses, "enqueue", "--file", str(job_file))
        assert result.returncode == 0, result.stderr
        cli_ids = result.stdout.decode().split()
        assert cli_ids == [f"cli-{n}" for n in range(500)]
        async with raftq.connect(addresses, timeout=30) as client:
            client_ids = await client.enqueue_many(
                [{"type": "noop", "payload": {}, "key": f"api-{n}"} for n in range(500)]
            )
            for job_id in cli_ids + client_ids:
                job = await client.wait(job_id, timeout=60)
                assert job.state == "succeeded"
        result = await run_cli("--cluster", addresses, "status", "--json")
        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        assert status["jobs"]["succeeded"] == 1000
        assert len(status["cluster"]["nodes"]) == 3
        statuses = await agreed(cluster, pending=0)
        assert {s.jobs["succeeded"] for s in statuses} == {1000}
        result = await run_cli("--cluster", addresses, "job", "cli-7", "--json")
        job = json.loads(result.stdout)
        assert job["state"] == "succeeded"
        assert job["result"] == {"n": 7}
        assert [event["event"] for event in job["history"]][:2] == ["enqueued", "claimed"]


async def test_a_killed_remote_worker_s_job_is_retried_and_its_late_report_refused(
    tmp_path: Path,
) -> None:
    import raftq

    async with process_cluster(tmp_path, 1) as cluster:
        await cluster.leader()
        address = cluster.addresses["n1"]
        worker_command = [
            sys.executable, "-m", "raftq", "--cluster", address,
            "worker", "--import", "tests.handlers.slow", "--concurrency", "1",
        ]  # fmt: skip
        async with raftq.connect(address, timeout=20) as client:
            job_id = await client.enqueue("slow", {"seconds": 30}, timeout=2.0, key="slow-1")
            first = await trio.lowlevel.open_process(worker_command, stdout=subprocess.DEVNULL)
            try:
                with trio.fail_after(20):
                    while (await client.get(job_id)).state != "running":  # noqa: ASYNC110
                        await trio.sleep(0.05)
                first_fence = (await client.get(job_id)).history[-1].fence
            finally:
                first.send_signal(signal.SIGKILL)  # mid-job: it never reports
                await first.wait()
            # The lease (2 s) expires; the job is retried by another worker.
            second = await trio.lowlevel.open_process(worker_command, stdout=subprocess.DEVNULL)
            try:
                job = await client.wait(job_id, timeout=30)
                assert job.state == "succeeded"
                assert job.result == {"attempt": 2}
            finally:
                second.send_signal(signal.SIGKILL)
                await second.wait()
            # The first worker's report, arriving late with its old fence, is refused.
            try:
                await client.complete(job_id, first_fence, {"late": True})
            except raftq.LeaseLost:
                pass
            else:
                raise AssertionError("a stale fence was accepted")
            job = await client.get(job_id)
            assert job.result != {"late": True}
            events = [event.event for event in job.history]
            assert "lease expired" in events


async def test_kill_9_of_the_leader_under_a_stream_then_of_everyone_loses_nothing(
    tmp_path: Path,
) -> None:
    """Every acknowledged job succeeds exactly once, through a leader crash mid-stream and a
    crash of the whole cluster."""
    import raftq

    async with process_cluster(tmp_path, 3, "--workers", "2") as cluster:
        first_leader = await cluster.leader()
        addresses = ",".join(cluster.addresses.values())
        acknowledged: list[str] = []
        async with raftq.connect(addresses, timeout=30) as client:

            async def stream() -> None:
                for n in range(150):
                    acknowledged.append(
                        await client.enqueue("echo", {"n": n}, key=f"s{n}", timeout=2.0)
                    )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream)
                with trio.fail_after(20):
                    while len(acknowledged) < 50:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                await cluster.kill(first_leader)
            await cluster.start(first_leader)
            for job_id in acknowledged:
                assert (await client.wait(job_id, timeout=60)).state == "succeeded"
        for node in list(cluster.processes):
            await cluster.kill(node)
        for node in cluster.addresses:
            await cluster.start(node)
        await cluster.leader()
        async with raftq.connect(addresses, timeout=30) as client:
            assert len(set(acknowledged)) == 150
            for n, job_id in enumerate(acknowledged):
                job = await client.get(job_id)
                assert job.state == "succeeded"
                assert job.result == {"n": n}
                assert job.attempts >= 1
            status = await client.status()
            assert status["jobs"]["succeeded"] == 150


async def test_garbage_sent_to_a_live_node_is_refused_and_the_node_keeps_serving(
    tmp_path: Path,
) -> None:
    from tests.test_transport import raw_exchange

    async with process_cluster(tmp_path, 1) as cluster:
        await cluster.leader()
        port = int(cluster.addresses["n1"].rpartition(":")[2])
        for garbage in (
            b"\\x16\\x03\\x01 not a frame at all" * 4,
            b"\\xff\\xff\\xff\\xff",
            b"GET / HTTP/1.1\\r\\n\\r\\n",
        ):
            answers = await raw_exchange(port, garbage)
            assert [type(answer).__name__ for answer in answers] == ["ErrorFrame"], answers
        assert await cluster.enqueue(["still-serving"])


async def test_grow_1_to_3_to_5_shrink_to_3_and_replace_a_wiped_node_under_load(
    tmp_path: Path,
) -> None:
    """Membership changes while a producer enqueues and in-process workers run jobs: every
    acknowledged job succeeds, exactly once, on whatever members there are at the end."""
    import json

    import raftq

    cluster = ProcessCluster(tmp_path, 5, "--workers", "2")
    names = list(cluster.addresses)  # n1..n5

    def start_with(node: str, members: list[str]) -> list[str]:
        """Start ``node`` with --cluster listing ``members`` (itself included)."""
        command = cluster.command(node)
        listed = ",".join(f"{m}={cluster.addresses[m]}" for m in members)
        command[command.index("--cluster") + 1] = listed
        return command

    async def start(node: str, members: list[str]) -> None:
        await cluster.start(node, start_with(node, members))

    async def stop(node: str) -> None:
        process = cluster.processes.pop(node)
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await process.wait() == 0

    acknowledged: list[str] = []
    try:
        await start("n1", ["n1"])
        await cluster.leader()
        async with raftq.connect(cluster.addresses["n1"], timeout=30) as client:
            done_producing = trio.Event()

            async def produce() -> None:
                for batch in range(10_000):
                    if done_producing.is_set():
                        return
                    ids = await client.enqueue_many(
                        [
                            {
                                "type": "noop",
                                "payload": {},
                                "key": f"g{batch}-{n}",
                                "timeout_ms": 2000,
                            }
                            for n in range(10)
                        ]
                    )
                    acknowledged.extend(ids)
                    await trio.sleep(0.02)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                # Grow 1 -> 3: n2 through the CLI, n3 through the client library.
                await start("n2", ["n1", "n2"])
                result = await run_cli(
                    "--cluster", cluster.addresses["n1"], "cluster", "add",
                    f"n2={cluster.addresses['n2']}", "--timeout", "30", "--json",
                )  # fmt: skip
                assert result.returncode == 0, result.stderr
                assert json.loads(result.stdout)["voters"] == ["n1", "n2"]
                await start("n3", names[:3])
                await client.add_node("n3", cluster.addresses["n3"])
                # 3 -> 5.
                for node in ("n4", "n5"):
                    await start(node, names)
                    membership = await client.add_node(node, cluster.addresses[node])
                assert membership["voters"] == names
                status = await client.status()
                assert [n["role"] for n in status["cluster"]["nodes"]].count("leader") == 1
                assert len(status["cluster"]["nodes"]) == 5
                # Shrink 5 -> 3 (the removed nodes stop; their jobs are retried elsewhere).
                for node in ("n5", "n4"):
                    await client.remove_node(node)
                    await stop(node)
                # Replace n3: remove it, wipe its data directory, add it back empty.
                leader = status["cluster"]["leader"]
                if leader == "n3":
                    await client.transfer_leader("n1")
                await client.remove_node("n3")
                await stop("n3")
                shutil.rmtree(tmp_path / "n3")
                await start("n3", names[:3])
                membership = await client.add_node("n3", cluster.addresses["n3"])
                assert membership["voters"] == names[:3]
                done_producing.set()
            assert len(acknowledged) >= 50
            with trio.fail_after(60):
                while (await client.status())["jobs"]["succeeded"] < len(acknowledged):  # noqa: ASYNC110
                    await trio.sleep(0.1)
            jobs = {job.id: job for job in await client.list(limit=10_000)}
            for job_id in acknowledged:
                assert jobs[job_id].state == "succeeded", jobs[job_id]
                assert [e.event for e in jobs[job_id].history].count("succeeded") == 1
            statuses = await agreed(cluster, pending=0, nodes=names[:3])
            assert {s.jobs["succeeded"] for s in statuses} == {len(set(acknowledged))}
    finally:
        with trio.CancelScope(shield=True):
            await cluster.stop_all()


async def test_raftq_drain_lets_running_jobs_finish_hands_over_and_exits_0(tmp_path: Path) -> None:
    import json

    import raftq

    async with process_cluster(
        tmp_path, 3, "--workers", "2", "--import", "tests.handlers.slow"
    ) as cluster:
        leader = await cluster.leader()
        addresses = ",".join(cluster.addresses.values())
        async with raftq.connect(addresses, timeout=20) as client:
            # Move leadership to the node that runs the job, so that draining it shows both.
            job_id = await client.enqueue("slow", {"seconds": 1.5}, key="drain-1")
            with trio.fail_after(20):
                while (job := await client.get(job_id)).state != "running":  # noqa: ASYNC110
                    await trio.sleep(0.05)
            runner = job.history[-1].node.split("/")[0]  # claimer ids are "<node>/workers"
            if runner != leader:
                await client.transfer_leader(runner)
            result = await run_cli("--cluster", cluster.addresses[runner], "drain", "--json")
            assert result.returncode == 0, result.stderr
            drained = json.loads(result.stdout)
            assert (drained["id"], drained["role"]) == (runner, "leader")
            with trio.fail_after(20):
                assert await cluster.processes.pop(runner).wait() == 0
            # The job finished on the draining node before it exited: one attempt.
            job = await client.wait(job_id, timeout=10)
            assert job.state == "succeeded"
            assert job.attempts == 1
            assert await cluster.leader() != runner
