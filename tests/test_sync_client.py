"""``raftq.SyncClient`` against a real 3-node cluster (CONTRACT.md "Every kind of Python
program"): every method blocks and returns what the async client returns, one client serves
many threads at once, a client made before a fork works in the child (and still in the
parent), and a closed client says so and leaves no thread behind."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
import trustme

import raftq
from raftq.local_cluster import LocalCluster
from tests.process_cluster import process_cluster

THREADS = 8
ENQUEUES_PER_THREAD = 25
CHILD_DEADLINE_S = 60.0
"""A forked child enqueues and waits for one job: seconds; this only bounds a hung child."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with process_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture(params=["trio", "asyncio"])
def client(cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[raftq.SyncClient]:
    """On either loop in its thread: the client runs the same under both."""
    with raftq.SyncClient(
        cluster.client_addresses, timeout=20, backend=request.param
    ) as sync_client:
        yield sync_client


def loop_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "raftq-sync-client"]


def test_every_method_blocks_and_returns_what_the_async_client_returns(
    client: raftq.SyncClient,
) -> None:
    job_id = client.enqueue("echo", {"file": "a.png"}, key="sync:a.png")
    assert client.enqueue("echo", {"file": "a.png"}, key="sync:a.png") == job_id  # deduped
    job = client.wait(job_id, timeout=20)
    assert (job.state, job.result) == ("succeeded", {"file": "a.png"})
    assert client.get(job_id).to_json() == job.to_json()
    assert job_id in [each.id for each in client.jobs(state="succeeded", limit=1000)]

    ids = client.enqueue_many([{"type": "noop", "payload": n} for n in (1, 2)])
    assert [client.wait(each, timeout=20).payload for each in ids] == [1, 2]

    paused = f"paused-{uuid.uuid4().hex}"  # the cluster is the module's: a queue of our own
    client.pause(paused)
    held = client.enqueue("noop", queue=paused)
    assert [job.state for job in client.jobs(queue=paused)] == ["pending"]
    assert client.cancel(held) == "cancelled"
    client.resume(paused)

    dead = client.enqueue("fail", {"message": "no"}, max_attempts=1)
    assert client.wait(dead, timeout=20).state == "dead"
    assert client.retry(dead) == "pending"

    status = client.status()
    assert status["cluster"]["leader"] in {"n1", "n2", "n3"}
    assert len(status["cluster"]["nodes"]) == 3


def test_errors_are_the_async_clients_and_bad_arguments_fail_before_sending(
    client: raftq.SyncClient,
) -> None:
    with pytest.raises(raftq.JobNotFound):
        client.get("no-such-job")
    with pytest.raises(raftq.ConfigError, match="priority"):
        client.enqueue("noop", priority="high")  # type: ignore[arg-type]
    with pytest.raises(raftq.ConfigError, match="state"):
        client.jobs(state="lost")
    with pytest.raises(TimeoutError):  # the async client's own timeout error
        client.wait(client.enqueue("noop", delay=60), timeout=0.2)
    with pytest.raises(raftq.ConfigError, match="timeout"):
        raftq.SyncClient("127.0.0.1:7100", timeout=0)
    with pytest.raises(raftq.ConfigError, match="HOST:PORT"):
        raftq.SyncClient("no port here")
    with pytest.raises(raftq.ConfigError, match="at least"):
        raftq.SyncClient("127.0.0.1:7100", secret="short")
    with pytest.raises(raftq.ConfigError, match="backend"):
        raftq.SyncClient("127.0.0.1:7100", backend="gevent")  # type: ignore[arg-type]


def test_one_client_serves_eight_threads_at_once(client: raftq.SyncClient) -> None:
    """Every thread's enqueues come back with their own ids, and every job is there."""
    queue = f"threads-{uuid.uuid4().hex}"  # the cluster is the module's: a queue of our own
    ids: list[list[str]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []

    def produce(number: int) -> None:
        try:
            for n in range(ENQUEUES_PER_THREAD):
                ids[number].append(client.enqueue("noop", [number, n], queue=queue))
        except BaseException as error:  # reported by the test thread
            errors.append(error)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    every_id = [job_id for batch in ids for job_id in batch]
    assert len(every_id) == len(set(every_id)) == THREADS * ENQUEUES_PER_THREAD
    stored = client.jobs(queue=queue, limit=1000)
    assert {job.id for job in stored} == set(every_id)
    assert {job.id: job.payload for job in stored} == {
        job_id: [number, n] for number, batch in enumerate(ids) for n, job_id in enumerate(batch)
    }
    assert len(loop_threads()) == 1  # one loop thread served them all


def enqueue_and_wait_in_child(client: raftq.SyncClient, answer: Connection) -> None:
    try:
        job_id = client.enqueue("echo", {"from": "child"})
        job = client.wait(job_id, timeout=20)
        answer.send((job_id, job.state, job.result, len(loop_threads())))
    except BaseException as error:
        answer.send(("error", repr(error)))


def run_in_forked_child(client: raftq.SyncClient) -> tuple[object, ...]:
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=enqueue_and_wait_in_child, args=(client, sender))
    child.start()
    try:
        assert receiver.poll(CHILD_DEADLINE_S), "the forked child did not answer"
        answer: tuple[object, ...] = receiver.recv()
        child.join(CHILD_DEADLINE_S)
        assert child.exitcode == 0
        return answer
    finally:
        if child.is_alive():
            child.kill()
            child.join()


@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
@pytest.mark.parametrize("used_before_fork", [True, False], ids=["running", "lazy"])
def test_a_client_made_before_a_fork_works_in_the_child_and_still_in_the_parent(
    cluster: LocalCluster, used_before_fork: bool
) -> None:
    """A pre-fork server (gunicorn) makes the client at import; each worker process forks from
    it. The child gets neither the parent's loop thread nor its sockets: it starts its own."""
    with raftq.SyncClient(cluster.client_addresses, timeout=20) as client:
        if used_before_fork:
            client.wait(client.enqueue("noop"), timeout=20)  # loop thread and sockets open
        job_id, state, result, child_threads = run_in_forked_child(client)
        assert (state, result, child_threads) == ("succeeded", {"from": "child"}, 1)
        again = client.enqueue("echo", {"from": "parent"})
        assert client.wait(again, timeout=20).result == {"from": "parent"}
        assert client.get(str(job_id)).result == {"from": "child"}
        assert len(loop_threads()) == 1


def test_close_is_idempotent_ends_the_loop_thread_and_a_closed_client_says_so(
    cluster: LocalCluster,
) -> None:
    client = raftq.SyncClient(cluster.client_addresses, timeout=20)
    assert not loop_threads()  # lazy: nothing runs before the first call
    client.enqueue("noop")
    assert len(loop_threads()) == 1
    client.close()
    assert not loop_threads()
    client.close()
    assert client.closed
    with pytest.raises(raftq.ClientClosed, match="closed"):
        client.enqueue("noop")
    with raftq.SyncClient(cluster.client_addresses) as scoped:
        scoped.status()
    assert scoped.closed
    assert not loop_threads()


def test_the_secret_and_tls_reach_every_connection(tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    certificate.cert_chain_pems[0].write_to_path(str(tmp_path / "node.pem"))
    certificate.private_key_pem.write_to_path(str(tmp_path / "node.key"))
    secret = b"correct horse battery staple 42"
    (tmp_path / "secret").write_bytes(secret)
    (tmp_path / "secret").chmod(0o600)
    flags = [
        "--secret-file", str(tmp_path / "secret"),
        "--tls-cert", str(tmp_path / "node.pem"),
        "--tls-key", str(tmp_path / "node.key"),
        "--tls-ca", str(tmp_path / "ca.pem"),
    ]  # fmt: skip
    tls = raftq.TlsConfig(ca_file=str(tmp_path / "ca.pem"))
    with process_cluster(tmp_path / "nodes", 1, workers=1, extra_flags=flags) as node:
        with raftq.SyncClient(node.client_addresses, secret=secret, tls=tls, timeout=20) as good:
            assert good.wait(good.enqueue("echo", 7), timeout=20).result == 7
        with (
            raftq.SyncClient(node.client_addresses, tls=tls, timeout=20) as no_secret,
            pytest.raises(raftq.ConfigError, match="auth_required"),
        ):
            no_secret.enqueue("noop")


def test_page_and_retry_dead_block_and_return_what_the_async_client_returns(
    client: raftq.SyncClient,
) -> None:
    queue = f"page-{uuid.uuid4().hex}"
    ids = client.enqueue_many(
        [{"type": "fail", "payload": {}, "max_attempts": 1, "queue": queue} for _ in range(3)]
    )
    assert [client.wait(each, timeout=20).state for each in ids] == ["dead"] * 3
    first = client.page(state="dead", queue=queue, type="fail", limit=2)
    assert [job.id for job in first.jobs] == ids[:2]
    assert first.cursor is not None
    rest = client.page(state="dead", queue=queue, cursor=first.cursor, limit=2)
    assert ([job.id for job in rest.jobs], rest.cursor) == (ids[2:], None)
    newest = client.page(queue=queue, newest_first=True, limit=3)
    assert [job.id for job in newest.jobs] == ids[::-1]
    client.pause(queue)  # retried jobs stay pending
    assert client.retry_dead(queue=queue, type="fail", limit=2) == 2
    assert client.retry_dead(queue=queue) == 1
    assert {client.get(each).state for each in ids} == {"pending"}
    with pytest.raises(raftq.ConfigError):
        client.page(state="sleeping")
    with pytest.raises(raftq.ConfigError):
        client.retry_dead(limit=0)
