"""Enqueue a job by its handler, with checked arguments (docs/handlers.md "Enqueue by handler").

What ``@app.handler("type")`` returns is a ``HandlerFunction``: still the handler (calling it
calls the function), and also the way to enqueue jobs of its type, as Celery's ``.delay()``
and arq's ``enqueue_job`` are used by their peers:

    @app.handler("resize")
    async def resize(job: raftq.JobContext, file: str, width: int = 800) -> object: ...

    job_id = await resize.enqueue(client, file="a.png")          # raftq.connect's client
    job_id = resize.enqueue_sync(sync_client, "a.png", width=64)  # a raftq.SyncClient
    job_id = await resize.options(queue="images", priority=5).enqueue(client, file="b.png")
    ids = await client.enqueue_many([resize.job(file=f) for f in files])

The parameters after ``job`` declare the payload: a JSON object of the arguments given, by
name (defaults are not stored, so they are the handler's at run time). The arguments are bound
with ``inspect.signature`` before anything is sent: wrong or missing ones raise ``TypeError``,
and a value JSON cannot carry raises ``ConfigError``, with nothing enqueued. At run time the
worker calls ``resize(job, **payload)``; a payload that does not fit (a job enqueued by type
name from the CLI, say) fails the attempt for good, since no retry can fix it.

A handler taking only ``job`` is run exactly as before: it reads ``job.payload`` itself, and
enqueued by its object (no arguments) it gets a null payload.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, Unpack

from raftq.errors import ConfigError

if TYPE_CHECKING:
    from raftq.app import JobContext
    from raftq.client.client import Client
    from raftq.client.options import EnqueueOptions
    from raftq.client.sync_client import SyncClient

P = ParamSpec("P")
R = TypeVar("R")

PAYLOAD_PARAMETER_KINDS = (
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.KEYWORD_ONLY,
    inspect.Parameter.VAR_KEYWORD,
)
"""The parameters after ``job`` that a payload's keys can fill: named ones, and ``**kwargs``
(any further keys). Positional-only ones and ``*args`` have no name to store them under."""


def payload_signature(job_type: str, function: Callable[..., Any]) -> inspect.Signature | None:
    """The handler's parameters after ``job``, or None if it takes only ``job`` (then it reads
    ``job.payload`` itself). ``ConfigError`` if it cannot take a payload by name."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin or a C callable: called with the job only
        return None
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise ConfigError(f"the handler of {job_type!r} must take the job as its first argument")
    rest = parameters[1:]
    if not rest:
        return None
    for parameter in rest:
        if parameter.kind not in PAYLOAD_PARAMETER_KINDS:
            raise ConfigError(
                f"the handler of {job_type!r}: parameter {parameter.name!r} cannot be filled "
                "from a payload by name (no positional-only parameters or *args after job)"
            )
    return signature.replace(parameters=rest)


def describe(job_type: str, signature: inspect.Signature) -> str:
    """``resize(file, width=800)``: the payload's parameters as an error message shows them."""
    plain = [
        parameter.replace(annotation=parameter.empty) for parameter in signature.parameters.values()
    ]
    return job_type + str(signature.replace(parameters=plain, return_annotation=signature.empty))


def bind_payload(
    job_type: str, signature: inspect.Signature | None, args: tuple[Any, ...], kwargs: Any
) -> dict[str, Any] | None:
    """The payload for these arguments; ``TypeError`` if they do not fit the handler."""
    if signature is None:
        if args or kwargs:
            raise TypeError(
                f"the handler of {job_type!r} takes only the job: it declares no payload "
                "arguments (enqueue it by type name with a payload instead)"
            )
        return None
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:
        raise TypeError(f"{describe(job_type, signature)}: {error}") from None
    payload: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            payload.update(value)
        else:
            payload[name] = value
    return payload


class HandlerFunction(Generic[P, R]):
    """A registered handler: call it as the function, or enqueue a job of its type."""

    def __init__(self, job_type: str, function: Callable[Concatenate[JobContext, P], R]) -> None:
        self.job_type = job_type
        self.function = function
        self.signature = payload_signature(job_type, function)
        """The payload's parameters (after ``job``), or None for a handler of the job alone."""
        functools.update_wrapper(self, function)

    def __call__(self, job: JobContext, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.function(job, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<raftq handler {self.job_type!r}: {self.function!r}>"

    def payload(self, *args: P.args, **kwargs: P.kwargs) -> dict[str, Any] | None:
        """The payload of a job for these arguments; ``TypeError`` if they do not fit."""
        return bind_payload(self.job_type, self.signature, args, kwargs)

    def options(self, **options: Unpack[EnqueueOptions]) -> JobOptions[P]:
        """The same handler with job options (those of ``Client.enqueue``: seconds), checked
        now: a wrong one raises here, not at the first enqueue."""
        # Imported here: raftq.client imports raftq.app, which imports this module.
        from raftq.client.options import job_spec

        job_spec(self.job_type, None, options)
        return JobOptions(self, options)

    async def enqueue(self, client: Client, *args: P.args, **kwargs: P.kwargs) -> str:
        """Enqueue one job of this type with these arguments; its id once committed."""
        return await JobOptions(self, {}).enqueue(client, *args, **kwargs)

    def enqueue_sync(self, client: SyncClient, *args: P.args, **kwargs: P.kwargs) -> str:
        """``enqueue`` through a ``raftq.SyncClient``."""
        return JobOptions(self, {}).enqueue_sync(client, *args, **kwargs)

    def job(self, *args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        """A job-file dict for ``enqueue_many`` (many jobs in one commit)."""
        return JobOptions(self, {}).job(*args, **kwargs)


class JobOptions(Generic[P]):
    """A handler with job options set: ``resize.options(queue="images").enqueue(...)``."""

    def __init__(self, handler: HandlerFunction[P, Any], options: EnqueueOptions) -> None:
        self._handler = handler
        self._options = options

    async def enqueue(self, client: Client, *args: P.args, **kwargs: P.kwargs) -> str:
        payload = self._handler.payload(*args, **kwargs)
        return await client.enqueue(self._handler.job_type, payload, **self._options)

    def enqueue_sync(self, client: SyncClient, *args: P.args, **kwargs: P.kwargs) -> str:
        payload = self._handler.payload(*args, **kwargs)
        return client.enqueue(self._handler.job_type, payload, **self._options)

    def job(self, *args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        # Imported here: raftq.client imports raftq.app, which imports this module.
        from raftq.client.options import job_object

        return job_object(
            self._handler.job_type, self._handler.payload(*args, **kwargs), self._options
        )


__all__ = ["HandlerFunction", "JobOptions"]
