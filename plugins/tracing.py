"""Built-in plugin: OpenTelemetry spans for runs and steps (``pip install
"asyncdataflow[tracing]"``).

::

    from asyncdataflow.plugins.tracing import TracingPlugin

    asyncdataflow.register_plugin(TracingPlugin())   # or DataFlow(..., plugins=[...])

- One span per run, named ``flow <name>``, a child of whatever span is current when the
  flow is called. It is current while the run goes on, so spans the steps start are its
  descendants.
- One child span per step attempt, named after the step, current while the step runs
  (also inside a sync step run in a thread, and in each branch of a concurrent block).
  A failed attempt records the exception and has status ``ERROR``.
- A step not taken is a zero-length span with ``asyncdataflow.step.skipped = true``.

Attributes: ``asyncdataflow.flow``, ``asyncdataflow.run.id``,
``asyncdataflow.run.iteration`` (loops) on the run span; ``asyncdataflow.step.path``,
``asyncdataflow.step.parent``, ``asyncdataflow.step.attempt``,
``asyncdataflow.step.skipped``, ``asyncdataflow.step.retry`` (true on a retried attempt,
i.e. attempt > 1), ``asyncdataflow.step.retry_delay`` (the pause before it) and
``asyncdataflow.step.missing`` (skipped steps) and ``asyncdataflow.record`` (a step of a
stream's record: the record's index in each source, outermost first) on step spans.
Argument and result values are never recorded.

Span events, on the span of the step attempt that saw them: ``asyncdataflow.rate_limited``
(a slow-down answer paused a ``rate=`` step; attributes ``asyncdataflow.rate``,
``asyncdataflow.rate.previous``, ``asyncdataflow.rate.pause``, ``asyncdataflow.error``),
``asyncdataflow.rate_recovered`` (its rate grew one step) and
``asyncdataflow.breaker.<state>`` (a ``breaker=`` changed state: ``open``,
``half_open``, ``closed``; attributes ``asyncdataflow.breaker.previous``,
``asyncdataflow.breaker.retry_in``, ``asyncdataflow.error``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from asyncdataflow import __version__
from asyncdataflow.hookspecs import hookimpl

from ._extras import needs

with needs("tracing", "opentelemetry-api", only=("opentelemetry",)):
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Span, Status, StatusCode, TracerProvider

if TYPE_CHECKING:
    from asyncdataflow.flow import DataFlow
    from asyncdataflow.info import RunInfo, StepInfo

__all__ = ["TracingPlugin"]

_Key = tuple[str, str, tuple[int, ...]]


def _end(span: Any, token: object, error: BaseException | None) -> None:
    """End a run's or a step's span (recording ``error``) and make its parent current."""
    try:
        if error is not None:
            _fail(span, error)
        span.end()
    finally:
        otel_context.detach(token)  # type: ignore[arg-type]


class TracingPlugin:
    """Makes OpenTelemetry spans for runs and step attempts.

    Args:
        tracer_provider: where the tracer comes from (default: the global provider set
            with ``opentelemetry.trace.set_tracer_provider``).

    State is kept per run, keyed by ``run.id``, and per step attempt, keyed by
    ``(run.id, step.path, run.record)``; each span is made current with
    ``opentelemetry.context.attach`` in the task that runs it and detached in the same
    task, so the tokens nest.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("asyncdataflow", __version__, tracer_provider)
        self._runs: dict[str, tuple[Span, object]] = {}
        self._steps: dict[_Key, tuple[Span, object]] = {}
        self._delays: dict[_Key, float] = {}

    def __repr__(self) -> str:
        return f"<TracingPlugin runs={len(self._runs)} steps={len(self._steps)}>"

    # -- runs -----------------------------------------------------------------------

    @hookimpl
    def before_flow_run(self, flow: DataFlow, run: RunInfo, kwargs: Mapping[str, Any]) -> None:
        attributes: dict[str, Any] = {
            "asyncdataflow.flow": flow.name,
            "asyncdataflow.run.id": run.id,
        }
        if run.iteration is not None:
            attributes["asyncdataflow.run.iteration"] = run.iteration
        span = self.tracer.start_span(f"flow {flow.name}", attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        self._runs[run.id] = (span, token)

    @hookimpl
    def after_flow_run(self, run: RunInfo, error: BaseException | None) -> None:
        if self._delays:  # a run cancelled while a step waited to retry
            for key in [k for k in self._delays if k[0] == run.id]:
                del self._delays[key]
        entry = self._runs.pop(run.id, None)
        if entry is None:
            return
        _end(*entry, error)

    # -- steps ----------------------------------------------------------------------

    @staticmethod
    def _key(run: RunInfo, step: StepInfo) -> _Key:
        # the records of a stream run the same step at once: each has its own span
        return (run.id, step.path, run.record)

    @hookimpl
    def before_step_run(self, flow: DataFlow, run: RunInfo, step: StepInfo, attempt: int) -> None:
        key = self._key(run, step)
        attributes: dict[str, Any] = {
            "asyncdataflow.flow": flow.name,
            "asyncdataflow.step.path": step.path,
            "asyncdataflow.step.parent": step.parent,
            "asyncdataflow.step.attempt": attempt,
            "asyncdataflow.step.skipped": False,
            "asyncdataflow.step.retry": attempt > 1,
        }
        if run is not None and run.record:
            attributes["asyncdataflow.record"] = list(run.record)
        if self._delays:  # a retry of this step waited first
            delay = self._delays.pop(key, None)
            if delay is not None:
                attributes["asyncdataflow.step.retry_delay"] = delay
        span = self.tracer.start_span(step.name, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        self._steps[key] = (span, token)

    def _finish(self, run: RunInfo, step: StepInfo, error: BaseException | None) -> None:
        entry = self._steps.pop(self._key(run, step), None)
        if entry is None:
            return
        _end(*entry, error)

    @hookimpl
    def after_step_run(self, run: RunInfo, step: StepInfo) -> None:
        self._finish(run, step, None)

    @hookimpl
    def on_step_error(self, run: RunInfo, step: StepInfo, error: BaseException) -> None:
        self._finish(run, step, error)

    @hookimpl
    def on_step_retry(self, run: RunInfo, step: StepInfo, delay: float) -> None:
        self._delays[self._key(run, step)] = delay

    @hookimpl
    def on_step_skipped(
        self, flow: DataFlow, run: RunInfo, step: StepInfo, missing: tuple[str, ...]
    ) -> None:
        now = time.time_ns()
        span = self.tracer.start_span(
            step.name,
            start_time=now,
            attributes={
                "asyncdataflow.flow": flow.name,
                "asyncdataflow.step.path": step.path,
                "asyncdataflow.step.parent": step.parent,
                "asyncdataflow.step.skipped": True,
                "asyncdataflow.step.missing": list(missing),
            },
        )
        span.end(end_time=now)

    # -- rate= and breaker= ---------------------------------------------------------

    def _event(self, run: RunInfo, step: StepInfo, name: str, attributes: dict[str, Any]) -> None:
        entry = self._steps.get(self._key(run, step))
        if entry is None:
            entry = self._runs.get(run.id)
        span = entry[0] if entry is not None else trace.get_current_span()
        span.add_event(name, attributes)

    @hookimpl
    def on_rate_change(
        self, run: RunInfo, step: StepInfo, rate: float, previous: float, pause: float,
        error: BaseException | None,
    ) -> None:  # fmt: skip
        attributes: dict[str, Any] = {
            "asyncdataflow.rate": rate,
            "asyncdataflow.rate.previous": previous,
        }
        if error is None:
            self._event(run, step, "asyncdataflow.rate_recovered", attributes)
            return
        attributes["asyncdataflow.rate.pause"] = pause
        attributes["asyncdataflow.error"] = type(error).__name__
        self._event(run, step, "asyncdataflow.rate_limited", attributes)

    @hookimpl
    def on_breaker_change(
        self, run: RunInfo, step: StepInfo, state: str, previous: str,
        error: BaseException | None, retry_in: float | None,
    ) -> None:  # fmt: skip
        attributes: dict[str, Any] = {"asyncdataflow.breaker.previous": previous}
        if retry_in is not None:
            attributes["asyncdataflow.breaker.retry_in"] = retry_in
        if error is not None:
            attributes["asyncdataflow.error"] = type(error).__name__
        self._event(run, step, f"asyncdataflow.breaker.{state}", attributes)


def _fail(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
