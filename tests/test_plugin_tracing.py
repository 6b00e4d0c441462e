"""asyncdataflow.plugins.tracing: OpenTelemetry spans read back from the SDK's
InMemorySpanExporter, with a TracerProvider handed to the plugin (never the global one)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from asyncdataflow import DataFlow, Retry, step
from asyncdataflow.plugins.tracing import TracingPlugin


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def build(provider: TracerProvider, plugin: TracingPlugin, flaky_failures: int = 1) -> DataFlow:
    tracer = provider.get_tracer("test")
    calls = {"n": 0}

    async def start(x: int) -> dict[str, Any]:
        return {"y": x + 1}

    async def branch_async(y: int) -> dict[str, Any]:
        await asyncio.sleep(0.001)
        with tracer.start_as_current_span("inside async"):
            await asyncio.sleep(0.001)
        return {"a": y}

    def branch_thread(y: int) -> dict[str, Any]:
        assert threading.current_thread() is not threading.main_thread()
        with tracer.start_as_current_span("inside thread"):
            pass
        return {"t": y}

    async def never(q: int) -> dict[str, Any]:  # pragma: no cover - never taken
        return {}

    async def flaky(a: int, t: int) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] <= flaky_failures:
            raise ConnectionError(f"failure {calls['n']}")
        return {"sum": a + t}

    return DataFlow(
        (
            step(start, name="start"),
            (
                step(branch_async, name="async"),
                step(branch_thread, name="thread"),
                step(never, name="never"),
            ),
            step(flaky, name="flaky", retry=Retry(attempts=3, backoff=0.001, jitter=False)),
        ),
        name="traced",
        plugins=[plugin],
    )


async def test_one_span_per_run_and_per_step_attempt_with_parents(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    flow = build(provider, TracingPlugin(provider))
    assert await flow(x=1) == {"sum": 4}
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == sorted(
        [
            "flow traced",
            "start",
            "async",
            "inside async",
            "thread",
            "inside thread",
            "never",
            "flaky",
            "flaky",
        ]
    )
    (run,) = by_name(spans, "flow traced")
    assert run.parent is None
    assert run.attributes is not None
    assert run.attributes["asyncdataflow.flow"] == "traced"
    assert isinstance(run.attributes["asyncdataflow.run.id"], str)
    trace_ids = {s.context.trace_id for s in spans}
    assert trace_ids == {run.context.trace_id}

    for name in ("start", "async", "thread", "never", "flaky"):
        for span in by_name(spans, name):
            assert parent_id(span) == run.context.span_id, name
    # spans started by the steps themselves are children of their step's span,
    # in a concurrent branch and in a thread alike
    (async_span,) = by_name(spans, "async")
    (thread_span,) = by_name(spans, "thread")
    assert parent_id(by_name(spans, "inside async")[0]) == async_span.context.span_id
    assert parent_id(by_name(spans, "inside thread")[0]) == thread_span.context.span_id

    assert dict(thread_span.attributes or {}) == {
        "asyncdataflow.flow": "traced",
        "asyncdataflow.step.path": "definition[1][1]",
        "asyncdataflow.step.parent": "definition[1]",
        "asyncdataflow.step.attempt": 1,
        "asyncdataflow.step.skipped": False,
        "asyncdataflow.step.retry": False,
    }
    # the run span covers its steps
    for span in spans:
        assert run.start_time <= span.start_time
        assert span.end_time <= run.end_time


async def test_a_failed_attempt_records_the_exception_and_its_retry_is_marked(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    await build(provider, TracingPlugin(provider))(x=1)
    first, second = sorted(
        by_name(exporter.get_finished_spans(), "flaky"), key=lambda s: s.start_time or 0
    )
    assert first.status.status_code is StatusCode.ERROR
    assert "ConnectionError" in (first.status.description or "")
    (event,) = first.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ConnectionError"
    assert event.attributes["exception.message"] == "failure 1"
    assert first.attributes is not None
    assert second.attributes is not None
    assert (
        first.attributes["asyncdataflow.step.attempt"],
        first.attributes["asyncdataflow.step.retry"],
    ) == (1, False)
    assert (
        second.attributes["asyncdataflow.step.attempt"],
        second.attributes["asyncdataflow.step.retry"],
    ) == (2, True)
    assert second.attributes["asyncdataflow.step.retry_delay"] == 0.001
    assert second.status.status_code is StatusCode.UNSET
    assert first.end_time <= second.start_time  # type: ignore[operator]


async def test_a_failed_run_has_status_error(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    with pytest.raises(ConnectionError):
        await build(provider, TracingPlugin(provider), flaky_failures=5)(x=1)
    spans = exporter.get_finished_spans()
    (run,) = by_name(spans, "flow traced")
    assert run.status.status_code is StatusCode.ERROR
    flaky = by_name(spans, "flaky")
    assert len(flaky) == 3
    assert all(s.status.status_code is StatusCode.ERROR for s in flaky)


async def test_a_skipped_step_is_a_zero_length_span(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    await build(provider, TracingPlugin(provider))(x=1)
    (never,) = by_name(exporter.get_finished_spans(), "never")
    assert never.start_time == never.end_time
    assert never.attributes is not None
    assert never.attributes["asyncdataflow.step.skipped"] is True
    assert tuple(never.attributes["asyncdataflow.step.missing"]) == ("q",)  # type: ignore[arg-type]
    assert never.attributes["asyncdataflow.step.path"] == "definition[1][2]"


async def test_concurrent_runs_get_separate_traces(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    plugin = TracingPlugin(provider)
    flows = [build(provider, plugin) for _ in range(10)]
    await asyncio.gather(*(f(x=i) for i, f in enumerate(flows)))
    spans = exporter.get_finished_spans()
    runs = by_name(spans, "flow traced")
    assert len(runs) == 10
    assert len({r.context.trace_id for r in runs}) == 10
    by_id = {s.context.span_id: s for s in spans}
    for span in spans:
        if span in runs:
            continue
        # every other span has its run's trace id and hangs off a span of the same trace
        parent = by_id[parent_id(span)]  # type: ignore[index]
        assert parent.context.trace_id == span.context.trace_id
        run = next(r for r in runs if r.context.trace_id == span.context.trace_id)
        assert span.name.startswith("inside") or parent is run
    assert len(spans) == 10 * 9
    # nothing left behind
    assert repr(plugin) == "<TracingPlugin runs=0 steps=0>"


async def test_the_run_is_a_child_of_the_callers_span_and_context_is_restored(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    tracer = provider.get_tracer("test")
    flow = build(provider, TracingPlugin(provider))
    with tracer.start_as_current_span("caller") as caller:
        await flow(x=1)
        assert trace.get_current_span() is caller
        with pytest.raises(ConnectionError):
            await build(provider, TracingPlugin(provider), flaky_failures=5)(x=1)
        assert trace.get_current_span() is caller
    assert trace.get_current_span() is trace.INVALID_SPAN
    runs = by_name(exporter.get_finished_spans(), "flow traced")
    assert len(runs) == 2
    assert all(parent_id(r) == caller.get_span_context().span_id for r in runs)


async def test_a_cancelled_run_ends_its_spans(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    plugin = TracingPlugin(provider)

    async def slow(x: int) -> dict[str, Any]:
        await asyncio.sleep(10)
        return {}  # pragma: no cover

    flow = DataFlow((step(slow, name="slow"),), name="cancelled", plugins=[plugin])
    task = asyncio.ensure_future(flow(x=1))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == ["flow cancelled", "slow"]
    assert all(s.status.status_code is StatusCode.ERROR for s in spans)
    assert repr(plugin) == "<TracingPlugin runs=0 steps=0>"


async def test_loop_iterations_are_separate_runs(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    count = {"n": 0}

    async def tick(x: int) -> dict[str, Any]:
        count["n"] += 1
        if count["n"] == 2:
            flow.stop()
        return {}

    flow = DataFlow(
        (step(tick, name="tick"),),
        name="loop",
        infinity_loop=True,
        plugins=[TracingPlugin(provider)],
    )
    await flow(x=0)
    runs = by_name(exporter.get_finished_spans(), "flow loop")
    iterations = [dict(r.attributes or {})["asyncdataflow.run.iteration"] for r in runs]
    assert sorted(iterations) == [1, 2]  # type: ignore[type-var]
