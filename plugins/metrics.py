"""Built-in plugin: Prometheus metrics for runs and steps (``pip install
"asyncdataflow[metrics]"``).

::

    from prometheus_client import CollectorRegistry
    from asyncdataflow.plugins.metrics import MetricsPlugin

    metrics = MetricsPlugin()                    # registers on prometheus_client.REGISTRY
    asyncdataflow.register_plugin(metrics)       # or DataFlow(..., plugins=[metrics])

Metrics (``<ns>`` is the ``namespace``, ``asyncdataflow`` by default; ``flow`` is the
flow's ``name``, ``step`` the step's display name; ``outcome`` is ``ok``, ``error`` or
``cancelled``):

- ``<ns>_runs_total{flow, outcome}``: finished runs.
- ``<ns>_run_duration_seconds{flow, outcome}``: histogram of run durations.
- ``<ns>_runs_in_flight{flow}``: gauge of runs started and not finished.
- ``<ns>_steps_total{flow, step, outcome}``: finished step attempts (a step that fails
  twice and then succeeds counts two ``error`` and one ``ok``).
- ``<ns>_step_duration_seconds{flow, step, outcome}``: histogram of attempt durations.
- ``<ns>_step_retries_total{flow, step}``: retries scheduled.
- ``<ns>_step_skips_total{flow, step}``: steps not taken.
- ``<ns>_loop_iterations_total{flow, outcome}``: finished iterations of infinity loops.
- ``<ns>_step_rate{flow, step}``: gauge, the current rate (calls a second) of a
  ``step(..., rate=...)`` (from its first finished attempt).
- ``<ns>_step_rate_limited_total{flow, step}``: slow-down answers that paused the rate.
- ``<ns>_step_breaker_state{flow, step}``: gauge, the state of a ``step(...,
  breaker=...)`` (from its first finished attempt): 0 closed, 1 open, 2 half-open.
- ``<ns>_step_breaker_opened_total{flow, step}``: times the breaker opened.
- ``<ns>_dead_letters_total{flow, step}``: failures handed to a dead-letter sink.

Give flows a ``name=``: the default name holds the object's id, a new label value per
flow object.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from asyncdataflow.exceptions import DataFlowDefinitionError
from asyncdataflow.hookspecs import hookimpl

from ._extras import needs

with needs("metrics", "prometheus_client", only=("prometheus_client",)):
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from asyncdataflow.flow import DataFlow
    from asyncdataflow.info import RunInfo, StepInfo

__all__ = ["MetricsPlugin"]

#: the namespaces a MetricsPlugin holds on each registry (prometheus refuses a second set
#: of the same metric names with a bare "Duplicated timeseries" error)
_TAKEN: weakref.WeakKeyDictionary[CollectorRegistry, set[str]] = weakref.WeakKeyDictionary()


#: the value of ``<ns>_step_breaker_state`` for each state
BREAKER_STATES = {"closed": 0, "open": 1, "half_open": 2}


_RUN = ("flow", "outcome")
_STEP = ("flow", "step")
_ATTEMPT = ("flow", "step", "outcome")

#: the plugin's metrics, in the order they are registered: (attribute, kind, name,
#: help text, label names)
_METRICS: tuple[tuple[str, type[Any], str, str, tuple[str, ...]], ...] = (
    ("runs", Counter, "runs", "Finished flow runs.", _RUN),
    ("run_duration", Histogram, "run_duration_seconds", "Flow run durations.", _RUN),
    ("in_flight", Gauge, "runs_in_flight", "Flow runs started and not finished.", ("flow",)),
    ("steps", Counter, "steps", "Finished step attempts.", _ATTEMPT),
    ("step_duration", Histogram, "step_duration_seconds", "Step attempt durations.", _ATTEMPT),
    ("retries", Counter, "step_retries", "Step retries scheduled.", _STEP),
    ("skips", Counter, "step_skips", "Steps not taken.", _STEP),
    ("rate", Gauge, "step_rate", "Current rate (calls a second) of a step with rate=.", _STEP),
    (
        "rate_limited",
        Counter,
        "step_rate_limited",
        "Slow-down answers that paused a step's rate.",
        _STEP,
    ),
    (
        "breaker_state",
        Gauge,
        "step_breaker_state",
        "Circuit breaker state of a step with breaker=: 0 closed, 1 open, 2 half-open.",
        _STEP,
    ),
    (
        "breaker_opened",
        Counter,
        "step_breaker_opened",
        "Times a step's circuit breaker opened.",
        _STEP,
    ),
    (
        "dead_letters",
        Counter,
        "dead_letters",
        "Records (or runs) a step failed on for good that went to its dead-letter sink.",
        _STEP,
    ),
    ("loop_iterations", Counter, "loop_iterations", "Finished infinity-loop iterations.", _RUN),
)


def _outcome(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return "error"


class _Children(dict[tuple[str, ...], tuple[Any, ...]]):
    """The children of some metrics that are always updated together, by their label
    values, each made with ``labels()`` on first use: ``labels()`` on every event was most
    of what the plugin cost."""

    def __init__(self, *metrics: Any) -> None:
        super().__init__()
        self.metrics = metrics

    def __missing__(self, values: tuple[str, ...]) -> tuple[Any, ...]:
        children = self[values] = tuple(m.labels(*values) for m in self.metrics)
        return children


class MetricsPlugin:
    """Counts and times runs and steps into Prometheus metrics.

    Args:
        registry: where the metrics are registered (default: ``prometheus_client``'s
            global ``REGISTRY``). One registry holds one plugin per ``namespace``.
        namespace: the metric name prefix.
        buckets: histogram buckets in seconds (default: ``prometheus_client``'s).

    The metrics are attributes (``runs``, ``run_duration``, ``in_flight``, ``steps``,
    ``step_duration``, ...). The plugin keeps the children of the per-run and per-step
    metrics it updates on every event: a label set removed from one of those with
    ``remove()`` or ``clear()`` while flows still use the plugin is not made again.
    """

    runs: Counter
    run_duration: Histogram
    in_flight: Gauge
    steps: Counter
    step_duration: Histogram
    retries: Counter
    skips: Counter
    rate: Gauge
    rate_limited: Counter
    breaker_state: Gauge
    breaker_opened: Counter
    dead_letters: Counter
    loop_iterations: Counter

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = "asyncdataflow",
        buckets: tuple[float, ...] | None = None,
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.namespace = namespace
        reg = self.registry
        taken = _TAKEN.setdefault(reg, set())
        if namespace in taken:
            raise DataFlowDefinitionError(
                f"MetricsPlugin(namespace={namespace!r}): this registry already holds a "
                f"MetricsPlugin's metrics under that namespace. Create the plugin once and "
                f"register that one object (register_plugin(plugin), or plugins=[plugin] on "
                f"every flow), or give the second one another namespace= or registry="
            )
        for attribute, kind, name, text, labels in _METRICS:
            more = {"buckets": buckets} if kind is Histogram and buckets is not None else {}
            metric = kind(name, text, labels, namespace=namespace, registry=reg, **more)
            setattr(self, attribute, metric)
        self._seen: set[tuple[str, str]] = set()
        self._rates: set[tuple[str, str]] = set()
        self._breakers: set[tuple[str, str]] = set()
        self._in_flight = _Children(self.in_flight)
        self._ran = _Children(self.runs, self.run_duration)
        self._stepped = _Children(self.steps, self.step_duration)
        taken.add(namespace)

    def __repr__(self) -> str:
        return f"<MetricsPlugin namespace={self.namespace!r}>"

    @hookimpl
    def before_flow_run(self, flow: DataFlow, run: RunInfo, kwargs: Mapping[str, Any]) -> None:
        self._in_flight[(flow.name,)][0].inc()

    @hookimpl
    def after_flow_run(self, flow: DataFlow, error: BaseException | None, duration: float) -> None:
        self._in_flight[(flow.name,)][0].dec()
        count, durations = self._ran[flow.name, _outcome(error)]
        count.inc()
        durations.observe(duration)

    @hookimpl
    def after_step_run(self, flow: DataFlow, step: StepInfo, duration: float) -> None:
        if step.rate is not None or step.breaker is not None:
            self._protected(flow, step)
        count, durations = self._stepped[flow.name, step.name, "ok"]
        count.inc()
        durations.observe(duration)

    @hookimpl
    def on_step_error(
        self, flow: DataFlow, step: StepInfo, error: BaseException, duration: float
    ) -> None:
        if step.rate is not None or step.breaker is not None:
            self._protected(flow, step)
        count, durations = self._stepped[flow.name, step.name, _outcome(error)]
        count.inc()
        durations.observe(duration)

    @hookimpl
    def on_step_retry(self, flow: DataFlow, step: StepInfo) -> None:
        self.retries.labels(flow.name, step.name).inc()

    @hookimpl
    def on_step_skipped(self, flow: DataFlow, step: StepInfo) -> None:
        self.skips.labels(flow.name, step.name).inc()

    @hookimpl
    def after_loop_iteration(self, flow: DataFlow, error: BaseException | None) -> None:
        self.loop_iterations.labels(flow.name, _outcome(error)).inc()

    def _protected(self, flow: DataFlow, step: StepInfo) -> None:
        """The first time a step with rate= or breaker= is seen: its gauges start at the
        configured rate and closed (hooks tell every change after that)."""
        key = (flow.name, step.name)
        if key in self._seen:
            return
        self._seen.add(key)
        if step.rate is not None and key not in self._rates:
            self.rate.labels(*key).set(step.rate.per_second)
        if step.breaker is not None and key not in self._breakers:
            self.breaker_state.labels(*key).set(0)

    @hookimpl
    def on_rate_change(
        self, flow: DataFlow, step: StepInfo, rate: float, error: BaseException | None
    ) -> None:
        self._rates.add((flow.name, step.name))
        self.rate.labels(flow.name, step.name).set(rate)
        if error is not None:
            self.rate_limited.labels(flow.name, step.name).inc()

    @hookimpl
    def on_dead_letter(self, flow: DataFlow, step: StepInfo) -> None:
        self.dead_letters.labels(flow.name, step.name).inc()

    @hookimpl
    def on_breaker_change(self, flow: DataFlow, step: StepInfo, state: str) -> None:
        self._breakers.add((flow.name, step.name))
        self.breaker_state.labels(flow.name, step.name).set(BREAKER_STATES[state])
        if state == "open":
            self.breaker_opened.labels(flow.name, step.name).inc()
