"""OpenTelemetry through the queue (raftq.tracing, docs/tracing.md): a job carries the trace
it was enqueued in, through the log and snapshots, to the worker's spans and the handler's
own; and nothing of it happens without OpenTelemetry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from raftq import tracing
from raftq.app import App, JobContext
from raftq.jobs.commands import Claim, ClaimResult, Enqueue, JobSpec
from raftq.jobs.machine import JobStateMachine
from tests.fake_node import FakeCluster
from tests.test_app import FAST, cluster, running

__all__ = ["cluster"]  # the fixture, used by name

TRACEPARENT = f"00-{'ab' * 16}-{'cd' * 8}-01"


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TracerProvider, Any]]:
    """An SDK tracer provider with an in-memory exporter, for raftq's spans only (the global
    provider can be set once per process, and other tests must not start tracing)."""
    exporter = InMemorySpanExporter()
    sdk = TracerProvider()
    sdk.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", lambda: sdk.get_tracer("raftq"))
    yield sdk, exporter
    sdk.shutdown()


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [span.name for span in spans]
    return named


def parent_of(span: ReadableSpan) -> int:
    assert span.parent is not None, span.name
    return span.parent.span_id


async def reported(exporter: Any) -> None:
    """Until the report span is in: it ends once the report's answer is back, which may be
    after ``wait`` saw the job finished."""
    for _ in range(200):  # 2 s
        if "raftq report" in {span.name for span in exporter.get_finished_spans()}:
            return
        await trio.sleep(0.01)
    raise AssertionError("no report span")


async def test_a_job_s_spans_join_the_trace_it_was_enqueued_in(
    cluster: FakeCluster, provider: tuple[TracerProvider, Any]
) -> None:
    sdk, exporter = provider
    tracer = sdk.get_tracer("the application")
    app = App(builtins=False)

    @app.handler("traced")
    async def traced(job: JobContext) -> str:
        with tracer.start_as_current_span("handler work"):
            return "done"

    async with running(cluster, app) as (client, _):
        with tracer.start_as_current_span("web request"):
            job_id = await client.enqueue("traced", {"n": 1}, queue="q")
        job = await client.wait(job_id, timeout=FAST)
        assert job.state == "succeeded"
        await reported(exporter)
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {
        "web request", "raftq enqueue", "raftq wait", "raftq claim", "raftq run",
        "handler work", "raftq report",
    }  # fmt: skip
    assert len({span.context.trace_id for span in spans.values()}) == 1
    enqueue = spans["raftq enqueue"]
    assert parent_of(enqueue) == spans["web request"].context.span_id
    assert enqueue.kind is trace.SpanKind.PRODUCER
    assert enqueue.attributes is not None
    assert list(enqueue.attributes["raftq.job.id"]) == [job_id]  # type: ignore[arg-type]
    for name in ("raftq wait", "raftq claim", "raftq run"):
        assert parent_of(spans[name]) == enqueue.context.span_id, name
    run = spans["raftq run"]
    assert run.kind is trace.SpanKind.CONSUMER
    assert parent_of(spans["handler work"]) == run.context.span_id
    assert parent_of(spans["raftq report"]) == run.context.span_id
    attributes = dict(run.attributes or {})
    fence = attributes.pop("raftq.job.fence")
    assert isinstance(fence, int)
    assert fence > 0
    assert attributes == {
        "messaging.system": "raftq",
        "raftq.job.id": job_id,
        "raftq.job.queue": "q",
        "raftq.job.type": "traced",
        "raftq.job.attempt": 1,
    }
    wait, claim = spans["raftq wait"], spans["raftq claim"]
    assert wait.start_time is not None
    assert claim.start_time is not None
    assert wait.end_time == claim.start_time
    assert wait.start_time == job.enqueued_ms * 1_000_000  # by the leader's clock


async def test_a_failing_handler_s_run_span_is_an_error(
    cluster: FakeCluster, provider: tuple[TracerProvider, Any]
) -> None:
    _, exporter = provider
    app = App(builtins=False)

    @app.handler("broken")
    async def broken(job: JobContext) -> None:
        raise ValueError("no such file")

    async with running(cluster, app) as (client, _):
        job_id = await client.enqueue("broken", None, max_attempts=1)
        assert (await client.wait(job_id, timeout=FAST)).state == "dead"
        await reported(exporter)
    run = by_name(exporter.get_finished_spans())["raftq run"]
    assert run.status.status_code is trace.StatusCode.ERROR
    assert "no such file" in (run.status.description or "")


def test_the_trace_context_lives_through_a_snapshot_into_the_lease() -> None:
    machine = JobStateMachine()
    spec = JobSpec(
        id="", type="t", payload=b"", queue="q", priority=0, delay_ms=0, max_attempts=3,
        timeout_ms=1_000, key="", traceparent=TRACEPARENT,
    )  # fmt: skip
    machine.apply(1, Enqueue(now_ms=5, jobs=(spec,)))
    restored = JobStateMachine.restore(machine.snapshot())
    assert restored.snapshot() == machine.snapshot()
    claimed = restored.apply(2, Claim(now_ms=9, claimer="w", max_jobs=1))
    assert isinstance(claimed, ClaimResult)
    (lease,) = claimed.leases
    assert (lease.traceparent, lease.enqueued_ms) == (TRACEPARENT, 5)
    with pytest.raises(ValueError, match="traceparent"):
        JobSpec(
            id="", type="t", payload=b"", queue="q", priority=0, delay_ms=0, max_attempts=3,
            timeout_ms=1_000, key="", traceparent="00-not-a-trace",
        )  # fmt: skip


def test_without_an_sdk_or_without_the_api_a_job_carries_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OpenTelemetry's default (the API, no SDK) makes no-op spans: there is no context to
    carry, so the job's bytes are those of a job enqueued without tracing. Without the API
    (the extra not installed) nothing is even started."""
    spec = JobSpec(
        id="", type="t", payload=b"", queue="q", priority=0, delay_ms=0, max_attempts=3,
        timeout_ms=1_000, key="",
    )  # fmt: skip
    span, (sent,) = tracing.start_enqueue([spec])
    assert sent is spec
    tracing.end_enqueue(span, ["j1-0"])
    monkeypatch.setattr(tracing, "_on", False)
    monkeypatch.setattr(tracing, "_tracer", lambda: pytest.fail("no tracer without the API"))
    assert tracing.start_enqueue([spec]) == (None, (spec,))
    tracing.end_enqueue(None)
