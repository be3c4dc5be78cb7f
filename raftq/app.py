"""Handlers: ``raftq.App`` maps job types to the functions that run them.

```python
app = raftq.App()

@app.handler("resize")
async def resize(job: raftq.JobContext) -> object:
    ...
    return {"ok": True}
```

An ``App`` is plain data: it runs nothing itself. A worker (``raftq.client.worker``, or a
node's in-process workers) claims jobs of the App's types and calls the handlers. Async handlers
run in the worker's nursery; sync ones (``def``) in a worker thread, so a blocking handler never
stalls the event loop. Every App starts with the built-in types ``noop``, ``sleep``, ``echo``
and ``fail``, which need no code deployed: demos, benchmarks and smoke tests use them.

Handlers a module registers with the module-level ``raftq.handler`` decorator go to the default
App, which ``load_app`` merges in: so ``--import MODULE`` works whether the module defines an
``app`` or only decorates functions.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio
import anyio.from_thread
import attrs

from raftq import limits
from raftq.errors import ConfigError, RaftqError
from raftq.handler_function import HandlerFunction, describe, payload_signature

Handler = Callable[["JobContext"], Any]
"""``async def f(job) -> JSON-able`` or ``def f(job) -> JSON-able``."""

P = ParamSpec("P")
R = TypeVar("R")

SLEEP_MS_MAX = 24 * 60 * 60 * 1000
"""The built-in ``sleep`` refuses to sleep longer than a day: longer is a typo."""


class JobFailed(RaftqError):
    """Raise it from a handler to fail the attempt with just this message (no traceback)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Fail(JobFailed):
    """``raise raftq.Fail("why")``: the job fails for good, dead at once with this message,
    however many attempts it has left (input no retry can fix)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class Retry(RaftqError):
    """``raise raftq.Retry(delay_s=...)``: run the job again ``delay_s`` seconds from now,
    giving this attempt back (a snooze: it does not count against ``max_attempts``). A job
    may snooze ``limits.JOB_SNOOZES_MAX`` times; the next snooze ends it dead, saying so."""

    def __init__(self, delay_s: float = 0.0) -> None:
        delay_ms_max = limits.SNOOZE_MS_MAX
        if isinstance(delay_s, bool) or not isinstance(delay_s, int | float):
            raise TypeError(f"raftq.Retry: delay_s must be a number of seconds, not {delay_s!r}")
        if not 0 <= delay_s * 1000 <= delay_ms_max:  # NaN fails this too
            raise ValueError(f"raftq.Retry: delay_s must be from 0 to {delay_ms_max // 1000}")
        super().__init__(f"retry in {delay_s} s")
        self.delay_ms = round(delay_s * 1000)
        """The snooze in whole milliseconds: what the cluster is told."""


def _no_progress(value: object) -> None:
    raise ConfigError("this job context reports no progress (it was not made by a worker)")


class JobContext:
    """What a handler gets: the job, and a way to keep its lease alive."""

    __slots__ = (
        "_heartbeat",
        "_progress",
        "attempt",
        "fence",
        "id",
        "payload",
        "queue",
        "timeout_ms",
        "type",
    )

    def __init__(
        self,
        *,
        id: str,
        type: str,
        queue: str,
        payload: Any,
        attempt: int,
        fence: int,
        timeout_ms: int,
        heartbeat: Callable[[], Awaitable[None]],
        progress: Callable[[object], None] = _no_progress,
    ) -> None:
        self.id = id
        self.type = type
        self.queue = queue
        self.payload = payload
        """The payload, decoded from JSON."""
        self.attempt = attempt
        """1 for the first run, 2 for the first retry, ..."""
        self.fence = fence
        """The lease's fence: grows with every claim of any job, cluster-wide. Guard side
        effects with it (a write tagged with an older fence than one already seen is stale)."""
        self.timeout_ms = timeout_ms
        """How long the handler may run without a heartbeat before it is cancelled."""
        self._heartbeat = heartbeat
        self._progress = progress

    async def heartbeat(self) -> None:
        """Renew the lease for another ``timeout_ms``, and the handler's own deadline with it.
        Raises ``LeaseLost`` if the job was already handed to another worker: stop then."""
        await self._heartbeat()

    def heartbeat_from_thread(self) -> None:
        """``heartbeat`` for a sync handler, which runs in a worker thread (under asyncio or
        Trio: the worker's loop runs the heartbeat)."""
        anyio.from_thread.run(self.heartbeat)

    async def progress(self, value: object) -> None:
        """Show ``value`` (JSON, at most ``limits.JOB_PROGRESS_BYTES_MAX`` bytes encoded) as
        the job's progress. It never waits for the cluster: the worker keeps each job's latest
        value and sends its jobs' values together at most every ``limits.PROGRESS_INTERVAL_MS``
        (values in between are replaced, not queued). ``ConfigError`` for a value that is not
        JSON or too large."""
        self._progress(value)

    def progress_from_thread(self, value: object) -> None:
        """``progress`` for a sync handler, which runs in a worker thread."""
        anyio.from_thread.run_sync(self._progress, value)


@attrs.frozen
class Registered:
    function: Handler
    is_async: bool


class App:
    """Job type -> handler. Register with ``@app.handler("type")``."""

    def __init__(self, *, builtins: bool = True) -> None:
        self._handlers: dict[str, Registered] = {}
        if builtins:
            for job_type, function in BUILTIN_HANDLERS.items():
                self.register(job_type, function)

    def handler(
        self, job_type: str
    ) -> Callable[[Callable[Concatenate[JobContext, P], R]], HandlerFunction[P, R]]:
        """Decorator: ``function`` runs the jobs of ``job_type``. It returns the function as a
        ``HandlerFunction``: called, it is the function; ``.enqueue(client, ...)`` enqueues a
        job of ``job_type`` with checked arguments (``raftq.handler_function``)."""

        def register(function: Callable[Concatenate[JobContext, P], R]) -> HandlerFunction[P, R]:
            decorated = HandlerFunction(job_type, function)
            self.register(job_type, decorated)
            return decorated

        return register

    def register(self, job_type: str, function: Handler) -> None:
        """``function(job)``, or ``function(job, **job.payload)`` if it declares parameters
        after ``job`` (then a payload that does not fit them fails the attempt for good)."""
        if not isinstance(job_type, str) or not 0 < len(job_type) <= limits.NAME_CHARS_MAX:
            raise ConfigError(f"job type {job_type!r}: 1 to {limits.NAME_CHARS_MAX} characters")
        if isinstance(function, HandlerFunction):
            function = function.function
        if not callable(function):
            raise ConfigError(f"the handler of {job_type!r} is not callable: {function!r}")
        is_async = inspect.iscoroutinefunction(function)
        signature = payload_signature(job_type, function)
        if signature is not None:
            function = payload_caller(job_type, function, signature, is_async)
        self._handlers[job_type] = Registered(function, is_async)

    def include(self, other: App) -> None:
        """Add ``other``'s handlers (they win over same-named ones already here)."""
        self._handlers.update(other._handlers)

    @property
    def types(self) -> tuple[str, ...]:
        """The job types this App runs, sorted (a worker claims only these)."""
        return tuple(sorted(self._handlers))

    def lookup(self, job_type: str) -> Registered | None:
        return self._handlers.get(job_type)


def payload_caller(
    job_type: str, function: Callable[..., Any], signature: inspect.Signature, is_async: bool
) -> Handler:
    """What a worker calls for a handler with payload parameters: ``function(job,
    **job.payload)``, once the payload is known to fit them. One that does not (a job enqueued
    by type name with another payload) fails the attempt for good: no retry can fix it."""

    shown = describe(job_type, signature)

    def arguments(job: JobContext) -> dict[str, Any]:
        payload = job.payload
        if not isinstance(payload, dict):
            problem = f"the payload is a {type(payload).__name__}, not an object of arguments"
            raise Fail(f"{shown}: {problem}")
        try:
            signature.bind(**payload)
        except TypeError as error:
            raise Fail(f"{shown}: {error}") from None
        return payload

    if is_async:

        async def call_async(job: JobContext) -> Any:
            return await function(job, **arguments(job))

        return call_async

    def call(job: JobContext) -> Any:
        return function(job, **arguments(job))

    return call


# --- built-in handlers ----------------------------------------------------------------------------


async def _noop(job: JobContext) -> None:
    return None


async def _sleep(job: JobContext) -> None:
    sleep_ms = job.payload.get("sleep_ms", 0) if isinstance(job.payload, dict) else 0
    if isinstance(sleep_ms, bool) or not isinstance(sleep_ms, int | float):
        raise Fail(f"sleep_ms must be a number, not {sleep_ms!r}")
    if not 0 <= sleep_ms <= SLEEP_MS_MAX:
        raise Fail(f"sleep_ms must be from 0 to {SLEEP_MS_MAX}")
    await anyio.sleep(sleep_ms / 1000)


async def _echo(job: JobContext) -> Any:
    return job.payload


async def _fail(job: JobContext) -> None:
    message = job.payload.get("message") if isinstance(job.payload, dict) else None
    raise JobFailed(str(message or f"the fail handler always fails (attempt {job.attempt})"))


BUILTIN_HANDLERS: dict[str, Handler] = {
    "noop": _noop,
    "sleep": _sleep,
    "echo": _echo,
    "fail": _fail,
}

_default_app = App(builtins=False)
"""Where ``raftq.handler`` registers: modules imported with ``--import`` that define no ``app``."""


def handler(
    job_type: str,
) -> Callable[[Callable[Concatenate[JobContext, P], R]], HandlerFunction[P, R]]:
    """``@raftq.handler("type")``: register on the default App (see ``load_app``)."""
    return _default_app.handler(job_type)


def load_app(modules: Iterable[str], base: App | None = None) -> App:
    """Import ``modules`` and gather their handlers: each module's ``app`` (an ``App``) if it
    has one, plus whatever they registered with ``raftq.handler``. ``ConfigError`` if a module
    cannot be imported or its ``app`` is not an App."""
    app = base if base is not None else App()
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as error:  # any import-time failure of user code is a config problem
            raise ConfigError(f"cannot import {name!r}: {type(error).__name__}: {error}") from None
        module_app = getattr(module, "app", None)
        if module_app is not None:
            if not isinstance(module_app, App):
                raise ConfigError(f"{name}.app is a {type(module_app).__name__}, not a raftq.App")
            app.include(module_app)
    app.include(_default_app)
    return app
