"""Built-in plugin: stdlib ``logging`` records for every run and step event.

Turn it on for every flow, or for one::

    import asyncdataflow
    from asyncdataflow.plugins import log

    asyncdataflow.register_plugin(log)          # every flow
    flow = asyncdataflow.DataFlow(definition, plugins=[log])   # this flow only

Records go to the logger ``asyncdataflow.run`` (:data:`LOGGER_NAME`):

- ``DEBUG``: a run or a step started, finished, or a step was not taken;
- ``WARNING``: a failed step will be retried;
- ``ERROR``: a step failed for good (with the traceback) or a run failed;
- for ``step(..., rate=...)``: ``WARNING`` when a slow-down answer pauses the step's rate
  (``rate_limited``), ``DEBUG`` for each step of its recovery (``rate_recovered``); for
  ``step(..., breaker=...)``: ``WARNING`` when the breaker opens (``breaker_open``),
  ``INFO`` when it half-opens or closes (``breaker_half_open``, ``breaker_closed``).

Each record carries ``extra`` fields, prefixed ``adf_`` so they never clash with
:class:`logging.LogRecord` attributes: ``adf_flow``, ``adf_run_id``, ``adf_event``, and
where they apply ``adf_step``, ``adf_path``, ``adf_attempt``, ``adf_duration`` (seconds),
``adf_delay``, ``adf_error`` (the exception's type name), ``adf_iteration``,
``adf_missing``, ``adf_keys`` (output key names), ``adf_rate`` and ``adf_previous_rate``
(calls a second), ``adf_pause`` (seconds), ``adf_state`` and ``adf_previous_state`` (a
breaker's), ``adf_retry_in`` (seconds until an open breaker's trial call); step records
also carry ``adf_record``, the record's index in each source it runs under (``()``
outside a stream).

The plugin never configures logging (no handler, no level: that is the application's
job) and never logs the values of a run's arguments or of a step's input and output, which
may hold secrets; only key names.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from asyncdataflow.hookspecs import hookimpl

if TYPE_CHECKING:
    from asyncdataflow.durable import DeadLetter
    from asyncdataflow.flow import DataFlow
    from asyncdataflow.info import RunInfo, StepInfo

__all__ = [
    "LOGGER_NAME",
    "after_flow_run",
    "after_loop_iteration",
    "after_step_run",
    "before_flow_run",
    "before_step_run",
    "logger",
    "on_breaker_change",
    "on_dead_letter",
    "on_rate_change",
    "on_step_error",
    "on_step_retry",
    "on_step_skipped",
]

LOGGER_NAME = "asyncdataflow.run"
logger = logging.getLogger(LOGGER_NAME)

_DEBUG = logging.DEBUG
_WARNING = logging.WARNING
_ERROR = logging.ERROR


def _log(
    level: int,
    msg: str,
    args: tuple[Any, ...],
    extra: dict[str, Any],
    exc_info: BaseException | None = None,
    depth: int = 1,
) -> None:
    """``logger.log(level, msg, *args, exc_info=exc_info, extra=extra)`` as called from the
    hook ``depth`` frames up: the same record (the hook's file, line and function as its
    source, unless ``logging._srcfile`` is None), made without logging's walk up the stack
    to find that frame. The hook has checked ``logger.isEnabledFor(level)``."""
    if logging._srcfile:
        frame = sys._getframe(depth)
        code = frame.f_code
        where: tuple[str, int, str] = (code.co_filename, frame.f_lineno, code.co_name)
    else:  # pragma: no cover - the application turned caller lookup off
        where = ("(unknown file)", 0, "(unknown function)")
    exc = None if exc_info is None else (type(exc_info), exc_info, exc_info.__traceback__)
    fn, lno, func = where
    logger.handle(logger.makeRecord(logger.name, level, fn, lno, msg, args, exc, func, extra))


def _step_log(
    level: int,
    event: str,
    flow: DataFlow,
    run: RunInfo,
    step: StepInfo,
    what: str,
    *args: Any,
    exc_info: BaseException | None = None,
    **more: Any,
) -> None:
    """Log ``what % args`` about one step, after the words naming its flow, run, step and
    place, with the ``extra`` fields every step record carries plus ``more``; the record's
    source line is that of the hook that called this, which has checked
    ``logger.isEnabledFor(level)``."""
    extra = {
        "adf_event": event,
        "adf_flow": flow.name,
        "adf_run_id": run.id,
        "adf_step": step.name,
        "adf_path": step.path,
        "adf_record": run.record if run is not None else (),
        **more,
    }
    _log(
        level,
        "flow %s run %s: step %s at %s " + what,
        (flow.name, run.id, step.name, step.path, *args),
        extra,
        exc_info,
        depth=2,
    )


@hookimpl
def before_flow_run(flow: DataFlow, run: RunInfo, kwargs: Mapping[str, Any]) -> None:
    if logger.isEnabledFor(_DEBUG):
        _log(
            _DEBUG,
            "flow %s run %s started with arguments %s",
            (flow.name, run.id, sorted(kwargs)),
            {
                "adf_event": "run_started",
                "adf_flow": flow.name,
                "adf_run_id": run.id,
                "adf_keys": tuple(kwargs),
            },
        )


@hookimpl
def after_flow_run(
    flow: DataFlow,
    run: RunInfo,
    result: dict[str, Any] | None,
    error: BaseException | None,
    duration: float,
) -> None:
    if error is None:
        if logger.isEnabledFor(_DEBUG):
            _log(
                _DEBUG,
                "flow %s run %s finished in %.6fs",
                (flow.name, run.id, duration),
                {
                    "adf_flow": flow.name,
                    "adf_run_id": run.id,
                    "adf_duration": duration,
                    "adf_event": "run_finished",
                    "adf_keys": tuple(result or ()),
                },
            )
        return
    cancelled = isinstance(error, asyncio.CancelledError)
    level = _DEBUG if cancelled else _ERROR
    if not logger.isEnabledFor(level):
        return
    extra: dict[str, Any] = {
        "adf_flow": flow.name,
        "adf_run_id": run.id,
        "adf_duration": duration,
        "adf_error": type(error).__name__,
        "adf_event": "run_cancelled" if cancelled else "run_failed",
    }
    if cancelled:
        _log(level, "flow %s run %s cancelled after %.6fs", (flow.name, run.id, duration), extra)
        return
    _log(
        level,
        "flow %s run %s failed after %.6fs: %s",
        (flow.name, run.id, duration, type(error).__name__),
        extra,
    )


@hookimpl
def before_step_run(flow: DataFlow, run: RunInfo, step: StepInfo, attempt: int) -> None:
    if logger.isEnabledFor(_DEBUG):
        _step_log(
            _DEBUG, "step_started", flow, run, step, "started (attempt %d)", attempt,
            adf_attempt=attempt,
        )  # fmt: skip


@hookimpl
def after_step_run(
    flow: DataFlow,
    run: RunInfo,
    step: StepInfo,
    result: dict[str, Any],
    duration: float,
    attempt: int,
) -> None:
    if logger.isEnabledFor(_DEBUG):
        _step_log(
            _DEBUG, "step_finished", flow, run, step, "finished in %.6fs (attempt %d)",
            duration, attempt,
            adf_attempt=attempt, adf_duration=duration, adf_keys=tuple(result),
        )  # fmt: skip


@hookimpl
def on_step_error(
    flow: DataFlow,
    run: RunInfo,
    step: StepInfo,
    error: BaseException,
    attempt: int,
    duration: float,
    final: bool,
) -> None:
    more: dict[str, Any] = {
        "adf_attempt": attempt,
        "adf_duration": duration,
        "adf_error": type(error).__name__,
    }
    if isinstance(error, asyncio.CancelledError):
        if logger.isEnabledFor(_DEBUG):
            _step_log(
                _DEBUG, "step_cancelled", flow, run, step, "cancelled after %.6fs", duration,
                **more,
            )  # fmt: skip
        return
    if not final:
        # the runner retries it: on_step_retry logs it at WARNING; this attempt is not
        # the step's failure
        if logger.isEnabledFor(_DEBUG):
            _step_log(
                _DEBUG, "step_attempt_failed", flow, run, step, "attempt %d failed: %s",
                attempt, type(error).__name__,
                **more,
            )  # fmt: skip
        return
    if not logger.isEnabledFor(_ERROR):
        return
    _step_log(
        _ERROR, "step_failed", flow, run, step, "failed after %.6fs (attempt %d): %s",
        duration, attempt, type(error).__name__,
        exc_info=error, **more,
    )  # fmt: skip


@hookimpl
def on_step_skipped(
    flow: DataFlow,
    run: RunInfo,
    step: StepInfo,
    missing: tuple[str, ...],
    available: tuple[str, ...],
) -> None:
    if logger.isEnabledFor(_DEBUG):
        why = f"missing {list(missing)}" if missing else "its block was not taken"
        _step_log(
            _DEBUG, "step_skipped", flow, run, step, "not taken: %s", why,
            adf_missing=missing, adf_keys=available,
        )  # fmt: skip


@hookimpl
def on_step_retry(
    flow: DataFlow,
    run: RunInfo,
    step: StepInfo,
    error: BaseException,
    attempt: int,
    delay: float,
) -> None:
    if not logger.isEnabledFor(_WARNING):
        return
    _step_log(
        _WARNING, "step_retry", flow, run, step,
        "failed on attempt %d (%s: %s); retrying in %.3fs",
        attempt, type(error).__name__, error, delay,
        adf_attempt=attempt, adf_delay=delay, adf_error=type(error).__name__,
    )  # fmt: skip


@hookimpl
def after_loop_iteration(
    flow: DataFlow,
    run: RunInfo,
    iteration: int,
    result: dict[str, Any] | None,
    error: BaseException | None,
    duration: float,
) -> None:
    # a failed iteration is also a failed run: after_flow_run logs it at ERROR
    if not logger.isEnabledFor(_DEBUG):
        return
    extra = {
        "adf_event": "loop_iteration",
        "adf_flow": flow.name,
        "adf_run_id": run.id,
        "adf_iteration": iteration,
        "adf_duration": duration,
    }
    if error is None:
        _log(
            _DEBUG,
            "flow %s loop iteration %d finished in %.6fs",
            (flow.name, iteration, duration),
            extra,
        )
    else:
        extra["adf_error"] = type(error).__name__
        _log(
            _DEBUG,
            "flow %s loop iteration %d ended after %.6fs: %s",
            (flow.name, iteration, duration, type(error).__name__),
            extra,
        )


@hookimpl
def on_rate_change(
    flow: DataFlow,
    run: RunInfo,
    step: StepInfo,
    rate: float,
    previous: float,
    pause: float,
    error: BaseException | None,
) -> None:
    more: dict[str, Any] = {"adf_rate": rate, "adf_previous_rate": previous, "adf_pause": pause}
    if error is None:
        if logger.isEnabledFor(_DEBUG):
            _step_log(
                _DEBUG, "rate_recovered", flow, run, step, "rate recovers to %.3g/s", rate,
                **more,
            )  # fmt: skip
        return
    if not logger.isEnabledFor(_WARNING):
        return
    _step_log(
        _WARNING, "rate_limited", flow, run, step,
        "was told to slow down (%s: %s): paused %.3fs, rate %.3g/s (was %.3g/s)",
        type(error).__name__, error, pause, rate, previous,
        adf_error=type(error).__name__, **more,
    )  # fmt: skip


@hookimpl
def on_dead_letter(flow: DataFlow, run: RunInfo, step: StepInfo, letter: DeadLetter) -> None:
    if not logger.isEnabledFor(_WARNING):
        return
    where = f" record {list(letter.record)}" if letter.record else ""
    _step_log(
        _WARNING, "dead_letter", flow, run, step,
        "failed for good (%s: %s); %s written to dead letters",
        letter.error_type, letter.message,
        f"its{where} input" if where else "the run's arguments",
        adf_error=letter.error_type, adf_record=letter.record,
    )  # fmt: skip


@hookimpl
def on_breaker_change(
    flow: DataFlow,
    run: RunInfo,
    step: StepInfo,
    state: str,
    previous: str,
    error: BaseException | None,
    retry_in: float | None,
) -> None:
    level = _WARNING if state == "open" else logging.INFO
    if not logger.isEnabledFor(level):
        return
    more: dict[str, Any] = {"adf_state": state, "adf_previous_state": previous}
    if state == "open":
        more["adf_retry_in"] = retry_in
        if error is not None:
            more["adf_error"] = type(error).__name__
        _step_log(
            level, "breaker_open", flow, run, step,
            "circuit breaker opened (%s: %s); trial call in %.3fs",
            type(error).__name__ if error is not None else None, error, retry_in or 0.0,
            **more,
        )  # fmt: skip
        return
    _step_log(
        level, f"breaker_{state}", flow, run, step, "circuit breaker %s (was %s)",
        state.replace("_", "-"), previous.replace("_", "-"),
        **more,
    )  # fmt: skip
