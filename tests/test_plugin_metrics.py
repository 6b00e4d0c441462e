"""asyncdataflow.plugins.metrics: Prometheus metrics read back from a real registry."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from asyncdataflow import DataFlow, Retry, step
from asyncdataflow.plugins.metrics import MetricsPlugin


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self, y: int) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"failure {self.calls}")
        return {"z": y}


async def first(x: int) -> dict[str, Any]:
    return {"y": x + 1}


async def never(q: int) -> dict[str, Any]:  # pragma: no cover - never taken
    return {}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def make_flow(plugin: MetricsPlugin, flaky: Flaky) -> DataFlow:
    return DataFlow(
        (
            step(first, name="first"),
            (
                step(never, name="never"),
                step(flaky, name="flaky", retry=Retry(attempts=3, backoff=0.001)),
            ),
        ),
        name="etl",
        plugins=[plugin],
    )


async def test_runs_steps_retries_and_skips_are_counted(registry: CollectorRegistry) -> None:
    plugin = MetricsPlugin(registry)
    ok = make_flow(plugin, Flaky(1))
    for x in range(3):
        await ok(x=x)  # the first run retries once
    failing = make_flow(plugin, Flaky(10))
    with pytest.raises(ConnectionError):
        await failing(x=1)

    v = lambda name, **labels: value(registry, name, **labels)  # noqa: E731
    assert v("asyncdataflow_runs_total", flow="etl", outcome="ok") == 3
    assert v("asyncdataflow_runs_total", flow="etl", outcome="error") == 1
    assert v("asyncdataflow_run_duration_seconds_count", flow="etl", outcome="ok") == 3
    assert v("asyncdataflow_run_duration_seconds_sum", flow="etl", outcome="ok") > 0
    assert v("asyncdataflow_run_duration_seconds_count", flow="etl", outcome="error") == 1
    assert v("asyncdataflow_runs_in_flight", flow="etl") == 0

    assert v("asyncdataflow_steps_total", flow="etl", step="first", outcome="ok") == 4
    assert v("asyncdataflow_steps_total", flow="etl", step="flaky", outcome="ok") == 3
    # one failed attempt in the first flow, three in the failing one
    assert v("asyncdataflow_steps_total", flow="etl", step="flaky", outcome="error") == 4
    assert (
        v("asyncdataflow_step_duration_seconds_count", flow="etl", step="flaky", outcome="error")
        == 4
    )
    assert (
        v("asyncdataflow_step_duration_seconds_count", flow="etl", step="first", outcome="ok") == 4
    )
    assert v("asyncdataflow_step_retries_total", flow="etl", step="flaky") == 1 + 2
    assert v("asyncdataflow_step_skips_total", flow="etl", step="never") == 4
    assert v("asyncdataflow_step_skips_total", flow="etl", step="first") == 0


async def test_runs_in_flight_is_a_gauge(registry: CollectorRegistry) -> None:
    plugin = MetricsPlugin(registry)
    release = asyncio.Event()
    seen: list[float] = []

    all_in = asyncio.Event()

    async def wait(x: int) -> dict[str, Any]:
        seen.append(value(registry, "asyncdataflow_runs_in_flight", flow="gauge"))
        if len(seen) == 5:
            all_in.set()
        await release.wait()
        return {}

    flow = DataFlow((wait,), name="gauge", plugins=[plugin])
    tasks = [asyncio.ensure_future(flow(x=i)) for i in range(5)]
    await all_in.wait()
    assert value(registry, "asyncdataflow_runs_in_flight", flow="gauge") == 5
    release.set()
    await asyncio.gather(*tasks)
    assert seen[-1] == 5
    assert value(registry, "asyncdataflow_runs_in_flight", flow="gauge") == 0


async def test_cancelled_runs_and_loop_iterations(registry: CollectorRegistry) -> None:
    plugin = MetricsPlugin(registry)

    async def slow(x: int) -> dict[str, Any]:
        await asyncio.sleep(10)
        return {}  # pragma: no cover

    task = asyncio.ensure_future(DataFlow((slow,), name="slow", plugins=[plugin])(x=1))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert value(registry, "asyncdataflow_runs_total", flow="slow", outcome="cancelled") == 1
    assert value(registry, "asyncdataflow_runs_in_flight", flow="slow") == 0

    count = {"n": 0}

    async def tick(x: int) -> dict[str, Any]:
        count["n"] += 1
        if count["n"] == 3:
            loop.stop()
        return {}

    loop = DataFlow((tick,), name="loop", infinity_loop=True, plugins=[plugin])
    await loop(x=0)
    assert value(registry, "asyncdataflow_loop_iterations_total", flow="loop", outcome="ok") == 3
    assert value(registry, "asyncdataflow_runs_total", flow="loop", outcome="ok") == 3


def test_namespace_and_buckets(registry: CollectorRegistry) -> None:
    MetricsPlugin(registry, namespace="etl", buckets=(0.1, 1.0))
    text = generate_latest(registry).decode()
    assert "# TYPE etl_runs_total counter" in text
    assert "# TYPE etl_run_duration_seconds histogram" in text
    assert "# TYPE etl_runs_in_flight gauge" in text


async def test_buckets_are_used(registry: CollectorRegistry) -> None:
    plugin = MetricsPlugin(registry, buckets=(0.5, 5.0))
    await DataFlow((first,), name="b", plugins=[plugin])(x=1)
    assert (
        value(
            registry, "asyncdataflow_run_duration_seconds_bucket", flow="b", outcome="ok", le="0.5"
        )
        == 1
    )


def test_a_second_plugin_on_one_registry_and_namespace_says_what_to_do() -> None:
    from asyncdataflow.exceptions import DataFlowDefinitionError

    registry = CollectorRegistry()
    MetricsPlugin(registry=registry)
    # used to be prometheus_client's bare "Duplicated timeseries in CollectorRegistry"
    with pytest.raises(DataFlowDefinitionError, match="register that one object"):
        MetricsPlugin(registry=registry)
    # another namespace, or another registry, is fine
    MetricsPlugin(registry=registry, namespace="other")
    MetricsPlugin(registry=CollectorRegistry())


async def test_dead_letters_are_counted(registry: CollectorRegistry, tmp_path: Any) -> None:
    from asyncdataflow.plugins import files

    async def records() -> Any:
        for n in range(4):
            yield {"n": n}

    async def shape(n: int) -> dict[str, Any]:
        if n >= 2:
            raise ValueError(n)
        return {}

    plugin = MetricsPlugin(registry)
    sink = files.dead_letters(tmp_path / "dead.jsonl")
    await DataFlow(
        (records, step(shape, name="shape")), name="dl", plugins=[plugin], dead_letter=sink
    )()
    assert value(registry, "asyncdataflow_dead_letters_total", flow="dl", step="shape") == 2
