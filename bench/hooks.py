"""Hook overhead: a 10-step async chain with no plugin and with each kind of plugin.

Variants, all run in the same process and event loop, interleaved round by round:

- hand-written: ``for f in steps: v = (await f(v=v))["v"]`` (what the flow replaces);
- no plugin: ``DataFlow((s0, ..., s9))``;
- empty plugin: a per-flow plugin object with no hookimpl at all;
- one flow hook: a plugin implementing ``before_flow_run`` (does nothing);
- one step hook: a plugin implementing ``after_step_run`` (does nothing);
- log: ``asyncdataflow.plugins.log``, logger at DEBUG, one handler that discards records;
- metrics: ``MetricsPlugin`` on a private ``CollectorRegistry``;
- tracing: ``TracingPlugin`` on an SDK ``TracerProvider`` with a ``SimpleSpanProcessor``
  and an exporter that drops the spans.

Each round times ``--calls`` sequential calls of each variant with
``time.perf_counter``; the median per-call time over ``--rounds`` rounds is reported with
its ratio to the no-plugin flow (and the no-plugin flow's ratio to the hand-written chain).

    python bench/hooks.py [--calls 2000] [--rounds 9]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/hooks.py`, this folder comes first on sys.path, and bench/http.py
# would shadow the standard library's `http` (which prometheus_client imports).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable, Sequence  # noqa: E402
from statistics import median  # noqa: E402
from typing import Any  # noqa: E402

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from prometheus_client import CollectorRegistry  # noqa: E402

from asyncdataflow import DataFlow, hookimpl  # noqa: E402
from asyncdataflow.plugins import log  # noqa: E402
from asyncdataflow.plugins.metrics import MetricsPlugin  # noqa: E402
from asyncdataflow.plugins.tracing import TracingPlugin  # noqa: E402

Call = Callable[[], Awaitable[Any]]


def make_step(i: int) -> Callable[..., Awaitable[dict[str, int]]]:
    async def step(v: int) -> dict[str, int]:
        return {"v": v + 1}

    step.__name__ = step.__qualname__ = f"s{i}"
    return step


STEPS = tuple(make_step(i) for i in range(10))


async def hand_written(v: int) -> dict[str, int]:
    for f in STEPS:
        v = (await f(v=v))["v"]
    return {"v": v}


class Empty:
    """A plugin with no hookimpl."""


class FlowHook:
    @hookimpl
    def before_flow_run(self) -> None:
        pass


class StepHook:
    @hookimpl
    def after_step_run(self) -> None:
        pass


class Discard(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        pass


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class NoPluginSystem(DataFlow):
    """The core as it would be without the plugin system: the same generated code, called
    without the per-call plugin-version check."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise TypeError("keyword arguments only")
        return self._body(kwargs, None, kwargs)


def variants() -> dict[str, Call]:
    logger = logging.getLogger(log.LOGGER_NAME)
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Discard())
    logger.propagate = False
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DropExporter()))

    def flow(*plugins: Any) -> Call:
        f = DataFlow(STEPS, plugins=plugins, name="bench")
        return lambda: f(v=0)

    bare = NoPluginSystem(STEPS, name="bare")
    return {
        "hand-written": lambda: hand_written(0),
        "core, no plugin system": lambda: bare(v=0),
        "no plugin": flow(),
        "empty plugin": flow(Empty()),
        "one flow hook": flow(FlowHook()),
        "one step hook": flow(StepHook()),
        "log (DEBUG, discarded)": flow(log),
        "metrics": flow(MetricsPlugin(CollectorRegistry())),
        "tracing (SDK, dropped)": flow(TracingPlugin(provider)),
    }


async def time_calls(call: Call, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - started) / n


async def main(calls: int, rounds: int) -> None:
    runs = variants()
    for call in runs.values():  # warm up, and check every variant computes the same
        assert (await call()) == {"v": 10}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, call in runs.items():
            times[name].append(await time_calls(call, calls))
    med = {name: median(t) for name, t in times.items()}
    base = med["no plugin"]
    print(
        f"10-step async chain, {calls} calls x {rounds} rounds, median per call "
        f"(Python {platform.python_version()})"
    )
    print(f"{'variant':<24} {'us/call':>9} {'x no plugin':>12}")
    for name, t in med.items():
        print(f"{name:<24} {t * 1e6:>9.1f} {t / base:>12.2f}")
    print(f"no plugin / hand-written: {base / med['hand-written']:.2f}")
    overhead = base / med["core, no plugin system"] - 1
    print(f"no plugin vs the core without the plugin system: {overhead:+.1%} (target: within 2%)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
