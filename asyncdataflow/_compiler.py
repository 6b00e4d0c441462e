"""Validate a definition once and turn it into a plan: a tree of blocks and steps whose
parameters, defaults, partial-bound names and async/sync nature are known up front."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._calls import StepCall, step_call
from ._outputs import MAPPED_ATTR as MAPPED_ATTR  # re-exported: args_mapper, graph
from ._outputs import declared_outputs
from .exceptions import (
    DataFlowDefinitionError,
    DataFlowEmptyError,
    DataFlowFunctionArgsError,
    DataFlowNotCallableError,
    DataFlowNotTupleError,
)
from .info import StepInfo
from .options import INLINE_ATTR, Retry, StepOptions

if TYPE_CHECKING:
    from .flow import DataFlow

_REQUIRED = inspect.Parameter.empty
_BAD_KINDS = {
    inspect.Parameter.VAR_POSITIONAL: "*args",
    inspect.Parameter.VAR_KEYWORD: "**kwargs",
    inspect.Parameter.POSITIONAL_ONLY: "positional-only parameters",
}
#: how deeply blocks may nest (each level is a coroutine awaiting the next at run time);
#: far beyond any real flow, and far from Python's recursion limit
MAX_DEPTH = 100


@dataclass(eq=False, slots=True)
class Fn:
    """A function step in the plan."""

    info: StepInfo
    #: (name, default) for every parameter; default is inspect.Parameter.empty if required
    params: tuple[tuple[str, Any], ...]
    #: the keys it may return, when declared (see _outputs), else None: any key
    outputs: tuple[str, ...] | None = None
    #: the step(...) object whose limit this step obeys (shared wherever it is used)
    options: StepOptions | None = None
    #: the declared keys it may leave out (NotRequired, or a union with None)
    optional: frozenset[str] = frozenset()
    #: how the function is called (by the generated code and the runner alike)
    call: StepCall = field(kw_only=True)

    @property
    def path(self) -> str:
        return self.info.path

    def missing(self, data: Any) -> tuple[str, ...]:
        return tuple(n for n in self.info.required if n not in data)

    def steps(self) -> Iterator[Fn]:
        yield self


@dataclass(eq=False, slots=True)
class Block:
    """A sequential (``concurrent=False``) or concurrent block of items."""

    path: str
    concurrent: bool
    items: list[Fn | Block] = field(default_factory=list)
    name: str | None = None  # set when the block is an inlined DataFlow

    def steps(self) -> Iterator[Fn]:
        for item in self.items:
            yield from item.steps()


def guard_missing(node: Fn | Block, data: Any) -> list[tuple[Fn, tuple[str, ...]]]:
    """The steps that decide whether ``node`` is taken, each with what it lacks."""
    if isinstance(node, Fn):
        return [(node, node.missing(data))]
    if not node.concurrent:
        return guard_missing(node.items[0], data)
    out: list[tuple[Fn, tuple[str, ...]]] = []
    for branch in node.items:
        out.extend(guard_missing(branch, data))
    return out


def callable_name(func: Any) -> str:
    if isinstance(func, functools.partial):
        return f"partial({callable_name(func.func)})"
    name = getattr(func, "__qualname__", None)
    if not isinstance(name, str):
        name = type(func).__qualname__
    return name


def analyze_signature(func: Callable[..., Any], where: str) -> tuple[tuple[str, Any], ...]:
    """(name, default-or-empty) for each parameter the flow may feed ``func``.

    Keyword arguments bound with ``functools.partial`` are left out: flow data never
    overrides them.
    """
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise DataFlowFunctionArgsError(
            f"{where}: cannot read the signature of {callable_name(func)} ({exc}); "
            f"wrap it in a def with named parameters"
        ) from None
    bound: set[str] = set()
    inner: Any = func
    while isinstance(inner, functools.partial):
        bound.update(inner.keywords)
        inner = inner.func
    params: list[tuple[str, Any]] = []
    for p in sig.parameters.values():
        if p.kind in _BAD_KINDS:
            raise DataFlowFunctionArgsError(
                f"{where}: {callable_name(func)} takes {_BAD_KINDS[p.kind]} "
                f"({p}); a step must take named parameters only, so the flow can match "
                f"them to its data. Wrap it: `def step(a, b): return "
                f"{callable_name(func).rsplit('.', 1)[-1]}(a, b)`"
            )
        if p.name in bound:
            continue
        params.append((p.name, p.default))
    return tuple(params)


def is_async_callable(func: Any) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(type(func), "__call__", None)  # noqa: B004 - the class's own __call__
    return call is not None and inspect.iscoroutinefunction(call)


def source_kind(func: Any) -> str | None:
    """``"async"`` for an async generator function, ``"sync"`` for a generator function
    (through partials and a callable object's ``__call__``), else ``None``."""
    while isinstance(func, functools.partial):
        func = func.func
    for f in (func, getattr(type(func), "__call__", None)):  # noqa: B004
        if inspect.isasyncgenfunction(f):
            return "async"
        if inspect.isgeneratorfunction(f):
            return "sync"
    return None


def is_inline(func: Any) -> bool:
    while True:
        if getattr(func, INLINE_ATTR, False):
            return True
        if isinstance(func, functools.partial):
            func = func.func
        else:
            return False


def unwrap_step(func: Any) -> Any:
    """The object behind partials, options and args_mapper wrappers (for aclose)."""
    while True:
        if isinstance(func, StepOptions):
            func = func.func
        elif isinstance(func, functools.partial):
            func = func.func
        elif hasattr(func, MAPPED_ATTR):
            func = getattr(func, MAPPED_ATTR)
        elif inspect.ismethod(func):  # client.fetch: the client owns what is to close
            func = func.__self__
        else:
            return func


class Compiler:
    def __init__(
        self,
        default_retry: Retry | None,
        executor: Executor | None = None,
        default_dead_letter: Any = None,
    ) -> None:
        self.default_retry = default_retry
        self.executor = executor
        self.default_dead_letter = default_dead_letter

    def compile(self, definition: Any, flow_cls: type[DataFlow]) -> Block:
        self.flow_cls = flow_cls
        if not isinstance(definition, tuple):
            raise DataFlowNotTupleError(
                f"definition: expected a tuple, got {type(definition).__name__}; "
                f"write the flow as a tuple: DataFlow((step_a, step_b))"
            )
        return self._block(definition, "definition", concurrent=False)

    def _block(self, items: tuple[Any, ...], path: str, concurrent: bool) -> Block:
        if path.count("[") > MAX_DEPTH:
            raise DataFlowDefinitionError(
                f"{path[:60]}...: blocks nest more than {MAX_DEPTH} levels deep; flatten the "
                f"definition (a tuple holding only one tuple adds a level and nothing else), "
                f"or split it into flows that call each other"
            )
        if not items:
            raise DataFlowEmptyError(
                f"{path}: empty tuple; a block needs at least one step (remove it)"
            )
        block = Block(path, concurrent)
        for i, item in enumerate(items):
            block.items.append(self._item(item, f"{path}[{i}]", path, not concurrent))
        return block

    def _item(self, item: Any, path: str, parent: str, nested_concurrent: bool) -> Fn | Block:
        if isinstance(item, tuple):
            return self._block(item, path, concurrent=nested_concurrent)
        if isinstance(item, self.flow_cls):
            if item.infinity_loop:
                raise DataFlowDefinitionError(
                    f"{path}: flow {item.name!r} is an infinity loop; a nested flow runs once "
                    f"as a sequential block. Nest a flow built without infinity_loop=True."
                )
            outer_retry = self.default_retry
            self.default_retry = item.retry or outer_retry  # its own default wins inside
            try:
                inner = self._block(item.definition, path, concurrent=False)
            finally:
                self.default_retry = outer_retry
            inner.name = item.name
            return inner
        if isinstance(item, (list, set, frozenset, dict)):
            kind = "a sequential" if not nested_concurrent else "a concurrent"
            raise DataFlowNotTupleError(
                f"{path}: got a {type(item).__name__} where a tuple ({kind} block) or a "
                "step is expected; blocks are written as tuples: (step_a, step_b)"
            )
        if not callable(item):
            raise DataFlowNotCallableError(
                f"{path}: {item!r} ({type(item).__name__}) is neither callable nor a tuple; "
                f"put a function, a step object or a nested tuple there"
            )
        return self._fn(item, path, parent)

    def _fn(self, item: Any, path: str, parent: str) -> Fn:
        opts = item if isinstance(item, StepOptions) else None
        func = opts.func if opts else item
        if isinstance(func, self.flow_cls):
            raise DataFlowDefinitionError(
                f"{path}: step() options cannot wrap flow {func.name!r}. Put the flow in "
                f"the definition as it is, and give its own steps the options (or pass "
                f"retry= to DataFlow for a default)."
            )
        if not callable(func):
            raise DataFlowNotCallableError(f"{path}: step({func!r}) wraps a non-callable")
        params = analyze_signature(func, f"{path} ({callable_name(func)})")
        required = tuple(n for n, d in params if d is _REQUIRED)
        is_async = is_async_callable(func)
        source = source_kind(func)
        window = opts.window if opts else None
        if window is not None and source is None:
            raise DataFlowDefinitionError(
                f"{path}: step({callable_name(func)}, window={window}): window= is for a "
                f"source, a generator function that yields records; "
                f"{callable_name(func)} is not one. Drop window=, or make it yield."
            )
        if source and opts and (opts.rate is not None or opts.breaker is not None):
            raise DataFlowDefinitionError(
                f"{path}: step({callable_name(func)}, rate=/breaker=): a source is advanced, "
                f"not called; put rate= or breaker= on the step that calls the service "
                f"(in the source's records, or inside the source itself)"
            )
        if source and opts and opts.dead_letter is not None:
            raise DataFlowDefinitionError(
                f"{path}: step({callable_name(func)}, dead_letter=): a source's failure ends "
                f"its stream, it is not one record's; put dead_letter= on the steps of its "
                f"records (or on the flow: DataFlow(..., dead_letter=sink))"
            )
        inline = (source != "async") and (not is_async) and is_inline(func)
        retry = (opts.retry if opts and opts.retry else None) or self.default_retry
        dead_letter = None
        if not source:
            dead_letter = (opts.dead_letter if opts else None) or self.default_dead_letter
        info = StepInfo(
            name=(opts.name if opts and opts.name else None) or callable_name(func),
            path=path,
            parent=parent,
            func=func,
            is_async=is_async or source == "async",
            inline=inline,
            params=tuple(n for n, _ in params),
            required=required,
            timeout=opts.timeout if opts else None,
            retry=retry,
            limit=opts.limit if opts else None,
            rate=opts.rate if opts else None,
            breaker=opts.breaker if opts else None,
            source=source,
            window=(window or 1) if source else None,
            dead_letter=dead_letter,
        )
        outputs, optional = declared_outputs(item)
        call = step_call(func, is_async, inline, self.executor)
        return Fn(info, params, outputs, opts, optional, call=call)
