"""OpenTelemetry traces through the queue (the ``otel`` extra: ``pip install 'raftq[otel]'``;
docs/tracing.md).

A job carries the trace it was enqueued in, as a W3C ``traceparent`` (``JobSpec.traceparent``,
replicated and snapshotted like its other fields), so the spans of its life join the
producer's trace wherever and however late the job runs:

- ``raftq enqueue`` (producer): the client's enqueue, a child of the caller's current span;
  its context is what the jobs carry;
- ``raftq wait``: from the job's enqueue (the leader's clock) until a worker asked for it;
- ``raftq claim``: the worker's claim that handed it out;
- ``raftq run`` (consumer): the handler, as the current span, so the handler's own spans nest
  in it; an exception marks it an error;
- ``raftq report``: the report that ended the attempt.

Each of the worker's spans has the job's id, queue, type, attempt and fence as attributes
(``raftq.job.*``), the enqueue span the queue, type and ids of what it enqueued.

Without the extra, nothing here imports OpenTelemetry, makes a span or adds a byte to a job:
every function returns at its first line. With the API but no SDK configured (OpenTelemetry's
default), spans are the API's no-op ones and a job carries no context (there is none to carry).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from raftq.jobs.commands import JobSpec, Lease

try:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _on = True
except ImportError:  # the extra is not installed: tracing is off
    _on = False

TRACER_NAME = "raftq"
_propagator: Any = TraceContextTextMapPropagator() if _on else None


def enabled() -> bool:
    """Whether OpenTelemetry's API is installed (spans are recorded only if the application
    configured an SDK)."""
    return _on


def _tracer() -> Any:
    return trace.get_tracer(TRACER_NAME)


def start_enqueue(specs: Sequence[JobSpec]) -> tuple[Any, tuple[JobSpec, ...]]:
    """Start the ``raftq enqueue`` span of an enqueue of ``specs``: the span (None without
    OpenTelemetry) and the specs to send, each that carries no trace context given the span's.
    A batch whose jobs all carry one already (a ``SyncClient``'s calls, coalesced: each made
    its own span in its caller's thread) makes no span of its own."""
    if not _on or all(spec.traceparent for spec in specs):
        return None, tuple(specs)
    span = _tracer().start_span("raftq enqueue", kind=trace.SpanKind.PRODUCER)
    span.set_attribute("messaging.system", "raftq")
    span.set_attribute("messaging.batch.message_count", len(specs))
    span.set_attribute("raftq.job.queue", sorted({spec.queue for spec in specs}))
    span.set_attribute("raftq.job.type", sorted({spec.type for spec in specs}))
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    traceparent = carrier.get("traceparent", "")
    if not traceparent:
        return span, tuple(specs)
    return span, tuple(
        spec if spec.traceparent else attrs.evolve(spec, traceparent=traceparent) for spec in specs
    )


def end_enqueue(span: Any, job_ids: Sequence[str] = (), error: BaseException | None = None) -> None:
    if span is None:
        return
    if job_ids:
        span.set_attribute("raftq.job.id", list(job_ids))
    if error is not None:
        span.record_exception(error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, str(error)))
    span.end()


def _job_context(lease: Lease) -> Any:
    if not lease.traceparent:
        return None
    return _propagator.extract({"traceparent": lease.traceparent})


def _attributes(lease: Lease) -> dict[str, Any]:
    return {
        "messaging.system": "raftq",
        "raftq.job.id": lease.job_id,
        "raftq.job.queue": lease.queue,
        "raftq.job.type": lease.type,
        "raftq.job.attempt": lease.attempt,
        "raftq.job.fence": lease.fence,
    }


def claimed(leases: Sequence[Lease], asked_ns: int, answered_ns: int) -> None:
    """The ``raftq wait`` and ``raftq claim`` spans of each traced lease a claim handed out:
    asked at ``asked_ns``, answered at ``answered_ns`` (``time.time_ns()``)."""
    if not _on:
        return
    tracer = _tracer()
    for lease in leases:
        context = _job_context(lease)
        if context is None:
            continue
        attributes = _attributes(lease)
        if lease.attempt == 1:  # later attempts waited for a retry, not in line
            waited_from = min(lease.enqueued_ms * 1_000_000, asked_ns)
            wait = tracer.start_span(
                "raftq wait", context=context, attributes=attributes, start_time=waited_from
            )
            wait.end(end_time=asked_ns)
        claim = tracer.start_span(
            "raftq claim", context=context, attributes=attributes, start_time=asked_ns
        )
        claim.end(end_time=answered_ns)


@contextlib.contextmanager
def running(lease: Lease) -> Iterator[Any]:
    """The ``raftq run`` span around a handler, current while it runs; yields the context its
    report span joins (None if the job is not traced)."""
    if not _on or not lease.traceparent:
        yield None
        return
    tracer = _tracer()
    with tracer.start_as_current_span(
        "raftq run",
        context=_job_context(lease),
        kind=trace.SpanKind.CONSUMER,
        attributes=_attributes(lease),
    ) as span:
        yield trace.set_span_in_context(span)


def failed(error: str) -> None:
    """Mark the current ``raftq run`` span failed (the handler raised; the worker reports it)."""
    if not _on:
        return
    span = trace.get_current_span()
    span.set_status(trace.Status(trace.StatusCode.ERROR, error[-200:]))


def reported(traced: Sequence[tuple[Lease, Any]], started_ns: int, error: str = "") -> None:
    """The ``raftq report`` span of each traced job of a report sent at ``started_ns`` and
    answered now (``error``: it was lost, and the job will run again)."""
    if not _on or not traced:
        return
    tracer = _tracer()
    ended_ns = time.time_ns()
    for lease, context in traced:
        span = tracer.start_span(
            "raftq report", context=context, attributes=_attributes(lease), start_time=started_ns
        )
        if error:
            span.set_status(trace.Status(trace.StatusCode.ERROR, error))
        span.end(end_time=ended_ns)


__all__ = [
    "claimed",
    "enabled",
    "end_enqueue",
    "failed",
    "reported",
    "running",
    "start_enqueue",
]
