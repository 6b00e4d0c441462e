"""The instrumented call of one step: hooks, limit, timeout, retries."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ._calls import call_sync
from ._compiler import Fn
from ._hooks import Hooks, logger
from ._limits import ThreadSlot, release_threadsafe, semaphore, semaphores_for
from ._merging import check_result
from ._notes import note, retry_note
from ._protect import Guard
from .exceptions import DataFlowFunctionResultError
from .info import RunInfo

if TYPE_CHECKING:
    from .flow import DataFlow

Data = dict[str, Any]


class StepRunner:
    """The instrumented call of one step: hooks, limit, timeout, retries."""

    __slots__ = (
        "_sems", "ctx", "executor", "flow", "fn", "guard", "hooks", "info", "plain_async",
    )  # fmt: skip

    def __init__(self, flow: DataFlow, fn: Fn, hooks: Hooks, executor: Executor | None) -> None:
        self.flow = flow
        self.fn = fn
        self.info = fn.info
        self.hooks = hooks
        self.executor = executor
        self.ctx = executor is None or isinstance(executor, ThreadPoolExecutor)
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

    async def _call(self, kw: Data) -> Any:
        info = self.info
        if info.is_async:
            return await info.func(**kw)
        if info.inline:
            return info.func(**kw)
        loop = asyncio.get_running_loop()
        if self.ctx:
            call = functools.partial(contextvars.copy_context().run, call_sync, info.func, **kw)
        else:
            call = functools.partial(call_sync, info.func, **kw)
        return await loop.run_in_executor(self.executor, call)

    async def _timed(self, awaitable: Awaitable[Any]) -> Any:
        if self.info.timeout is None:
            return await awaitable
        async with asyncio.timeout(self.info.timeout):
            return await awaitable

    async def _guarded(self, kw: Data) -> Any:
        # the timeout covers the wait for a limit's slot: it bounds the whole attempt
        if self.info.limit is None:
            return await self._timed(self._call(kw))
        return await self._timed(self._limited(kw, self.info.limit))

    async def _limited(
        self, kw: Data, limit: int, enter: Callable[[], Awaitable[None]] | None = None
    ) -> Any:
        """``enter`` (rate and breaker) is awaited once the slot is held."""
        info = self.info
        loop = asyncio.get_running_loop()
        assert self._sems is not None
        sem = semaphore(self._sems, loop, limit)
        if info.is_async or info.inline:
            async with sem:
                if enter is not None:
                    await enter()
                return await self._call(kw)
        # a sync step keeps running in its worker after a timeout or a cancellation:
        # its slot is freed when the worker is done, not when the await gives up
        await sem.acquire()
        if enter is not None:
            try:
                await enter()
            except BaseException:
                sem.release()
                raise
        if self.ctx:
            slot = ThreadSlot(loop, sem)
            call = functools.partial(contextvars.copy_context().run, slot.run, info.func, **kw)
            try:
                return await loop.run_in_executor(self.executor, call)
            finally:
                slot.leave()
        assert self.executor is not None
        try:  # one callable: the step's own parameters never meet submit()'s
            cf = self.executor.submit(functools.partial(call_sync, info.func, **kw))
        except BaseException:
            sem.release()
            raise
        cf.add_done_callback(lambda _: release_threadsafe(loop, sem))
        return await asyncio.wrap_future(cf)

    async def __call__(self, data: Data, run: RunInfo | None) -> Data:
        info, hooks, flow = self.info, self.hooks, self.flow
        kw = self.kwargs(data)
        attempt = 1
        tell = hooks.emit if hooks.step_level else None
        while True:
            if tell:
                tell("before_step_run", flow=flow, run=run, step=info, attempt=attempt, input=data)
            started = time.perf_counter()
            try:
                if self.plain_async:
                    raw = await info.func(**kw)
                elif self.guard is not None:
                    raw = await self.guard.call(kw, run)
                else:
                    raw = await self._guarded(kw)
                result = check_result(raw, info)
            except BaseException as error:
                if tell:
                    duration = time.perf_counter() - started
                    tell(
                        "on_step_error", flow=flow, run=run, step=info, attempt=attempt,
                        error=error, duration=duration,
                    )  # fmt: skip
                delay = None
                # a wrong result type is a bug, not a fault: never retried
                retryable = isinstance(error, Exception) and not isinstance(
                    error, DataFlowFunctionResultError
                )
                if info.retry is not None and retryable:
                    try:
                        delay = hooks.retry_decider(
                            flow=flow, run=run, step=info, error=error, attempt=attempt
                        )
                    except Exception:
                        logger.exception("asyncdataflow: step_retry_delay hook failed")
                if delay is None:
                    if info.retry is not None and retryable:
                        text = retry_note(info.retry, error, attempt)
                        if text not in getattr(error, "__notes__", ()):
                            error.add_note(text)
                    if not isinstance(error, DataFlowFunctionResultError):
                        note(error, info, flow.name)
                    raise
                if tell:
                    tell(
                        "on_step_retry", flow=flow, run=run, step=info, attempt=attempt,
                        error=error, delay=delay,
                    )  # fmt: skip
                await asyncio.sleep(delay)
                attempt += 1
                continue
            if tell:
                duration = time.perf_counter() - started
                tell(
                    "after_step_run", flow=flow, run=run, step=info, attempt=attempt,
                    result=result, duration=duration,
                )  # fmt: skip
            return result
