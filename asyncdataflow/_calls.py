"""How a step is called: one call object per step, chosen when the flow is compiled.

The generated code writes the call out (:meth:`StepCall.expression`, no call overhead on
the fast path); the instrumented runner calls the same object (:meth:`StepCall.call`,
and :meth:`StepCall.call_limited` under a concurrency limit). :func:`step_call` is the one
place that decides how: awaited, inline on the loop, in a worker thread (with the
caller's ``contextvars``), or in a worker process (without them: a context does not
cross a process boundary).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from ._limits import ThreadSlot, release_threadsafe


def call_sync(func: Any, /, **kwargs: Any) -> Any:
    """Call a sync step in a worker thread or process. A StopIteration cannot cross into
    an asyncio future (the run would hang), so it becomes a RuntimeError, as PEP 479 does
    for a coroutine."""
    try:
        return func(**kwargs)
    except StopIteration as exc:
        raise RuntimeError("step raised StopIteration") from exc


Enter = Callable[[], Awaitable[None]]


async def _acquire(sem: asyncio.Semaphore, enter: Enter | None) -> None:
    """A slot of ``sem``, then ``enter``; the slot is given back if ``enter`` fails."""
    await sem.acquire()
    if enter is not None:
        try:
            await enter()
        except BaseException:
            sem.release()
            raise


class StepCall:
    """How one step's function is called (base class: an ``async def`` step, awaited)."""

    __slots__ = ("executor", "func")

    def __init__(self, func: Any, executor: Executor | None) -> None:
        self.func = func
        self.executor = executor

    def expression(self, func: str, args: str) -> str:
        """The call as the generated code writes it, given the names of the function and
        of its keyword arguments (``a=..., b=...``); names the generated module defines:
        ``_loop``, ``_partial``, ``_cc``, ``_sync``, ``EXEC``."""
        return f"await {func}({args})"

    async def call(self, kw: dict[str, Any]) -> Any:
        return await self.func(**kw)

    async def call_limited(
        self, kw: dict[str, Any], sem: asyncio.Semaphore, enter: Enter | None = None
    ) -> Any:
        """The call holding a slot of ``sem`` for as long as it runs; ``enter`` (the step's
        rate and breaker) is awaited once the slot is held."""
        async with sem:
            if enter is not None:
                await enter()
            return await self.call(kw)


class InlineCall(StepCall):
    """A sync step marked :func:`asyncdataflow.inline`: called on the loop."""

    __slots__ = ()

    def expression(self, func: str, args: str) -> str:
        return f"{func}({args})"

    async def call(self, kw: dict[str, Any]) -> Any:
        return self.func(**kw)


class _ExecutorCall(StepCall):
    """A sync step run by an executor: ``_work`` is what the worker calls."""

    __slots__ = ()
    #: the generated code's spelling of the callable the worker gets, before the step
    WORK = "_sync"

    def expression(self, func: str, args: str) -> str:
        sep = ", " if args else ""
        return f"await _loop().run_in_executor(EXEC, _partial({self.WORK}, {func}{sep}{args}))"

    def _work(self, kw: dict[str, Any]) -> Callable[[], Any]:
        return functools.partial(call_sync, self.func, **kw)

    async def call(self, kw: dict[str, Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._work(kw))


class ThreadCall(_ExecutorCall):
    """A sync step in a worker thread (the loop's default pool or a ThreadPoolExecutor),
    in a copy of the caller's context."""

    __slots__ = ()
    WORK = "_cc().run, _sync"

    def _work(self, kw: dict[str, Any]) -> Callable[[], Any]:
        return functools.partial(contextvars.copy_context().run, call_sync, self.func, **kw)

    async def call_limited(
        self, kw: dict[str, Any], sem: asyncio.Semaphore, enter: Enter | None = None
    ) -> Any:
        # the step keeps running in its worker after a timeout or a cancellation: its slot
        # is freed when the worker is done (or never started), not when the await gives up
        await _acquire(sem, enter)
        loop = asyncio.get_running_loop()
        slot = ThreadSlot(loop, sem)
        work = functools.partial(call_sync, self.func, **kw)
        call = functools.partial(contextvars.copy_context().run, slot.run, work)
        try:
            return await loop.run_in_executor(self.executor, call)
        finally:
            slot.leave()


class ProcessCall(_ExecutorCall):
    """A sync step in another executor (a process pool): no context crosses over."""

    __slots__ = ()

    async def call_limited(
        self, kw: dict[str, Any], sem: asyncio.Semaphore, enter: Enter | None = None
    ) -> Any:
        # the slot is freed when the worker is done, not when the await gives up
        await _acquire(sem, enter)
        loop = asyncio.get_running_loop()
        assert self.executor is not None
        try:  # one callable: the step's own parameters never meet submit()'s
            cf = self.executor.submit(self._work(kw))
        except BaseException:
            sem.release()
            raise
        cf.add_done_callback(lambda _: release_threadsafe(loop, sem))
        return await asyncio.wrap_future(cf)


def step_call(func: Any, is_async: bool, inline: bool, executor: Executor | None) -> StepCall:
    """The one place that decides how a step is called."""
    if is_async:
        return StepCall(func, executor)
    if inline:
        return InlineCall(func, executor)
    if executor is None or isinstance(executor, ThreadPoolExecutor):
        return ThreadCall(func, executor)
    return ProcessCall(func, executor)
