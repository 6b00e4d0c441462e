"""Sources: steps that yield. What generated code calls for a source (an async or sync
generator function) in a sequential block.

Every value the source yields starts a record; the items after the source in its block
run for that record (the generated ``rest`` function). At most ``window`` records are in
flight: the source is not advanced while the window is full. Records leave in the order
the source yielded them, and the block passes on the last record's output (its input
when the source yields nothing). On a record's failure, or when the run is cancelled,
the records in flight are cancelled and awaited and the source is closed before the
exception goes on. Flows without sources never reach this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import inspect
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ._compiler import Fn
from ._dead_letters import DROPPED, IN_RECORD, DeadLettered, post
from ._gather import cancel_and_wait
from ._hooks import Hooks, logger
from ._limits import semaphore, semaphores_for
from ._merging import check_result, merge
from ._notes import note
from ._step_runner import StepRunner
from .durable import _RECORD, _RESUME, Record, Turns
from .exceptions import DataFlowFunctionResultError
from .info import RunInfo

if TYPE_CHECKING:
    from .flow import DataFlow

Data = dict[str, Any]
Emit = Callable[[Data], Awaitable[None]]
Rest = Callable[..., Coroutine[Any, Any, Data]]

_NO_NOTE = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)
_UNSET: Any = object()  # a record without a position


def _unwrap(item: Any) -> tuple[Any, Any]:
    """A :class:`Record`'s data (``{}`` for ``None``) and position; any other item as is."""
    if item.__class__ is Record:
        return dict(item), item.position
    return item, _UNSET


def _next(gen: Any) -> Any:
    """Advance a sync generator (in a worker thread): its item, or the generator itself
    when it is exhausted (a value it can never yield as a record)."""
    return next(gen, gen)


class _Source:
    """One open generator: advance it one item at a time, close it once."""

    __slots__ = ("ctx", "executor", "gen", "kind", "loop", "pending", "timeout")

    def __init__(self, gen: Any, kind: str, executor: Executor | None, timeout: float | None):
        self.gen = gen
        self.kind = kind  # "async" | "sync" (in a thread) | "inline" (sync, on the loop)
        self.executor = executor
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()
        self.ctx = contextvars.copy_context() if kind == "sync" else None
        self.pending: asyncio.Future[Any] | None = None  # a sync advance under way

    def advancer(self) -> Callable[[], Awaitable[Any]]:
        """A coroutine function giving the next item, raising StopAsyncIteration at the end."""
        if self.kind == "async" and self.timeout is None:
            return self.gen.__anext__  # type: ignore[no-any-return]
        return self.advance

    def items(self) -> AsyncIterator[Any]:
        """The items, for ``async for``: the generator itself when nothing wraps it."""
        if self.kind == "async" and self.timeout is None:
            return self.gen  # type: ignore[no-any-return]
        return self

    def __aiter__(self) -> _Source:
        return self

    def __anext__(self) -> Awaitable[Any]:
        return self.advance()

    async def advance(self) -> Any:
        if self.timeout is None:
            return await self._advance()
        async with asyncio.timeout(self.timeout):
            return await self._advance()

    async def _advance(self) -> Any:
        gen = self.gen
        if self.kind == "async":
            return await gen.__anext__()
        if self.kind == "inline":
            item = next(gen, gen)
        else:
            assert self.ctx is not None
            fut = self.loop.run_in_executor(self.executor, self.ctx.run, _next, gen)
            self.pending = fut
            # shielded: a cancelled wait leaves the thread running; close() waits for it,
            # as a generator that is executing cannot be closed
            item = await asyncio.shield(fut)
            self.pending = None
        if item is gen:
            raise StopAsyncIteration
        return item

    async def close(self) -> None:
        gen = self.gen
        if self.kind == "async":
            await gen.aclose()
            return
        if self.kind == "inline":
            gen.close()
            return
        fut = self.pending
        if fut is not None and not fut.done():
            await asyncio.wait([fut])
        if fut is not None and not fut.cancelled():
            fut.exception()  # retrieved: the error that matters is already on its way
        assert self.ctx is not None
        if gen.gi_frame is not None:  # not finished: run its finally in the thread
            await self.loop.run_in_executor(self.executor, self.ctx.run, gen.close)


class _Sink:
    """What a record's steps emit through (``flow.stream()`` with a window): a record
    that is not the oldest one in flight waits at its first emission until it is."""

    __slots__ = ("down", "gate")

    def __init__(self, down: Emit, gate: asyncio.Future[None] | None) -> None:
        self.down = down
        self.gate = gate

    async def __call__(self, data: Data) -> None:
        if self.gate is not None:
            await self.gate
        await self.down(data)

    def open(self) -> None:
        if self.gate is not None and not self.gate.done():
            self.gate.set_result(None)


class SourceRunner:
    """A source in the plan: called by generated code with the block's data so far and
    the generated function for the rest of the block (``None`` when the source is last)."""

    def __init__(
        self,
        flow: DataFlow,
        fn: Fn,
        hooks: Hooks,
        executor: Executor | None,
        visibility: str,
    ) -> None:
        info = fn.info
        self.flow = flow
        self.fn = fn
        self.info = info
        self.hooks = hooks
        self.window = info.window or 1
        if info.source == "async":
            self.kind = "async"
        else:
            self.kind = "inline" if info.inline else "sync"
        # a generator cannot cross into a process: sync sources advance in threads
        self.executor = executor if isinstance(executor, ThreadPoolExecutor) else None
        self.visibility = visibility
        self.label = f"{info.name} ({info.path})"
        self.retries = StepRunner(flow, fn, hooks)  # its retry decision, for the source
        self.sems = semaphores_for(fn.options) if info.limit else None
        # a record whose step fails for good into a dead-letter sink is dropped
        self.letters = any(s.dead_letter is not None for s in flow.steps)
        # the flow's checkpoint, when this is the source it tracks
        ckpt = getattr(flow, "_checkpoint", None)
        self.ckpt = ckpt if ckpt is not None and ckpt.path == info.path else None

    # -- pieces -----------------------------------------------------------------------

    def kwargs(self, data: Data) -> Data:
        return {
            n: (data[n] if n in data else d)
            for n, d in self.fn.params
            if n in data or d is not inspect.Parameter.empty
        }

    def combine(self, d: Data, item: Data, init: Data) -> Data:
        if self.visibility == "previous":
            return item
        if self.visibility == "initial":
            return merge(init, item, "the call arguments", self.label)
        return merge(d, item, "the data before it", self.label)

    def record_note(self, error: BaseException, index: int) -> None:
        if isinstance(error, _NO_NOTE):
            return
        info = self.info
        text = (
            f"asyncdataflow: in record {index} (counted from 0) of source {info.name!r} at "
            f"{info.path} of flow {self.flow.name!r}"
        )
        if text not in getattr(error, "__notes__", ()):
            error.add_note(text)

    def source_failed(self, error: BaseException, index: int) -> None:
        if isinstance(error, _NO_NOTE):
            return
        if not isinstance(error, DataFlowFunctionResultError):
            note(error, self.info, self.flow.name)
        text = f"asyncdataflow: the source failed after yielding {index} record(s)"
        if text not in getattr(error, "__notes__", ()):
            error.add_note(text)

    @staticmethod
    def record_run(run: RunInfo, index: int) -> RunInfo:
        """What the hooks get for a record's steps: the run, with the record's index."""
        return dataclasses.replace(run, record=(*run.record, index))

    def open(self, kw: Data) -> _Source:
        gen = self.info.func(**kw)
        expected = "__anext__" if self.kind == "async" else "__next__"
        if not hasattr(gen, expected):
            raise DataFlowFunctionResultError(
                f"step {self.info.name!r} at {self.info.path} looks like a generator "
                f"function but returned {type(gen).__name__}; a source must return a "
                f"generator when called"
            )
        return _Source(gen, self.kind, self.executor, self.info.timeout)

    # -- running ----------------------------------------------------------------------

    async def __call__(
        self, d: Data, run: RunInfo | None, init: Data, rest: Rest | None, emit: Emit | None = None
    ) -> Data:
        if self.sems is None:
            return await self._attempts(d, run, init, rest, emit)
        assert self.info.limit is not None
        sem = semaphore(self.sems, asyncio.get_running_loop(), self.info.limit)
        async with sem:  # held while the source is open
            return await self._attempts(d, run, init, rest, emit)

    async def _attempts(
        self, d: Data, run: RunInfo | None, init: Data, rest: Rest | None, emit: Emit | None
    ) -> Data:
        info, hooks, flow = self.info, self.hooks, self.flow
        kw = self.kwargs(d)
        tell = hooks.emit if hooks.step_level else None
        attempt = 1
        while True:
            if tell:
                tell("before_step_run", flow=flow, run=run, step=info, attempt=attempt, input=d)
            started = time.perf_counter()
            progress = [0, False]  # records taken, whether the source itself raised
            try:
                async with self._resumed() as turns:
                    result = await self._drive(kw, d, rest, run, init, emit, progress, turns)
            except BaseException as error:
                delay = None
                if progress[1] and progress[0] and info.retry is not None:
                    # records were passed on: starting again would repeat them
                    text = (
                        f"asyncdataflow: not retried: the source had yielded {progress[0]} "
                        f"record(s); a source is retried only before its first record"
                    )
                    if isinstance(error, Exception) and text not in getattr(error, "__notes__", ()):
                        error.add_note(text)
                elif progress[1]:  # the source itself failed before its first record
                    delay = self.retries._retry_delay(error, attempt, run)
                if tell:
                    duration = time.perf_counter() - started
                    tell(
                        "on_step_error", flow=flow, run=run, step=info, attempt=attempt,
                        error=error, duration=duration, final=delay is None, delay=delay,
                    )  # fmt: skip
                if delay is None:
                    raise
                await self.retries.pause_before_retry(run, attempt, error, delay)
                attempt += 1
                continue
            if tell:
                duration = time.perf_counter() - started
                tell(
                    "after_step_run", flow=flow, run=run, step=info, attempt=attempt,
                    result=result, duration=duration,
                )  # fmt: skip
            return result

    @contextlib.asynccontextmanager
    async def _resumed(self) -> AsyncIterator[Turns | None]:
        """While the source runs: the checkpoint's run (one at a time), what
        resume_position() returns, and the checkpoint's turns (``None`` without one)."""
        ckpt = self.ckpt
        token = turns = None
        if ckpt is not None:
            ckpt.begin()  # one run at a time: its positions are one sequence
        try:
            if ckpt is not None:
                token = _RESUME.set(await ckpt.load())  # what resume_position() returns
                turns = ckpt.turns()
            elif _RESUME.get() is not None:  # inside a record of the tracked source
                token = _RESUME.set(None)  # this source starts from its beginning
            yield turns
        finally:
            if token is not None:
                _RESUME.reset(token)
            if ckpt is not None:
                ckpt.running = False

    async def _drive(self, kw: Data, d: Data, rest: Rest | None, *args: Any) -> Data:
        run, init, emit, progress, turns = args
        try:
            source = self.open(kw)
        except BaseException as error:
            progress[1] = True
            self.source_failed(error, 0)
            raise
        if rest is not None and self.letters:
            rest = self._lettered(rest)
        try:
            if self.window == 1 or rest is None:
                result = await self._serial(source, d, run, init, rest, emit, progress, turns)
            else:
                result = await self._windowed(source, d, run, init, rest, emit, progress, turns)
        except BaseException:
            try:
                await source.close()
            except Exception:  # the first error is the one that matters
                logger.exception("asyncdataflow: closing source %s failed", self.label)
            raise
        await source.close()
        return result

    def _lettered(self, rest: Rest) -> Rest:
        """``rest`` for a stream with dead letters: a record whose step failed for good
        writes its letter (with the record's input) and yields :data:`DROPPED`."""
        count = 0  # records are started in order: the n-th call is record n

        async def lettered(r: Data, rrun: RunInfo | None, init: Data, *emit: Any) -> Data:
            nonlocal count
            index, count = count, count + 1
            token = IN_RECORD.set(True)
            try:
                return await rest(r, rrun, init, *emit)
            except DeadLettered as dropped:
                record = rrun.record if rrun is not None else (index,)
                self.record_note(dropped.error, record[-1])
                await post(
                    self.hooks, self.flow, rrun, dropped.step, dropped.error, r,
                    dropped.attempts, record, self.info.path,
                )  # fmt: skip
                return DROPPED
            finally:
                IN_RECORD.reset(token)

        return lettered

    async def _serial(
        self,
        source: _Source,
        d: Data,
        run: RunInfo | None,
        init: Data,
        rest: Rest | None,
        emit: Emit | None,
        progress: list[Any],
        turns: Turns | None,
    ) -> Data:
        """Window 1: one record at a time, in the caller's task."""
        combine = None if self.visibility == "previous" else self.combine
        ckpt = self.ckpt
        out = d
        index = 0
        in_record = False  # tells a record's failure from the source's own
        try:
            async for item in source.items():
                pos = _UNSET
                if item.__class__ is not dict:
                    item, pos = _unwrap(item)
                    if item.__class__ is not dict:
                        item = check_result(item, self.info)
                commit = None
                if ckpt is not None and pos is not _UNSET:
                    commit = ckpt.record(turns, index, pos)
                    token = _RECORD.set(commit)  # a writer may commit it with its rows
                try:
                    r = item if combine is None else combine(d, item, init)
                    if rest is None:
                        if emit is not None:
                            await emit(r)
                        out = r
                    elif run is None and emit is None:
                        res = await rest(r, None, init)
                        out = out if res is DROPPED else res
                    else:
                        rrun = run if run is None else self.record_run(run, index)
                        res = await (
                            rest(r, rrun, init) if emit is None else rest(r, rrun, init, emit)
                        )
                        out = out if res is DROPPED else res
                    if commit is not None and not commit.done:
                        await ckpt.commit(pos)  # type: ignore[union-attr]
                except BaseException as error:
                    in_record = True
                    self.record_note(error, index)
                    raise
                finally:
                    if commit is not None:
                        _RECORD.reset(token)
                if turns is not None:
                    turns.advance(index)
                index += 1
        except BaseException as error:
            if not in_record:
                progress[:] = [index, True]
                self.source_failed(error, index)
            raise
        return out

    async def _windowed(
        self,
        source: _Source,
        d: Data,
        run: RunInfo | None,
        init: Data,
        rest: Rest,
        emit: Emit | None,
        progress: list[Any],
        turns: Turns | None,
    ) -> Data:
        """Up to ``window`` records at once, each in a task; released in order."""
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None
        nxt = source.advancer()
        combine = self.combine
        window = self.window
        ckpt = self.ckpt
        # (task, index, sink, position, the record's commit when it carries a position)
        pending: deque[tuple[asyncio.Task[Data], int, _Sink | None, Any, Any]] = deque()
        failed: asyncio.Task[Data] | None = None
        waiter: asyncio.Future[None] | None = None
        advancing = False
        interrupted = False

        def done(task: asyncio.Task[Data]) -> None:
            nonlocal failed, interrupted
            if failed is None and (task.cancelled() or task.exception() is not None):
                failed = task
                if advancing:  # a source waiting for its next item is interrupted
                    interrupted = True
                    me.cancel()
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        out = d
        index = 0
        exhausted = False
        try:
            while True:
                pos = _UNSET
                last = -1
                while pending and pending[0][0].done():
                    head = pending[0][0]
                    if head.cancelled() or head.exception() is not None:
                        failed = failed or head  # its done callback may not have run yet
                        break
                    released = pending.popleft()
                    res = released[0].result()
                    out = out if res is DROPPED else res
                    last = released[1]
                    if released[3] is not _UNSET:  # to commit, unless its writer did
                        commit = released[4]
                        pos = _UNSET if commit is not None and commit.done else released[3]
                    if pending and pending[0][2] is not None:
                        pending[0][2].open()  # the new oldest record may emit
                if ckpt is not None and pos is not _UNSET:
                    await ckpt.commit(pos)  # the last record released, all before it done
                if turns is not None and last >= 0:
                    turns.advance(last)
                if failed is not None:
                    self._raise(failed, pending)
                if exhausted:
                    if not pending:
                        return out
                elif len(pending) < window:
                    advancing = True
                    try:
                        item = await nxt()
                        mark = _UNSET
                        if item.__class__ is not dict:
                            item, mark = _unwrap(item)
                            if item.__class__ is not dict:
                                item = check_result(item, self.info)
                    except StopAsyncIteration:
                        exhausted = True
                        continue
                    except asyncio.CancelledError:
                        if interrupted and me.uncancel() == 0:
                            interrupted = False
                            continue  # a record failed: raised above
                        raise
                    except BaseException as error:
                        progress[:] = [index, True]
                        self.source_failed(error, index)
                        raise
                    finally:
                        advancing = False
                    try:
                        r = combine(d, item, init)
                    except BaseException as error:
                        self.record_note(error, index)
                        raise
                    rrun = run if run is None else self.record_run(run, index)
                    commit = None
                    if ckpt is not None and mark is not _UNSET:
                        commit = ckpt.record(turns, index, mark)
                        token = _RECORD.set(commit)  # the task's context takes it
                    try:
                        if emit is None:
                            task = loop.create_task(rest(r, rrun, init))
                            sink = None
                        else:
                            gate = None if not pending else loop.create_future()
                            sink = _Sink(emit, gate)
                            task = loop.create_task(rest(r, rrun, init, sink))
                    finally:
                        if commit is not None:
                            _RECORD.reset(token)
                    task.add_done_callback(done)
                    pending.append((task, index, sink, mark, commit))
                    index += 1
                    continue
                if pending[0][0].done():  # finished while a commit was awaited
                    continue
                waiter = loop.create_future()
                try:
                    await waiter
                finally:
                    waiter = None
        except BaseException:
            await cancel_and_wait([t for t, *_ in pending])
            raise

    def _raise(
        self,
        failed: asyncio.Task[Data],
        pending: deque[tuple[asyncio.Task[Data], int, Any, Any, Any]],
    ) -> None:
        index = next((i for t, i, *_ in pending if t is failed), -1)
        if failed.cancelled():
            raise asyncio.CancelledError(f"record {index} of source {self.label} was cancelled")
        error = failed.exception()
        assert error is not None
        self.record_note(error, index)
        raise error
