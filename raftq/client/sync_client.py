"""``raftq.SyncClient``: the client for synchronous programs (Django, Flask, scripts, threads).

    with raftq.SyncClient("127.0.0.1:7100,127.0.0.1:7101") as client:
        job_id = client.enqueue("resize", {"file": "a.png"})
        job = client.wait(job_id, timeout=30)

It does not re-implement the client: one ``raftq.connect`` client runs in one event-loop
thread that AnyIO's blocking portal manages, and every method is a blocking call into it
(STYLE.md 14). That one loop serves every thread of the program at once, so one ``SyncClient``
is meant to be shared: a web server's threads enqueue through it concurrently, their requests
travel on the same connections, and their single enqueues go to the cluster together
(``EnqueueCoalescer``).

Lazy: the loop thread starts and the nodes are dialled on the first call, not in the
constructor, so a client made at import time by a pre-fork server (gunicorn, uWSGI) costs
nothing in the parent. Fork-safe: in a child process the client forgets the parent's loop
thread and sockets (a child cannot use them: the thread does not exist there, and the sockets
are the parent's) and starts its own on its first call. ``close()`` (or leaving ``with``) ends
the loop thread before it returns; it is idempotent, and a closed client raises
``ClientClosed``.
"""

from __future__ import annotations

import builtins
import functools
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Literal, TypeVar, Unpack

from anyio.from_thread import BlockingPortal, start_blocking_portal

from raftq import limits, tracing
from raftq.client.client import Client, JobPage, connect, parse_addresses
from raftq.client.enqueue_coalescer import EnqueueCoalescer
from raftq.client.job import Job
from raftq.client.options import EnqueueOptions, job_spec
from raftq.client.schedules import ScheduleOptions
from raftq.errors import ConfigError, RaftqError
from raftq.jobs.provenance import Story
from raftq.transport.auth import check_secret
from raftq.transport.tls import TlsConfig

T = TypeVar("T")

Backend = Literal["trio", "asyncio"]


class ClientClosed(RaftqError):
    """The ``SyncClient`` was closed: make a new one to go on."""


class _LoopThread:
    """The loop thread of one process: a blocking portal and the client running in it."""

    def __init__(self, portal_context: AbstractContextManager[BlockingPortal]) -> None:
        self.pid = os.getpid()
        self._portal_context = portal_context
        self.portal = portal_context.__enter__()
        self._client_context: AbstractContextManager[Client] | None = None
        self.client: Client | None = None
        self.coalescer: EnqueueCoalescer | None = None

    def open_client(self, open_context: Callable[[], Any]) -> Client:
        self._client_context = self.portal.wrap_async_context_manager(open_context())
        self.client = self._client_context.__enter__()
        self.coalescer = EnqueueCoalescer(self.client)
        return self.client

    def stop(self) -> None:
        """Close the client, then stop the portal and join its thread."""
        try:
            if self._client_context is not None:
                self._client_context.__exit__(None, None, None)
        finally:
            self._portal_context.__exit__(None, None, None)


class SyncClient:
    """A blocking, thread-safe, fork-safe client of the cluster at ``cluster``.

    The arguments are those of ``raftq.connect`` and are checked here, at once: ``timeout``
    (seconds every call retries for), ``secret``, ``tls``, ``cluster_id``. ``backend`` picks
    the event loop of the client's thread (Trio, or asyncio); callers never see it."""

    def __init__(
        self,
        cluster: str | Sequence[str],
        *,
        cluster_id: str = "raftq",
        timeout: float = 10.0,
        secret: bytes | str | None = None,
        tls: TlsConfig | None = None,
        backend: Backend = "trio",
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if backend not in ("trio", "asyncio"):
            raise ConfigError(f"backend must be 'trio' or 'asyncio', not {backend!r}")
        self.addresses = parse_addresses(cluster)
        self.timeout = timeout
        self._connect = functools.partial(
            connect,
            self.addresses,
            cluster_id=cluster_id,
            timeout=timeout,
            secret=None if secret is None else check_secret(secret),
            tls=tls,
        )
        self._backend = backend
        self._lock = threading.Lock()
        """Guards ``_loop`` and ``_closed`` (never held during a call)."""
        self._loop: _LoopThread | None = None
        self._closed = False
        _clients.add(self)

    # --- lifetime -----------------------------------------------------------------------------

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and end the loop thread (joined before this returns). Calls
        still running in other threads end with an error. Idempotent."""
        with self._lock:
            self._closed = True
            loop, self._loop = self._loop, None
        if loop is not None and loop.pid == os.getpid():
            loop.stop()

    @property
    def closed(self) -> bool:
        return self._closed

    def _forget_after_fork(self) -> None:
        """The at-fork hook, in the child. A new lock: the parent's may have been held by a
        thread that does not exist here."""
        self._lock = threading.Lock()
        self._leave_parents_loop()

    def _leave_parents_loop(self) -> None:
        """In a forked child: the parent's loop thread does not exist here and its sockets are
        the parent's. Keep them referenced (``_left_by_fork``) so that no finalizer of the
        parent's loop ever runs here; the next call starts this process's own."""
        if self._loop is not None and self._loop.pid != os.getpid():
            _left_by_fork.append(self._loop)
            self._loop = None

    def _running(self) -> _LoopThread:
        with self._lock:
            if self._closed:
                raise ClientClosed("this SyncClient is closed; make a new one")
            # Also catches a fork that the at-fork hook did not see (a C extension's fork()).
            self._leave_parents_loop()
            if self._loop is None:
                loop = _LoopThread(start_blocking_portal(self._backend, name="raftq-sync-client"))
                try:
                    loop.open_client(self._connect)
                except BaseException:
                    loop.stop()
                    raise
                self._loop = loop
            return self._loop

    def _call(self, method: Callable[[Client], Awaitable[T]], loop: _LoopThread | None = None) -> T:
        loop = loop or self._running()
        assert loop.client is not None, "open_client sets it"
        client = loop.client
        try:
            return loop.portal.call(method, client)
        except Exception as error:
            if self._closed:
                raise ClientClosed("this SyncClient was closed during the call") from error
            raise

    # --- producers ----------------------------------------------------------------------------

    def enqueue(self, type: str, payload: object = None, **options: Unpack[EnqueueOptions]) -> str:
        """``Client.enqueue``: one job; its id once committed. Enqueues that threads make at
        the same time go to the cluster together, as one command (``EnqueueCoalescer``)."""
        # The enqueue span is made here, in the caller's thread, as a child of its span.
        span, (spec,) = tracing.start_enqueue([job_spec(type, payload, options)])
        loop = self._running()
        assert loop.coalescer is not None, "open_client makes it"
        coalescer = loop.coalescer
        try:
            job_id = self._call(lambda client: coalescer.enqueue(spec), loop)
        except BaseException as error:
            tracing.end_enqueue(span, error=error)
            raise
        tracing.end_enqueue(span, [job_id])
        return job_id

    def enqueue_many(self, jobs: Sequence[Mapping[str, Any]]) -> builtins.list[str]:
        """``Client.enqueue_many``: job-file dicts in one command and one commit; their ids."""
        return self._call(lambda client: client.enqueue_many(jobs))

    # --- queries ------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job now; ``JobNotFound`` if there is none."""
        return self._call(lambda client: client.get(job_id))

    def history(self, job_id: str) -> Story:
        """The job's whole story from the log (``Client.history``)."""
        return self._call(lambda client: client.history(job_id))

    def wait(self, job_id: str, timeout: float) -> Job:
        """The job once succeeded, dead or cancelled; the async client's timeout error after
        ``timeout`` seconds."""
        return self._call(lambda client: client.wait(job_id, timeout))

    def status(self) -> dict[str, Any]:
        """The cluster as ``raftq status --json`` shows it."""
        return self._call(lambda client: client.status())

    def jobs(
        self, state: str | None = None, queue: str | None = None, limit: int = 100
    ) -> builtins.list[Job]:
        """Jobs in enqueue order, filtered by state and queue (``Client.list``)."""
        return self._call(lambda client: client.list(state, queue, limit))

    def page(
        self,
        state: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        *,
        cursor: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> JobPage:
        """A page of jobs from ``cursor``, filtered by state, queue and type (``Client.page``)."""
        return self._call(
            lambda client: client.page(
                state, queue, type, cursor=cursor, limit=limit, newest_first=newest_first
            )
        )

    # --- operators ----------------------------------------------------------------------------

    def cancel(self, job_id: str) -> str:
        """Cancel a job; its state after."""
        return self._call(lambda client: client.cancel(job_id))

    def retry(self, job_id: str) -> str:
        """Run a dead or failed job again now; its state after."""
        return self._call(lambda client: client.retry(job_id))

    def retry_dead(
        self,
        queue: str | None = None,
        type: str | None = None,
        limit: int = limits.RETRY_DEAD_JOBS_MAX,
    ) -> int:
        """Retry dead jobs of a queue and type in one command; how many (``Client.retry_dead``)."""
        return self._call(lambda client: client.retry_dead(queue, type, limit))

    def pause(self, queue: str) -> None:
        self._call(lambda client: client.pause(queue))

    def resume(self, queue: str) -> None:
        self._call(lambda client: client.resume(queue))

    def set_limit(
        self,
        *,
        queue: str | None = None,
        group: str | None = None,
        concurrency: int | None = None,
        rate: int | None = None,
        per: float | None = None,
    ) -> None:
        """``Client.set_limit``: at most ``concurrency`` running, ``rate`` started per ``per``
        seconds, for one queue or group."""
        self._call(
            lambda client: client.set_limit(
                queue=queue, group=group, concurrency=concurrency, rate=rate, per=per
            )
        )

    def remove_limit(self, *, queue: str | None = None, group: str | None = None) -> None:
        self._call(lambda client: client.remove_limit(queue=queue, group=group))

    def limits(self) -> builtins.list[dict[str, Any]]:
        """``Client.limits``: every limit with what runs under it now."""
        return self._call(lambda client: client.limits())

    # --- schedules (``Client.add_schedule``, docs/schedules.md) --------------------------------

    def add_schedule(
        self, name: str, type: str, payload: object = None, **options: Unpack[ScheduleOptions]
    ) -> str:
        """Add or replace a schedule; "added", "updated" or "unchanged"."""
        return self._call(lambda client: client.add_schedule(name, type, payload, **options))

    def schedules(self) -> builtins.list[dict[str, Any]]:
        """Every schedule, as ``raftq schedule list --json`` shows it."""
        return self._call(lambda client: client.schedules())

    def remove_schedule(self, name: str) -> None:
        self._call(lambda client: client.remove_schedule(name))


_clients: weakref.WeakSet[SyncClient] = weakref.WeakSet()
"""Every live SyncClient of this process, for the at-fork hook."""

_left_by_fork: builtins.list[_LoopThread] = []
"""A child's references to its parent's loop threads, never used (see ``_forget_after_fork``).
One per client per fork: children of pre-fork servers rarely fork again."""


def _after_fork_in_child() -> None:
    for client in builtins.list(_clients):
        client._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = ["ClientClosed", "SyncClient"]
