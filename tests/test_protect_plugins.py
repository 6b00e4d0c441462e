"""rate= and breaker= in the built-in plugins: log records, Prometheus metrics read back
from a registry, OpenTelemetry span events read back from the SDK's in-memory exporter."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from _protect_scenario import scenario
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from asyncdataflow.plugins import log
from asyncdataflow.plugins.metrics import MetricsPlugin
from asyncdataflow.plugins.tracing import TracingPlugin


async def test_log_records_each_change_at_its_level(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=log.LOGGER_NAME):
        await scenario([log])
    records = [r for r in caplog.records if r.name == log.LOGGER_NAME]
    events = [
        (r.adf_event, r.levelname)  # type: ignore[attr-defined]
        for r in records
        if r.adf_event.startswith(("rate_", "breaker_"))  # type: ignore[attr-defined]
    ]
    assert events == [
        ("rate_limited", "WARNING"),
        ("breaker_open", "WARNING"),
        ("breaker_half_open", "INFO"),
        ("breaker_closed", "INFO"),
        ("rate_recovered", "DEBUG"),
    ]
    by_event = {r.adf_event: r for r in records}  # type: ignore[attr-defined]
    limited = by_event["rate_limited"]
    assert limited.adf_rate == 50
    assert limited.adf_previous_rate == 100
    assert limited.adf_pause == 0.05
    assert limited.adf_error == "Throttled"
    assert "step api at definition[0] was told to slow down" in limited.getMessage()
    opened = by_event["breaker_open"]
    assert opened.adf_state == "open"
    assert opened.adf_previous_state == "closed"
    assert 29 < opened.adf_retry_in <= 30  # type: ignore[attr-defined]
    assert "circuit breaker opened (ConnectionError: down)" in opened.getMessage()
    assert "circuit breaker closed (was half-open)" in by_event["breaker_closed"].getMessage()


async def test_metrics_current_rate_and_breaker_state() -> None:
    registry = CollectorRegistry()
    plugin = MetricsPlugin(registry)
    labels = {"flow": "svc", "step": "api"}

    def value(name: str) -> float | None:
        return registry.get_sample_value(f"asyncdataflow_{name}", labels)

    states: list[float | None] = []

    class Probe:  # reads the gauges as each change is told (after the metrics plugin)
        from asyncdataflow import hookimpl

        @hookimpl(trylast=True)
        def on_breaker_change(self) -> None:
            states.append(value("step_breaker_state"))

    await scenario([plugin, Probe()])
    assert states == [1.0, 2.0, 0.0]  # open, half-open, closed
    assert value("step_rate") == 60.0  # lowered to 50, one step back up
    assert value("step_rate_limited_total") == 1.0
    assert value("step_breaker_opened_total") == 1.0
    assert value("step_breaker_state") == 0.0


async def test_metrics_start_at_the_configured_rate_and_closed() -> None:
    from asyncdataflow import Breaker, DataFlow, Rate, step

    async def api(n: int) -> dict[str, int]:
        return {"m": n}

    registry = CollectorRegistry()
    flow = DataFlow(
        (step(api, name="api", rate=Rate(7), breaker=Breaker()),),
        name="svc",
        plugins=[MetricsPlugin(registry)],
    )
    await flow(n=1)
    labels = {"flow": "svc", "step": "api"}
    assert registry.get_sample_value("asyncdataflow_step_rate", labels) == 7.0
    assert registry.get_sample_value("asyncdataflow_step_breaker_state", labels) == 0.0


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


async def test_span_events_on_the_attempt_that_saw_the_change(
    exporter: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = exporter
    await scenario([TracingPlugin(provider)])
    steps = [s for s in spans.get_finished_spans() if s.name == "api"]
    assert len(steps) == 7  # one per call; the one the open breaker refused failed at once
    refused = [
        s
        for s in steps
        for e in s.events
        if e.name == "exception"
        and e.attributes
        and str(e.attributes.get("exception.type")).endswith("DataFlowCircuitOpenError")
    ]
    assert len(refused) == 1
    events = [
        (s.attributes["asyncdataflow.step.path"] if s.attributes else None, e.name)
        for s in steps
        for e in s.events
        if e.name.startswith("asyncdataflow.")
    ]
    assert [name for _, name in events] == [
        "asyncdataflow.rate_limited",
        "asyncdataflow.breaker.open",
        "asyncdataflow.breaker.half_open",
        "asyncdataflow.breaker.closed",
        "asyncdataflow.rate_recovered",
    ]
    limited = next(e for s in steps for e in s.events if e.name == "asyncdataflow.rate_limited")
    assert limited.attributes is not None
    assert limited.attributes["asyncdataflow.rate"] == 50
    assert limited.attributes["asyncdataflow.rate.previous"] == 100
    assert limited.attributes["asyncdataflow.rate.pause"] == 0.05
    assert limited.attributes["asyncdataflow.error"] == "Throttled"
    opened = next(e for s in steps for e in s.events if e.name == "asyncdataflow.breaker.open")
    assert opened.attributes is not None
    assert opened.attributes["asyncdataflow.breaker.previous"] == "closed"
    assert opened.attributes["asyncdataflow.error"] == "ConnectionError"
    # the half-open and closed events are on the same span: the trial's attempt
    trial = [s for s in steps if any(e.name == "asyncdataflow.breaker.closed" for e in s.events)]
    assert [e.name for e in trial[0].events] == [
        "asyncdataflow.breaker.half_open",
        "asyncdataflow.breaker.closed",
    ]
