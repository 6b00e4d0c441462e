"""The hooks a plugin can implement, under the pluggy project name ``asyncdataflow``.

Every hook is called with keyword arguments only, so an implementation takes just the
arguments it needs, and a hook can grow an argument without breaking older plugins.

Arguments shared by the hooks:

- ``flow``: the :class:`~asyncdataflow.DataFlow` being run.
- ``run``: a :class:`~asyncdataflow.RunInfo`: ``run.id`` is unique to one run (one call of
  the flow, or one iteration of an infinity loop); ``run.kwargs`` are the call's arguments.
- ``step``: a :class:`~asyncdataflow.StepInfo`: ``step.name`` (display name),
  ``step.path`` (its place in the definition, e.g. ``definition[2][0]``), ``step.parent``
  (the path of the block that holds it), and the step's options (``timeout``, ``retry``,
  ``limit``, ``rate``, ``breaker``).

Observer hooks (all but :func:`step_retry_delay` and :func:`step_slow_down`) may be
implemented by many plugins; each implementation is called in turn, and one that raises is
logged on the ``asyncdataflow`` logger and never breaks the run. Hooks are called on the
event loop, in the task that runs the step, so ``contextvars`` (and OpenTelemetry's
current span) set in ``before_step_run`` are seen by the step, also when it runs in a
thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .durable import DeadLetter
    from .flow import DataFlow
    from .info import RunInfo, StepInfo

PROJECT_NAME = "asyncdataflow"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def before_flow_run(flow: DataFlow, run: RunInfo, kwargs: Mapping[str, Any]) -> None:
    """A run of ``flow`` is starting.

    Args:
        flow: the flow.
        run: the run; ``run.id`` identifies it in every later hook call.
        kwargs: the keyword arguments the flow was called with (do not mutate).
    """


@hookspec
def after_flow_run(
    flow: DataFlow,
    run: RunInfo,
    result: dict[str, Any] | None,
    error: BaseException | None,
    duration: float,
) -> None:
    """A run of ``flow`` has finished.

    Args:
        result: the run's result, or ``None`` when it failed.
        error: the exception that ended the run (also ``asyncio.CancelledError``), or
            ``None`` when it succeeded.
        duration: seconds since ``before_flow_run``.
    """


@hookspec
def before_step_run(
    flow: DataFlow, run: RunInfo, step: StepInfo, attempt: int, input: Mapping[str, Any]
) -> None:
    """``step`` is about to be called.

    Args:
        attempt: 1 for the first call, 2 for the first retry, and so on.
        input: the data the step was selected from (do not mutate).
    """


@hookspec
def after_step_run(
    flow: DataFlow,
    run: RunInfo,
    step: StepInfo,
    result: dict[str, Any],
    duration: float,
    attempt: int,
) -> None:
    """``step`` returned ``result`` (its output dict) after ``duration`` seconds.

    Args:
        attempt: which attempt succeeded (1 when it succeeded at once).
    """


@hookspec
def on_step_error(
    flow: DataFlow,
    run: RunInfo,
    step: StepInfo,
    error: BaseException,
    attempt: int,
    duration: float,
    final: bool,
    delay: float | None,
) -> None:
    """``step`` raised ``error`` on attempt ``attempt`` (called for every failed attempt,
    once the runner has decided whether to retry; a cancelled step reports
    ``asyncio.CancelledError``).

    Args:
        duration: seconds this attempt took.
        final: ``True`` when the step fails for good (``error`` propagates); ``False``
            when it runs again (``on_step_retry`` follows).
        delay: the seconds before the next attempt, or ``None`` when ``final``.
    """


@hookspec
def on_step_skipped(
    flow: DataFlow,
    run: RunInfo,
    step: StepInfo,
    missing: tuple[str, ...],
    available: tuple[str, ...],
) -> None:
    """``step`` was not taken.

    Args:
        missing: its required parameters that the input lacked. Empty when the step could
            have run but its whole block was not taken (its guard was not taken).
        available: the keys the input had.
    """


@hookspec
def on_step_retry(
    flow: DataFlow,
    run: RunInfo,
    step: StepInfo,
    error: BaseException,
    attempt: int,
    delay: float,
) -> None:
    """``step`` failed on ``attempt`` with ``error`` and will run again after ``delay``
    seconds."""


@hookspec
def after_loop_iteration(
    flow: DataFlow,
    run: RunInfo,
    iteration: int,
    result: dict[str, Any] | None,
    error: BaseException | None,
    duration: float,
) -> None:
    """One iteration of an ``infinity_loop`` flow has finished (``iteration`` counts from
    1). ``run`` is that iteration's run."""


@hookspec
def on_rate_change(
    flow: DataFlow,
    run: RunInfo,
    step: StepInfo,
    rate: float,
    previous: float,
    pause: float,
    error: BaseException | None,
) -> None:
    """The rate of ``step`` (``step(..., rate=...)``) changed.

    Either a call of the step got a "slow down" answer: ``error`` is that answer, the
    step's bucket is paused for ``pause`` seconds for every caller and its rate lowered
    from ``previous`` to ``rate`` calls a second (``rate == previous`` when it was paused
    already, or is at its floor). Or the rate recovers one step: ``error`` is ``None``,
    ``pause`` is 0 and ``rate > previous``; it is back at ``step.rate.per_second`` in the
    end.

    The bucket is shared by every flow that holds the step: the hook is called through
    the flow whose run saw the change, once.
    """


@hookspec
def on_breaker_change(
    flow: DataFlow,
    run: RunInfo,
    step: StepInfo,
    state: str,
    previous: str,
    error: BaseException | None,
    retry_in: float | None,
) -> None:
    """The circuit breaker of ``step`` (``step(..., breaker=...)``) went from ``previous``
    to ``state``; each is ``"closed"``, ``"open"`` or ``"half_open"``.

    Args:
        error: the failure that opened it (``None`` for the other changes).
        retry_in: when it opened, the seconds until it lets a trial call through;
            otherwise ``None``.

    ``run`` is the run whose call made the change (its failure, the trial call it
    started, the trial's success). Like the breaker, shared by every flow holding the step.
    """


@hookspec
def on_dead_letter(
    flow: DataFlow,
    run: RunInfo,
    step: StepInfo,
    letter: DeadLetter,
) -> None:
    """``step`` failed for good (after its retries) and ``letter`` was written to its
    dead-letter sink (``step(..., dead_letter=...)`` or ``DataFlow(..., dead_letter=...)``).
    In a stream the record is dropped and the stream goes on; outside one, the step's
    exception still propagates.

    Args:
        letter: what the sink now holds: the input, the step's name and place, the
            exception's type, message and notes, the attempts, the time and the record.
    """


@hookspec(firstresult=True)
def step_slow_down(step: StepInfo, error: BaseException) -> float | None:
    """Whether ``error``, raised by a call of a step that has a ``rate=``, means "slow
    down": return the seconds the step's callers should pause (0 to only lower the
    rate), or ``None`` when it does not. The first non-``None`` answer wins.

    The HTTP pack answers for its steps' 429 and 503 responses (``Retry-After``).
    Without an answer, an exception listed in the step's ``Rate(on=...)`` is a slow-down.
    """


@hookspec(firstresult=True)
def step_retry_delay(
    flow: DataFlow, run: RunInfo, step: StepInfo, error: BaseException, attempt: int
) -> float | None:
    """Decide whether a failed step runs again: return the seconds to wait before the next
    attempt, or ``None`` to let ``error`` propagate. The first non-``None`` answer wins.

    Asked only for steps that have a retry policy (``step(..., retry=Retry(...))`` or the
    flow's ``retry=``); ``step.retry`` is that policy. The built-in retry plugin answers
    last, from the policy; a plugin answers first to refine it (the HTTP pack honours a
    ``Retry-After`` header this way).

    Args:
        attempt: the attempt that just failed (from 1).
    """


#: the hooks that observe (many implementations, each called on its own, none can break a
#: run): every hook above but the ones that decide (``firstresult``)
OBSERVER_HOOKS = frozenset(
    name
    for name, spec in list(globals().items())
    if callable(spec)
    and (opts := getattr(spec, f"{PROJECT_NAME}_spec", None)) is not None
    and not opts.get("firstresult")
)
