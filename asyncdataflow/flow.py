"""DataFlow: a compiled definition you call like a coroutine function."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
import weakref
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from concurrent.futures import Executor
from types import TracebackType
from typing import Any

from . import plugin_manager as _plugins
from ._checkpoints import Checkpoint
from ._codegen import generate
from ._compiler import Block, Compiler, Fn, guard_missing, unwrap_step
from ._gather import cancel_and_wait
from ._hooks import hooks_for, logger
from ._journal import journaled_map
from ._map import ordered_map
from ._replay import Replayed, replay
from ._wiring import Explanation, analyze
from .exceptions import DataFlowCallError, DataFlowDefinitionError
from .info import RunInfo, StepInfo
from .options import Retry, check_sink

__all__ = ["DataFlow"]

Result = dict[str, Any]
_VISIBILITIES = ("previous", "initial", "all")


class _LoopState:
    __slots__ = ("__weakref__", "event", "stopped")

    def __init__(self) -> None:
        self.stopped = False
        self.event: asyncio.Event | None = None

    def stop(self) -> None:
        self.stopped = True
        if self.event is not None:
            self.event.set()


class DataFlow:
    """A tuple of steps compiled into one coroutine function.

    ``await flow(**kwargs)`` runs it once and returns the result dict. The top-level tuple
    runs sequentially, a nested tuple concurrently, and so on, alternating. See the README
    for the routing and visibility rules.

    Args:
        definition: the tuple of steps and nested tuples.
        infinity_loop: ``await flow(**kw)`` runs the flow again and again until
            :meth:`stop` or cancellation.
        interval: seconds to pause between loop iterations.
        args_visibility: ``"previous"``, ``"initial"`` or ``"all"``.
        executor: where sync steps run (default: the loop's default thread pool).
        plugins: plugins for this flow only, on top of the global ones.
        name: display name in errors, notes and hooks.
        retry: a default :class:`Retry` policy for every step without its own.
        dead_letter: a default dead-letter sink for every step without its own: a
            record a step fails on after its retries goes there and the stream goes on
            (see docs/durable.md).
        checkpoint: a checkpoint store (needs ``name=``): the flow's first top-level
            source starts after its last committed position, and a record's position
            is committed, in order, when the record has finished (see docs/durable.md).
    """

    def __init__(
        self,
        definition: tuple[Any, ...],
        *,
        infinity_loop: bool = False,
        interval: float = 0.0,
        args_visibility: str = "previous",
        executor: Executor | None = None,
        plugins: Iterable[Any] = (),
        name: str | None = None,
        retry: Retry | None = None,
        dead_letter: Any = None,
        checkpoint: Any = None,
    ) -> None:
        if args_visibility not in _VISIBILITIES:
            raise DataFlowDefinitionError(
                f"args_visibility={args_visibility!r}: use one of {', '.join(_VISIBILITIES)}"
            )
        if interval < 0:
            raise DataFlowDefinitionError(f"interval={interval!r}: must be >= 0 seconds")
        if executor is not None and not isinstance(executor, Executor):
            raise DataFlowDefinitionError(
                f"executor={executor!r}: must be a concurrent.futures.Executor"
            )
        self.definition = definition
        self.infinity_loop = infinity_loop
        self.interval = float(interval)
        self.args_visibility = args_visibility
        self.executor = executor
        self.plugins = tuple(plugins)
        self.retry = retry
        check_sink("DataFlow", dead_letter)
        self.dead_letter = dead_letter
        self.name = name or f"DataFlow@{id(self):x}"
        self.plan: Block = Compiler(retry, executor, dead_letter).compile(definition, DataFlow)
        self._wiring = analyze(self.plan, args_visibility, self.name)
        wiring_error = self._wiring.error()
        if wiring_error is not None:
            raise wiring_error
        self.steps: tuple[StepInfo, ...] = tuple(fn.info for fn in self.plan.steps())
        self.checkpoint = checkpoint
        self._checkpoint = None if checkpoint is None else Checkpoint(self, checkpoint, name)
        # running infinity loops, registered when called (so stop() right after
        # create_task reaches them) and forgotten with their coroutine
        self._loops: weakref.WeakSet[_LoopState] = weakref.WeakSet()
        self._version = -1
        self._build()

    # -- compiling ------------------------------------------------------------------

    def _build(self) -> None:
        self._hooks = hooks_for(self.plugins)
        self._version = _plugins.VERSION
        self._body = generate(self, self.plan, self.args_visibility, self._hooks, self.executor)
        self._emits: bool = self._body.__asyncdataflow_emits__
        # a run gets a RunInfo whenever a hook may be called: an observer, or the retry
        # decision of a step with a policy
        self._observe = self._hooks.any or any(
            s.retry is not None or s.dead_letter is not None for s in self.steps
        )
        # the plugin version at which __call__ may call the body directly (no hooks, no
        # loop), or None when it may not
        self._direct_at = None if (self.infinity_loop or self._observe) else self._version
        if self.infinity_loop:
            self._entry: Callable[[Result], Awaitable[Result]] = self._start_loop
        else:
            self._entry = self._observed

    @property
    def source(self) -> str:
        """The generated Python source of this flow (for the curious and for debugging)."""
        return str(self._body.__asyncdataflow_source__)

    # -- running --------------------------------------------------------------------

    def __call__(self, /, *args: Any, **kwargs: Any) -> Awaitable[Result]:
        if args:
            raise DataFlowCallError(
                f"flow {self.name!r} takes keyword arguments only, got {len(args)} "
                f"positional; call it as flow(name=value, ...)"
            )
        if self._direct_at == _plugins.VERSION:  # no hooks, no loop, plan current
            return self._body(kwargs, None, kwargs)  # type: ignore[no-any-return]
        if self._version != _plugins.VERSION:
            self._build()
            if self._direct_at == self._version:
                return self._body(kwargs, None, kwargs)  # type: ignore[no-any-return]
        return self._entry(kwargs)

    async def _observed(
        self,
        kwargs: Result,
        run: RunInfo | None = None,
        hook: str = "after_flow_run",
        emit: Callable[[Result], Awaitable[None]] | None = None,
    ) -> Result:
        """One run with its hooks: ``before_flow_run``, the body, ``after_flow_run`` (and,
        for a loop iteration, ``after_loop_iteration`` too)."""
        hooks = self._hooks
        if run is None:
            run = RunInfo(kwargs)
        if hooks.before_flow_run is not None:
            hooks.before_flow_run(flow=self, run=run, kwargs=kwargs)
        started = time.perf_counter()
        result: Result | None = None
        error: BaseException | None = None
        try:
            if emit is None:
                result = await self._body(kwargs, run, kwargs)
            else:
                result = await self._body(kwargs, run, kwargs, emit)
            return result
        except BaseException as e:
            error = e
            raise
        finally:
            duration = time.perf_counter() - started
            if hooks.after_flow_run is not None:
                hooks.after_flow_run(
                    flow=self, run=run, result=result, error=error, duration=duration
                )
            if run.iteration is not None and hooks.after_loop_iteration is not None:
                hooks.after_loop_iteration(
                    flow=self,
                    run=run,
                    iteration=run.iteration,
                    result=result,
                    error=error,
                    duration=duration,
                )
            del error

    def _start_loop(self, kwargs: Result) -> Awaitable[Result]:
        state = _LoopState()
        self._loops.add(state)
        return self._loop(kwargs, state)

    async def _loop(self, kwargs: Result, state: _LoopState) -> Result:
        try:
            iteration = 0
            while True:
                iteration += 1
                if self._observe:
                    result = await self._observed(kwargs, RunInfo(kwargs, iteration))
                else:
                    result = await self._body(kwargs, None, kwargs)
                if state.stopped:
                    return result
                if self.interval:
                    if state.event is None:
                        state.event = asyncio.Event()
                    try:
                        async with asyncio.timeout(self.interval):
                            await state.event.wait()
                    except TimeoutError:
                        pass
                else:
                    await asyncio.sleep(0)
                if state.stopped:
                    return result
                if self._version != _plugins.VERSION:
                    self._build()
        finally:
            self._loops.discard(state)

    def stop(self) -> None:
        """Let every running infinity loop of this flow finish its current iteration and
        return that iteration's result (a loop pausing between iterations returns at
        once). Loops started later are not affected."""
        for state in list(self._loops):
            state.stop()

    async def stream(self, /, **kwargs: Any) -> AsyncIterator[Result]:
        """Run the flow once and yield every record's final output, in the order its
        source yielded them (see the README's Streams section). A flow without a source in
        its own sequence yields its one result.

        The run goes on in a task of its own and waits while its last output has not been
        taken, so a slow consumer holds the source back. Leaving early
        (``break``, then ``aclose()``; or ``contextlib.aclosing``) cancels the run and
        closes its sources before ``aclose()`` returns. An exception of the run is raised
        here unchanged.
        """
        if self.infinity_loop:
            raise DataFlowCallError(
                f"flow {self.name!r} is an infinity loop; stream() needs a run that finishes"
            )
        if self._version != _plugins.VERSION:
            self._build()
        if not self._emits:
            yield await self(**kwargs)
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(1)
        leaving = False

        async def emit(data: Result) -> None:
            await queue.put((True, data))

        async def produce() -> None:
            try:
                if self._observe:
                    await self._observed(kwargs, emit=emit)
                else:
                    await self._body(kwargs, None, kwargs, emit)
            except BaseException as error:
                if leaving:
                    raise
                await queue.put((False, error))
            else:
                await queue.put((False, None))

        task = loop.create_task(produce())
        try:
            while True:
                ok, value = await queue.get()
                if ok:
                    yield value
                elif value is None:
                    return
                else:
                    raise value
        finally:
            leaving = True
            await cancel_and_wait([task])

    def map(
        self,
        inputs: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
        *,
        concurrency: int,
        return_exceptions: bool = False,
        journal: str | os.PathLike[str] | None = None,
    ) -> AsyncIterator[Result | BaseException]:
        """Run the flow once per kwargs mapping, at most ``concurrency`` at a time, and
        yield the results in input order.

        Inputs are pulled lazily by a task of their own: at most ``concurrency`` runs are
        in flight and at most ``2 * concurrency`` runs are started and not yet yielded
        (the finished ones wait for an earlier, slower one). A result is yielded as soon
        as it and every result before it are done, even while the input iterable is
        waiting for its next input. Without ``return_exceptions`` the first failure stops
        new runs; the results before it (in input order) are still yielded, then its
        exception is raised and the runs still going are cancelled (a run that ended
        cancelled counts as failed: its ``CancelledError`` is raised, as
        ``asyncio.gather`` does). With ``return_exceptions=True`` a failed run yields its
        exception in its place. When the input iterable raises (or gives something that
        is not a mapping), no new run starts; the runs already started finish and their
        results are yielded first, then that exception is raised. Closing the generator
        (``contextlib.aclosing``, or leaving an ``async for`` over it) cancels and awaits
        the runs in flight.

        With ``journal=path`` the map can resume: every input whose result you have
        taken is recorded in that JSON Lines file (a result counts as taken when you ask
        for the next one, or when the map ends), and a map run again with the same
        journal skips those inputs and yields only the others. The inputs must be the
        same, in the same order (each is checked against a fingerprint kept in the
        journal). A failed run is not recorded: it runs again next time. See
        docs/durable.md.
        """
        if not isinstance(concurrency, int) or concurrency < 1:
            raise DataFlowCallError(f"map(concurrency={concurrency!r}): must be an int >= 1")
        if self.infinity_loop:
            raise DataFlowCallError(
                f"flow {self.name!r} is an infinity loop; map() needs runs that finish"
            )
        if journal is not None:
            return journaled_map(self, inputs, concurrency, return_exceptions, journal)
        return ordered_map(self, inputs, concurrency, return_exceptions)

    def missing_arguments(
        self, kwargs: Mapping[str, Any]
    ) -> list[tuple[StepInfo, tuple[str, ...]]]:
        """Why ``flow(**kwargs)`` could not start: the steps that decide whether the flow's
        first item is taken (the first step, or the first step of every branch of a
        concurrent first block), each with the required parameters ``kwargs`` lacks for it.
        Empty when the first item can be taken. Nothing runs; use it to check arguments
        before calling (``asyncdataflow run`` does, and suggests close names)."""
        candidates = guard_missing(self.plan.items[0], kwargs) if self.plan.items else []
        if not all(missing for _, missing in candidates):
            return []
        return [(fn.info, missing) for fn, missing in candidates]

    async def replay(self, sink: Any) -> Replayed:
        """Run the dead letters of this flow (those whose ``flow`` is this flow's name) in
        ``sink`` again, and remove the ones that now succeed.

        A letter written in a stream holds its record's input: it runs through the steps
        after its source (a source at the top level of the definition). A letter written
        outside a stream holds the run's arguments: the whole flow runs again. A letter
        that fails again stays in the sink (replay writes no new letters); the result
        says how many succeeded and which failed, with their errors.
        """
        return await replay(self, sink)

    # -- closing --------------------------------------------------------------------

    def _closeables(self) -> list[Any]:
        seen: dict[int, Any] = {}
        for fn in self.plan.steps():
            for obj in (unwrap_step(fn.info.func), fn.info.dead_letter):
                close = getattr(obj, "aclose", None)
                if close is not None and callable(close) and id(obj) not in seen:
                    seen[id(obj)] = obj
        if self.checkpoint is not None:
            seen.setdefault(id(self.checkpoint), self.checkpoint)
        return list(seen.values())

    async def aclose(self) -> None:
        """Close what the flow's steps opened: ``await obj.aclose()`` once for every step
        object that has it. All are closed even if one fails; the first failure is then
        raised."""
        errors: list[BaseException] = []
        for obj in self._closeables():
            try:
                await obj.aclose()
            except Exception as error:
                error.add_note(f"asyncdataflow: raised by {type(obj).__qualname__}.aclose()")
                errors.append(error)
        if errors:
            raise errors[0]

    async def __aenter__(self) -> DataFlow:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.aclose()
            return
        try:  # the body's exception is the one that matters: do not replace it
            await self.aclose()
        except Exception:
            logger.exception("asyncdataflow: closing flow %r failed", self.name)

    # -- pickling -------------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """A flow pickles as its definition and options and is compiled again where it is
        unpickled (a Dask worker, a process pool); generated code is never pickled. Every
        keyword of ``DataFlow(...)`` is an attribute of the same name."""
        if self.executor is not None:
            raise TypeError(
                f"flow {self.name!r} has executor={self.executor!r}: an executor belongs to "
                "the process that made it and cannot be pickled; build the flow without "
                "executor= (sync steps then run in the default thread pool where it runs)"
            )
        options = {name: getattr(self, name) for name in _OPTIONS}
        return (_unpickle, (type(self), self.definition, options))

    # -- looking at it --------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<DataFlow {self.name!r}: {len(self.steps)} steps>"

    def to_mermaid(self) -> str:
        """The flow's structure as a Mermaid flowchart (see ``asyncdataflow graph``)."""
        from .graph import to_mermaid

        return to_mermaid(self)

    def to_dot(self) -> str:
        """The flow's structure as Graphviz DOT text."""
        from .graph import to_dot

        return to_dot(self)

    def explain(self) -> Explanation:
        """How the data reaches each step, as the check made when the flow was built saw
        it: for every step its place, the parameters it needs, the keys known to be
        available there, whether it is a guard, and its outputs. ``print(flow.explain())``
        for a report; ``.steps`` for one :class:`~asyncdataflow.StepWiring` per step."""
        return self._wiring.explanation(self.name)

    def walk(self) -> Iterator[Fn | Block]:
        """Every :class:`~asyncdataflow.plan.Block` and :class:`~asyncdataflow.plan.Step`
        of :attr:`plan`, depth first, in definition order (the root block first)."""
        stack: list[Fn | Block] = [self.plan]
        while stack:
            node = stack.pop()
            yield node
            if isinstance(node, Block):
                stack.extend(reversed(node.items))


#: the keyword options of ``DataFlow(...)``: what a pickled flow carries besides its definition
_OPTIONS = tuple(
    name
    for name, param in inspect.signature(DataFlow.__init__).parameters.items()
    if param.kind is inspect.Parameter.KEYWORD_ONLY
)


def _unpickle(
    cls: type[DataFlow], definition: tuple[Any, ...], options: dict[str, Any]
) -> DataFlow:
    return cls(definition, **options)
