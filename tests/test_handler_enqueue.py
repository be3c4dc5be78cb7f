"""Enqueueing by handler (issue 13 item 4, docs/handlers.md "Enqueue by handler"): a handler's
parameters after ``job`` declare its payload; its object enqueues jobs of its type with those
arguments, checked before anything is sent; the worker calls it with the payload as arguments;
handlers of the job alone work as before. The tests with a worker run under asyncio and Trio
(tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio

import raftq
from raftq.app import App, JobContext
from raftq.client.jobfile import specs_from_objects
from raftq.handler_function import HandlerFunction
from raftq.jobs.commands import Enqueue
from tests.fake_node import FakeCluster, fake_cluster_in_thread
from tests.test_client_loops import FAST, running

app = App()


@app.handler("resize")
async def resize(job: JobContext, file: str, width: int = 800, *, crop: bool = False) -> object:
    return {"file": file, "width": width, "crop": crop, "attempt": job.attempt}


@app.handler("tag")
def tag(job: JobContext, name: str, **labels: str) -> object:
    return {"name": name, "labels": labels}


@app.handler("legacy")
async def legacy(job: JobContext) -> object:
    return {"payload": job.payload}


class RecordingClient:
    """Stands in for ``raftq.connect``'s client and for a ``SyncClient``: records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object, dict[str, Any]]] = []

    async def enqueue(self, type: str, payload: object = None, **options: Any) -> str:
        return self.enqueue_now(type, payload, **options)

    def enqueue_now(self, type: str, payload: object = None, **options: Any) -> str:
        self.calls.append((type, payload, options))
        return f"id-{len(self.calls)}"


class RecordingSyncClient(RecordingClient):
    def enqueue(self, type: str, payload: object = None, **options: Any) -> str:
        return self.enqueue_now(type, payload, **options)


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    with fake_cluster_in_thread(FakeCluster(("n1",))) as fake:
        yield fake


def test_the_decorator_returns_the_handler_still_callable_as_before() -> None:
    assert isinstance(resize, HandlerFunction)
    assert (resize.__name__, resize.job_type, resize.function.__name__) == (
        "resize",
        "resize",
        "resize",
    )
    job = JobContext(
        id="j", type="tag", queue="default", payload=None, attempt=1, fence=1,
        timeout_ms=1, heartbeat=trio.lowlevel.checkpoint,
    )  # fmt: skip
    assert tag(job, "a", colour="red") == {"name": "a", "labels": {"colour": "red"}}
    assert trio.run(legacy, job) == {"payload": None}


def test_arguments_bind_to_the_payload_by_name() -> None:
    assert resize.payload(file="a.png") == {"file": "a.png"}  # defaults stay the handler's
    assert resize.payload("a.png", 64, crop=True) == {"file": "a.png", "width": 64, "crop": True}
    assert tag.payload("x", colour="red", size="L") == {"name": "x", "colour": "red", "size": "L"}
    assert legacy.payload() is None


async def test_enqueue_sends_the_type_and_the_bound_payload_with_the_options() -> None:
    client = RecordingClient()
    assert await resize.enqueue(client, file="a.png") == "id-1"
    await resize.options(queue="images", priority=5, delay=2, key="k").enqueue(
        client,
        "b.png",
        width=10,
    )
    await legacy.enqueue(client)
    assert client.calls == [
        ("resize", {"file": "a.png"}, {}),
        ("resize", {"file": "b.png", "width": 10}, {
            "queue": "images", "priority": 5, "delay": 2, "key": "k"
        }),
        ("legacy", None, {}),
    ]  # fmt: skip


def test_enqueue_sync_goes_through_the_sync_client() -> None:
    client = RecordingSyncClient()
    assert resize.enqueue_sync(client, file="a.png", width=1) == "id-1"
    assert resize.options(max_attempts=1).enqueue_sync(client, "c.png") == "id-2"
    assert client.calls == [
        ("resize", {"file": "a.png", "width": 1}, {}),
        ("resize", {"file": "c.png"}, {"max_attempts": 1}),
    ]


@pytest.mark.parametrize(
    ("arguments", "keywords", "problem"),
    [
        ((), {}, "missing a required argument: 'file'"),
        ((), {"fille": "a.png"}, "missing a required argument: 'file'"),
        (("a.png",), {"height": 3}, "unexpected keyword argument 'height'"),
        (("a.png", 1, True), {}, "too many positional arguments"),
        (("a.png",), {"file": "b.png"}, "multiple values for argument 'file'"),
    ],
)
async def test_wrong_arguments_raise_type_error_and_send_nothing(
    arguments: tuple[Any, ...], keywords: dict[str, Any], problem: str
) -> None:
    client, sync_client = RecordingClient(), RecordingSyncClient()
    with pytest.raises(TypeError, match=problem):
        await resize.enqueue(client, *arguments, **keywords)
    with pytest.raises(TypeError, match=problem):
        resize.enqueue_sync(sync_client, *arguments, **keywords)
    with pytest.raises(TypeError, match=problem):
        resize.options(queue="q").job(*arguments, **keywords)
    assert client.calls == sync_client.calls == []


async def test_a_handler_of_the_job_alone_takes_no_arguments() -> None:
    client = RecordingClient()
    with pytest.raises(TypeError, match="takes only the job"):
        await legacy.enqueue(client, {"file": "a.png"})
    assert client.calls == []


def test_job_makes_a_job_file_dict_for_enqueue_many() -> None:
    jobs = [resize.job(file="a.png"), resize.options(priority=2, delay=1.5, id="r-1").job("b")]
    assert jobs[1] == {
        "type": "resize", "payload": {"file": "b"}, "queue": "default", "priority": 2,
        "delay_ms": 1500, "max_attempts": 3, "timeout_ms": 30_000, "id": "r-1",
    }  # fmt: skip
    assert resize.options(group="tenant-1").job("c")["group"] == "tenant-1"
    specs = specs_from_objects(jobs)
    assert [(spec.type, spec.priority, spec.id) for spec in specs] == [
        ("resize", 0, ""),
        ("resize", 2, "r-1"),
    ]
    with pytest.raises(raftq.ConfigError, match="delay"):
        resize.options(delay=-1)


def test_options_take_every_option_of_client_enqueue_and_check_them_at_once() -> None:
    """One list of options for ``Client.enqueue``, ``SyncClient.enqueue`` and ``.options()``
    (``EnqueueOptions``): dependencies and a unique key through a handler too."""
    first = resize.options(id="p-1").job("a")
    job = resize.options(
        depends_on=["p-1"], on_parent_failure="run", unique_while_active="thumb:a", group="g"
    ).job("b")
    assert (job["depends_on"], job["on_parent_failure"], job["unique_while_active"]) == (
        ["p-1"], "run", "thumb:a"
    )  # fmt: skip
    parent, child = specs_from_objects([first, job])
    assert (child.depends_on, child.on_parent_failure, child.unique_while_active, child.group) == (
        ("p-1",), "run", "thumb:a", "g"
    )  # fmt: skip
    assert parent.key == "p-1"
    assert "key" not in first  # the id is the key, as in a job file
    with pytest.raises(TypeError, match="'queues' is not an option of a job"):
        resize.options(queues="a")  # type: ignore[call-arg]
    with pytest.raises(raftq.ConfigError, match="on_parent_failure: must be one of"):
        resize.options(on_parent_failure="ignore")
    with pytest.raises(raftq.ConfigError, match="depends_on: names a job twice"):
        resize.options(depends_on=["p-1", "p-1"])


def test_a_handler_whose_parameters_cannot_come_from_a_payload_is_refused() -> None:
    other = App()

    def star_args(job: JobContext, *files: str) -> None: ...
    def positional_only(job: JobContext, file: str, /) -> None: ...
    def no_job() -> None: ...

    for function, problem in (
        (star_args, "'files' cannot be filled"),
        (positional_only, "'file' cannot be filled"),
        (no_job, "must take the job"),
    ):
        with pytest.raises(raftq.ConfigError, match=problem):
            other.handler("bad")(function)
    assert "bad" not in other.types


@pytest.mark.anyio
async def test_the_worker_calls_the_handler_with_the_payload_as_arguments(
    cluster: FakeCluster,
) -> None:
    async with running(cluster, app, concurrency=2) as (client, _):
        ids = [
            await resize.enqueue(client, "a.png", crop=True),
            await tag.enqueue(client, "t", colour="red"),
            await legacy.enqueue(client),
            await client.enqueue("legacy", [1, 2]),
        ]
        ids += await client.enqueue_many([resize.job("b.png", 5), tag.job(name="u")])
        jobs = [await client.wait(job_id, timeout=FAST) for job_id in ids]
    assert [job.result for job in jobs] == [
        {"file": "a.png", "width": 800, "crop": True, "attempt": 1},
        {"name": "t", "labels": {"colour": "red"}},
        {"payload": None},
        {"payload": [1, 2]},
        {"file": "b.png", "width": 5, "crop": False, "attempt": 1},
        {"name": "u", "labels": {}},
    ]


@pytest.mark.anyio
async def test_a_payload_that_does_not_fit_fails_the_job_for_good(cluster: FakeCluster) -> None:
    """A job enqueued by type name (the CLI, another language) with the wrong payload: no
    retry can fix it, so it is dead after one attempt, and the error says what is wrong."""
    async with running(cluster, app) as (client, _):
        wrong_key = await client.enqueue("resize", {"path": "a.png"}, max_attempts=3)
        not_an_object = await client.enqueue("resize", "a.png", max_attempts=3)
        jobs = [await client.wait(job_id, timeout=FAST) for job_id in (wrong_key, not_an_object)]
    assert [(job.state, job.attempts) for job in jobs] == [("dead", 1), ("dead", 1)]
    assert (
        "resize(file, width=800, *, crop=False): missing a required argument: 'file'"
        in jobs[0].error
    )
    assert "the payload is a str, not an object of arguments" in jobs[1].error


@pytest.mark.anyio
async def test_a_value_json_cannot_carry_fails_before_anything_is_sent(
    cluster: FakeCluster,
) -> None:
    async with raftq.connect(cluster.addresses, timeout=FAST) as client:
        with pytest.raises(raftq.ConfigError, match="payload"):
            await resize.enqueue(client, file=object())
        with pytest.raises(TypeError):
            await resize.enqueue(client, files="a.png")
    assert cluster.submitted(Enqueue) == []
