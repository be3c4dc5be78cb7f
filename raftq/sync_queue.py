"""``raftq.Queue``: raftq for synchronous code — a single-node cluster with workers, running in
a background thread with its own Trio loop, and blocking methods that call into it.

    with raftq.Queue(data_dir="./data", workers=8, app=app) as queue:
        job_id = queue.enqueue("resize", {"file": "a.png"})
        job = queue.wait(job_id, timeout=30)
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import trio

from raftq.app import App
from raftq.client.client import Client, connect
from raftq.client.job import Job
from raftq.errors import ConfigError
from raftq.ids import NodeId
from raftq.node.config import NodeConfig
from raftq.node.node import open_node
from raftq.transport.network import parse_address

T = TypeVar("T")

START_TIMEOUT_S = 30.0
"""Recovering a large data directory takes a while; more than this is a failure to start."""


class Queue:
    def __init__(
        self,
        data_dir: str = "./raftq-data",
        *,
        workers: int = 8,
        app: App | None = None,
        listen: str = "127.0.0.1:7100",
        fsync: bool = True,
    ) -> None:
        parse_address(listen)
        self._config = NodeConfig(
            node_id=NodeId("n1"),
            members={NodeId("n1"): listen},
            data_dir=data_dir,
            workers=workers,
            fsync=fsync,
        )
        self._app = app
        self._client: Client | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Queue:
        self._thread = threading.Thread(target=self._run, name="raftq-queue", daemon=True)
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S):
            raise ConfigError(f"the raftq node did not start within {START_TIMEOUT_S:g} s")
        if self._failure is not None:
            raise self._failure
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as error:  # handed to the caller's thread
            self._failure = error
            self._started.set()

    async def _main(self) -> None:
        async with (
            open_node(self._config, app=self._app) as node,
            connect(self._config.address) as client,
        ):
            self._client = client
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._started.set()
            await self._stop.wait()
            await node.stop_workers()

    def _call(self, method: Callable[..., Any], *arguments: Any, **options: Any) -> Any:
        if self._token is None:
            raise ConfigError("use the Queue inside a with block")
        return trio.from_thread.run(
            functools.partial(method, *arguments, **options), trio_token=self._token
        )

    def _client_now(self) -> Client:
        if self._client is None:
            raise ConfigError("use the Queue inside a with block")
        return self._client

    def enqueue(self, type: str, payload: object = None, **options: Any) -> str:
        result: str = self._call(self._client_now().enqueue, type, payload, **options)
        return result

    def enqueue_many(self, jobs: list[dict[str, Any]]) -> list[str]:
        result: list[str] = self._call(self._client_now().enqueue_many, jobs)
        return result

    def get(self, job_id: str) -> Job:
        result: Job = self._call(self._client_now().get, job_id)
        return result

    def wait(self, job_id: str, timeout: float = 30.0) -> Job:
        result: Job = self._call(self._client_now().wait, job_id, timeout)
        return result

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call(self._client_now().status)
        return result

    def cancel(self, job_id: str) -> None:
        self._call(self._client_now().cancel, job_id)

    def retry(self, job_id: str) -> None:
        self._call(self._client_now().retry, job_id)
