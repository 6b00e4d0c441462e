"""What generated flow code calls off its fast path: result checks, merges, routing
errors, notes, concurrent branches, and the instrumented step call (hooks, options)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
from collections.abc import Coroutine, Iterable, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from ._compiler import Block, Fn, guard_missing
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


def note(error: BaseException, info: StepInfo, flow_name: str) -> None:
    error.add_note(
        f"asyncdataflow: raised by step {info.name!r} at {info.path} of flow {flow_name!r}"
    )


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
        lines.append(f"  - {fn.info.name} at {fn.info.path} is missing {list(missing)}")
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
        # shared by every run of the flow, and kept across rebuilds of its plan
        self._sems = flow._semaphores.setdefault(fn.info.path, WeakKeyDictionary())

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
            call = functools.partial(contextvars.copy_context().run, info.func, **kw)
        else:
            call = functools.partial(info.func, **kw)
        return await loop.run_in_executor(self.executor, call)

    async def _guarded(self, kw: Data) -> Any:
        info = self.info
        if info.limit is not None:
            loop = asyncio.get_running_loop()
            sem = self._sems.get(loop)
            if sem is None:
                sem = self._sems[loop] = asyncio.Semaphore(info.limit)
            async with sem:
                if info.timeout is not None:
                    async with asyncio.timeout(info.timeout):
                        return await self._call(kw)
                return await self._call(kw)
        if info.timeout is not None:
            async with asyncio.timeout(info.timeout):
                return await self._call(kw)
        return await self._call(kw)

    async def __call__(self, data: Data, run: RunInfo | None) -> Data:
        info, hooks, flow = self.info, self.hooks, self.flow
        kw = self.kwargs(data)
        attempt = 1
        emit = hooks.emit
        while True:
            if hooks.step_level:
                emit("before_step_run", flow=flow, run=run, step=info, attempt=attempt, input=data)
            started = time.perf_counter()
            try:
                if self.plain_async:
                    raw = await info.func(**kw)
                else:
                    raw = await self._guarded(kw)
            except BaseException as error:
                duration = time.perf_counter() - started
                if hooks.step_level:
                    emit(
                        "on_step_error",
                        flow=flow,
                        run=run,
                        step=info,
                        error=error,
                        attempt=attempt,
                        duration=duration,
                    )
                delay = None
                if info.retry is not None and isinstance(error, Exception):
                    try:
                        delay = hooks.retry_decider(
                            flow=flow, run=run, step=info, error=error, attempt=attempt
                        )
                    except Exception:
                        logger.exception("asyncdataflow: step_retry_delay hook failed")
                if delay is None:
                    if isinstance(error, Exception):
                        if info.retry is not None:
                            error.add_note(retry_note(info.retry, error, attempt))
                        note(error, info, flow.name)
                    raise
                if hooks.step_level:
                    emit(
                        "on_step_retry",
                        flow=flow,
                        run=run,
                        step=info,
                        error=error,
                        attempt=attempt,
                        delay=delay,
                    )
                await asyncio.sleep(delay)
                attempt += 1
                continue
            result = check_result(raw, info)
            if hooks.step_level:
                emit(
                    "after_step_run",
                    flow=flow,
                    run=run,
                    step=info,
                    result=result,
                    duration=time.perf_counter() - started,
                    attempt=attempt,
                )
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
