"""The instrumented call of one step: hooks, limit, timeout, and the retry decision,
made once and passed to every observer."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._compiler import Fn
from ._dead_letters import IN_RECORD, REPLAYING, DeadLettered, letterable, post
from ._hooks import Hooks, logger
from ._limits import semaphore, semaphores_for
from ._merging import check_result
from ._notes import note
from ._protect import Guard
from .exceptions import DataFlowFunctionResultError
from .info import RunInfo, StepInfo

if TYPE_CHECKING:
    from .flow import DataFlow

Data = dict[str, Any]


class StepRunner:
    """The instrumented call of one step: hooks, limit, timeout, retries."""

    __slots__ = ("_sems", "call", "flow", "fn", "guard", "hooks", "info", "plain_async")

    def __init__(self, flow: DataFlow, fn: Fn, hooks: Hooks) -> None:
        self.flow = flow
        self.fn = fn
        self.info = fn.info
        self.call = fn.call
        self.hooks = hooks
        info = fn.info
        self.plain_async = info.is_async and info.limit is None and info.timeout is None
        # rate= and breaker= (asyncdataflow/_protect.py): only steps that have them
        self.guard = Guard(self) if info.rate is not None or info.breaker is not None else None
        if self.guard is not None:
            self.plain_async = False
        self._sems = semaphores_for(fn.options) if fn.options else None

    def kwargs(self, data: Data) -> Data:
        return {
            n: (data[n] if n in data else d)
            for n, d in self.fn.params
            if n in data or d is not inspect.Parameter.empty
        }

    def _call(self, kw: Data) -> Awaitable[Any]:
        return self.call.call(kw)

    async def _timed(self, awaitable: Awaitable[Any]) -> Any:
        timeout = self.info.timeout
        if timeout is None:
            return await awaitable
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await awaitable
        except TimeoutError as error:
            if deadline.expired() and not error.args:  # ours, not the step's own
                error.args = (timeout_message(self.info, timeout),)
            raise

    def _limited(
        self, kw: Data, limit: int, enter: Callable[[], Awaitable[None]] | None = None
    ) -> Awaitable[Any]:
        """The call holding a slot of the step's limit; ``enter`` (rate and breaker) is
        awaited once the slot is held."""
        assert self._sems is not None
        sem = semaphore(self._sems, asyncio.get_running_loop(), limit)
        return self.call.call_limited(kw, sem, enter)

    def _attempt(self, kw: Data) -> Awaitable[Any]:
        """One call with the step's limit and timeout; the timeout covers the wait for a
        limit's slot: it bounds the whole attempt."""
        limit = self.info.limit
        return self._timed(self._call(kw) if limit is None else self._limited(kw, limit))

    def _retry_delay(self, error: BaseException, attempt: int, run: RunInfo | None) -> float | None:
        """Whether and when the step runs again: the seconds before the next attempt, or
        ``None`` (then ``error`` carries a note saying why, when the step has a policy).
        The one place that decides; observers are told the answer."""
        policy = self.info.retry
        # a wrong result type is a bug, not a fault, and a cancellation is not a failure:
        # neither is ever retried
        if (
            policy is None
            or not isinstance(error, Exception)
            or isinstance(error, DataFlowFunctionResultError)
        ):
            return None
        try:
            delay: float | None = self.hooks.retry_decider(
                flow=self.flow, run=run, step=self.info, error=error, attempt=attempt
            )
        except Exception as hook_error:
            logger.exception("asyncdataflow: step_retry_delay hook failed")
            why = (
                f"not retried: a step_retry_delay hook failed "
                f"({type(hook_error).__name__}: {hook_error}); {attempt} attempt(s) made"
            )
        else:
            if delay is not None:
                return delay
            why = policy.refusal(error, attempt) or (
                f"a step_retry_delay hook declined to retry; {attempt} attempt(s) made"
            )
        text = f"asyncdataflow: {why}"
        if text not in getattr(error, "__notes__", ()):
            error.add_note(text)
        return None

    async def _dead_letter(
        self, error: Exception, data: Data, run: RunInfo | None, attempts: int
    ) -> None:
        """The step failed for good and has a sink. In a source's record, hand the failure
        to the record (it writes the letter with the record's input and is dropped);
        otherwise write the letter (the run's arguments as its input) and let the error
        go on. Not while ``flow.replay`` runs: the letter replayed stays instead."""
        if REPLAYING.get():
            return
        if IN_RECORD.get():
            raise DeadLettered(error, self.info, attempts) from error
        letter_input = run.kwargs if run is not None else data
        await post(self.hooks, self.flow, run, self.info, error, letter_input, attempts)
        error.add_note(f"asyncdataflow: written to dead letters {self.info.dead_letter!r}")

    async def pause_before_retry(
        self, run: RunInfo | None, attempt: int, error: BaseException, delay: float
    ) -> None:
        """Tell ``on_step_retry`` that attempt ``attempt`` failed and another follows,
        then wait ``delay`` seconds (the step and a source share this)."""
        tell = self.hooks.on_step_retry
        if tell is not None:
            tell(
                flow=self.flow, run=run, step=self.info, attempt=attempt, error=error,
                delay=delay,
            )  # fmt: skip
        await asyncio.sleep(delay)

    async def __call__(self, data: Data, run: RunInfo | None) -> Data:
        # run is None only in a flow whose steps can call no hook (see DataFlow._build)
        info, hooks, flow = self.info, self.hooks, self.flow
        kw = self.kwargs(data)
        attempt = 1
        before, after, failed = hooks.before_step_run, hooks.after_step_run, hooks.on_step_error
        while True:
            if before is not None:
                before(flow=flow, run=run, step=info, attempt=attempt, input=data)
            started = time.perf_counter()
            try:
                if self.plain_async:
                    raw = await info.func(**kw)
                elif self.guard is not None:
                    raw = await self.guard.call(kw, run)
                else:
                    raw = await self._attempt(kw)
                result = check_result(raw, info)
            except BaseException as error:
                duration = time.perf_counter() - started
                delay = self._retry_delay(error, attempt, run)
                if failed is not None:
                    failed(
                        flow=flow, run=run, step=info, attempt=attempt, error=error,
                        duration=duration, final=delay is None, delay=delay,
                    )  # fmt: skip
                if delay is None:
                    if not isinstance(error, DataFlowFunctionResultError):
                        note(error, info, flow.name)
                    if info.dead_letter is not None and isinstance(error, Exception):
                        if letterable(error):
                            await self._dead_letter(error, data, run, attempt)
                    raise
                await self.pause_before_retry(run, attempt, error, delay)
                attempt += 1
                continue
            if after is not None:
                after(
                    flow=flow, run=run, step=info, attempt=attempt, result=result,
                    duration=time.perf_counter() - started,
                )  # fmt: skip
            return result


def timeout_message(info: StepInfo, timeout: float) -> str:
    """What a ``TimeoutError`` from ``step(..., timeout=)`` says (it had no message)."""
    return (
        f"step {info.name!r} at {info.path} did not finish within its timeout of "
        f"{timeout:g} s (step(..., timeout={timeout:g})); the wait for a limit slot, a "
        f"rate token or the breaker counts too"
    )
