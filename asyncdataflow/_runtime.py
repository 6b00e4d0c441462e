"""What generated flow code calls off its fast path: result checks, merges, routing
errors, notes, concurrent branches, and the instrumented step call (hooks, options)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import os
import threading
import time
from collections.abc import Awaitable, Coroutine, Iterable, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from ._compiler import Block, Fn, guard_missing
from ._names import did_you_mean
from .exceptions import (
    DataFlowFunctionResultError,
    DataFlowMergeResultError,
    DataFlowRoutingError,
)
from .info import RunInfo, StepInfo
from .options import Retry

if TYPE_CHECKING:
    from .flow import DataFlow

logger = logging.getLogger("asyncdataflow")

Data = dict[str, Any]


_NO_NOTE = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


def note(error: BaseException, info: StepInfo, flow_name: str) -> None:
    """Say which step raised ``error``, once (a step may re-raise one stored exception)."""
    if isinstance(error, _NO_NOTE):
        return
    text = f"asyncdataflow: raised by step {info.name!r} at {info.path} of flow {flow_name!r}"
    if text not in getattr(error, "__notes__", ()):
        error.add_note(text)


def call_sync(func: Any, /, **kwargs: Any) -> Any:
    """Call a sync step in a worker thread or process. A StopIteration cannot cross into
    an asyncio future (the run would hang), so it becomes a RuntimeError, as PEP 479 does
    for a coroutine."""
    try:
        return func(**kwargs)
    except StopIteration as exc:
        raise RuntimeError("step raised StopIteration") from exc


def retry_note(policy: Retry, error: BaseException, attempt: int) -> str:
    if not isinstance(error, policy.on):
        on = policy.on if isinstance(policy.on, tuple) else (policy.on,)
        names = ", ".join(t.__name__ for t in on)
        return (
            f"asyncdataflow: not retried: {type(error).__name__} is not listed in "
            f"Retry(on=({names},)); {attempt} attempt(s) made"
        )
    if attempt >= policy.attempts:
        return (
            f"asyncdataflow: gave up: {attempt} attempt(s) made (Retry(attempts={policy.attempts}))"
        )
    return f"asyncdataflow: a step_retry_delay hook declined to retry; {attempt} attempt(s) made"


def check_result(result: Any, info: StepInfo) -> Data:
    if result is None:
        return {}
    if isinstance(result, Mapping):  # a dict subclass too: a plain copy, so that a
        return dict(result)  # defaultdict's __missing__ cannot fake a present key
    hint = ""
    if inspect.iscoroutine(result):
        result.close()
        hint = (
            " It returned a coroutine: the function is sync but produced an awaitable; "
            "declare it `async def` so the flow awaits it."
        )
    raise DataFlowFunctionResultError(
        f"step {info.name!r} at {info.path} returned {type(result).__name__}, not a dict "
        f"or None.{hint} To name a plain return value, wrap the step: "
        f"args_mapper(func, output='name') (or output=['a', 'b'] for a tuple)."
    )


def _differs(a: Any, b: Any) -> bool:
    if a is b:
        return False
    try:
        return bool(a != b)
    except Exception:
        return True


def merge(left: Data, right: Data, left_name: str, right_name: str) -> Data:
    """A new dict with both; an unequal value under a shared key raises."""
    if not right:
        return left
    if not left:
        return right
    out = dict(left)
    for key, value in right.items():
        if key in out and _differs(out[key], value):
            raise DataFlowMergeResultError(
                f"key {key!r} has unequal values from {left_name} ({out[key]!r:.80}) and "
                f"{right_name} ({value!r:.80}); rename one with args_mapper(..., "
                f"output={{...}}) or drop it"
            )
        out[key] = value
    return out


def merge_branches(results: list[Data], names: list[str]) -> Data:
    out = results[0]
    name = names[0]
    for r, n in zip(results[1:], names[1:], strict=True):
        out = merge(out, r, name, n)
        name = f"{name} + {n}" if out is not r else n
    return out


def _describe(node: Fn | Block, data: Any) -> str:
    lines = []
    for fn, missing in guard_missing(node, data):
        hints = "".join(did_you_mean(n, data, exclude=fn.info.params) for n in missing)
        lines.append(f"  - {fn.info.name} at {fn.info.path} is missing {list(missing)}{hints}")
    return "\n".join(lines)


def routing_error(node: Fn | Block, data: Any, first: bool) -> DataFlowRoutingError:
    if first:
        missing = sorted({n for _, m in guard_missing(node, data) for n in m})
        example = ", ".join(f"{n}=..." for n in missing) or "..."
        return DataFlowRoutingError(
            f"the flow's first item ({node.path}) could not be taken: a flow needs the "
            f"arguments of its first step.\n{_describe(node, data)}\n"
            f"  available keys: {sorted(data)}\n"
            f"Pass the missing arguments when calling the flow: flow({example})."
        )
    return DataFlowRoutingError(
        f"no branch of the concurrent block at {node.path} could be taken: at least one "
        f"step must get its arguments and run.\n{_describe(node, data)}\n"
        f"  available keys: {sorted(data)}\n"
        f"Make the step before the block return the missing keys, or rename them with "
        f"args_mapper."
    )


async def gather_branches(coros: list[Coroutine[Any, Any, Data]]) -> list[Data]:
    """Run branches at once; on the first failure cancel and await the others, then
    raise that failure unchanged."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        await cancel_and_wait(tasks)
        raise


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel the tasks, wait until every one has finished, and mark their exceptions
    retrieved (the caller raises the one that matters)."""
    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    pending = [t for t in tasks if not t.done()]
    if pending:
        await asyncio.wait(pending)
    for t in tasks:
        if not t.cancelled():
            t.exception()


hook_logger = logging.getLogger("asyncdataflow.hooks")


def _traced(hook: str, plugin: str, func: Any) -> Any:
    """``ASYNCDATAFLOW_TRACE_HOOKS=1``: log every observer hook call (DEBUG, logger
    ``asyncdataflow.hooks``) with the plugin and the names of the arguments it got."""

    @functools.wraps(func)
    def traced(**kwargs: Any) -> Any:
        hook_logger.debug("hook %s -> plugin %s (%s)", hook, plugin, ", ".join(kwargs))
        return func(**kwargs)

    return traced


class Hooks:
    """Per flow: the implementations of each observer hook, called one by one so that a
    failing observer is logged and never breaks a run."""

    OBSERVERS = (
        "before_flow_run",
        "after_flow_run",
        "before_step_run",
        "after_step_run",
        "on_step_error",
        "on_step_skipped",
        "on_step_retry",
        "after_loop_iteration",
    )

    def __init__(self, pm: Any) -> None:
        self.pm = pm
        self.impls: dict[str, tuple[tuple[Any, tuple[str, ...], str], ...]] = {}
        for name in self.OBSERVERS:
            hook = getattr(pm.hook, name)
            impls = [
                (i.function, tuple(i.argnames), i.plugin_name)
                for i in reversed(hook.get_hookimpls())
                if not (i.hookwrapper or getattr(i, "wrapper", False))
            ]
            if os.environ.get("ASYNCDATAFLOW_TRACE_HOOKS"):
                impls = [(_traced(name, plugin, f), args, plugin) for f, args, plugin in impls]
            self.impls[name] = tuple(impls)
        self.retry_decider = pm.hook.step_retry_delay
        self.any = any(self.impls.values())
        self.step_level = any(
            self.impls[n]
            for n in ("before_step_run", "after_step_run", "on_step_error", "on_step_retry")
        )
        self.flow_level = bool(self.impls["before_flow_run"] or self.impls["after_flow_run"])

    def emit(self, name: str, **kwargs: Any) -> None:
        for func, argnames, plugin in self.impls[name]:
            try:
                func(**{a: kwargs[a] for a in argnames if a in kwargs})
            except Exception:
                logger.exception("asyncdataflow: plugin %r failed in hook %s", plugin, name)


_LIMITS: WeakKeyDictionary[Any, WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]]
_LIMITS = WeakKeyDictionary()


def _release_threadsafe(loop: asyncio.AbstractEventLoop, sem: asyncio.Semaphore) -> None:
    try:
        loop.call_soon_threadsafe(sem.release)
    except RuntimeError:  # the loop is closed: nobody waits for the slot any more
        pass


class _ThreadSlot:
    """One slot of a limit held by a sync step in a worker thread: released exactly once,
    by the worker when the call ends, or on the loop when the call never started."""

    __slots__ = ("lock", "loop", "sem", "state")

    def __init__(self, loop: asyncio.AbstractEventLoop, sem: asyncio.Semaphore) -> None:
        self.loop, self.sem = loop, sem
        self.lock = threading.Lock()
        self.state = "waiting"

    def run(self, func: Any, /, **kwargs: Any) -> Any:  # in the worker thread
        with self.lock:
            if self.state == "abandoned":
                return None  # the awaiting side gave up before the call started
            self.state = "running"
        try:
            return call_sync(func, **kwargs)
        finally:
            with self.lock:
                self.state = "done"
            _release_threadsafe(self.loop, self.sem)

    def leave(self) -> None:  # on the loop, once the await has ended, however it ended
        with self.lock:
            if self.state == "waiting":
                self.state = "abandoned"
                self.sem.release()


class StepRunner:
    """The instrumented call of one step: hooks, limit, timeout, retries."""

    __slots__ = ("_sems", "ctx", "executor", "flow", "fn", "hooks", "info", "plain_async")

    def __init__(self, flow: DataFlow, fn: Fn, hooks: Hooks, executor: Executor | None) -> None:
        self.flow = flow
        self.fn = fn
        self.info = fn.info
        self.hooks = hooks
        self.executor = executor
        from concurrent.futures import ThreadPoolExecutor

        self.ctx = executor is None or isinstance(executor, ThreadPoolExecutor)
        info = fn.info
        self.plain_async = info.is_async and info.limit is None and info.timeout is None
        # a limit belongs to its step(...) object: shared by every run of every flow that
        # holds it, and kept across rebuilds of a plan
        self._sems = _LIMITS.setdefault(fn.options, WeakKeyDictionary()) if fn.options else None

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

    def _semaphore(self, loop: asyncio.AbstractEventLoop, limit: int) -> asyncio.Semaphore:
        sems = self._sems
        assert sems is not None
        sem = sems.get(loop)
        if sem is None:
            # a semaphore that had a waiter holds its loop: forget closed loops here, or
            # every asyncio.run() would leave one behind for as long as the step lives
            for old in [lp for lp in sems if lp.is_closed()]:
                del sems[old]
            sem = sems[loop] = asyncio.Semaphore(limit)
        return sem

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

    async def _limited(self, kw: Data, limit: int) -> Any:
        info = self.info
        loop = asyncio.get_running_loop()
        sem = self._semaphore(loop, limit)
        if info.is_async or info.inline:
            async with sem:
                return await self._call(kw)
        # a sync step keeps running in its worker after a timeout or a cancellation:
        # its slot is freed when the worker is done, not when the await gives up
        await sem.acquire()
        if self.ctx:
            slot = _ThreadSlot(loop, sem)
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
        cf.add_done_callback(lambda _: _release_threadsafe(loop, sem))
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


def report_skipped(
    hooks: Hooks, flow: DataFlow, run: RunInfo | None, node: Fn | Block, data: Data
) -> None:
    available = tuple(data)
    for fn in node.steps():
        hooks.emit(
            "on_step_skipped",
            flow=flow,
            run=run,
            step=fn.info,
            missing=fn.missing(data),
            available=available,
        )
