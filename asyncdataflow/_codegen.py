"""Generate one specialised coroutine function per block of a compiled plan.

The way ``dataclasses`` writes ``__init__``: the plan is known when the flow is built, so
every parameter lookup, guard test and merge is written out as plain Python, and a run does
almost nothing but call the steps. A step with options, or a flow with step hooks, calls
through a :class:`~asyncdataflow._step_runner.StepRunner` instead of the inline call.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import linecache
import weakref
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from ._calls import call_sync
from ._compiler import Block, Fn
from ._gather import gather_branches
from ._hooks import Hooks
from ._merging import check_result, merge, merge_branches
from ._notes import note
from ._routing import report_skipped, routing_error
from ._step_runner import StepRunner
from ._streams import SourceRunner

if TYPE_CHECKING:
    from .flow import DataFlow


class _Gen:
    def __init__(
        self,
        flow: DataFlow,
        visibility: str,
        hooks: Hooks,
        executor: Executor | None,
    ) -> None:
        self.flow = flow
        self.visibility = visibility
        self.hooks = hooks
        self.skip_hooks = bool(hooks.impls["on_step_skipped"])
        self.executor = executor
        self.ns: dict[str, Any] = {
            "_loop": asyncio.get_running_loop,
            "_cc": contextvars.copy_context,
            "_partial": functools.partial,
            "_check": check_result,
            "_note": note,
            "_sync": call_sync,
            "_merge": merge,
            "_mergeb": merge_branches,
            "_gather": gather_branches,
            "_routing": routing_error,
            "_skipped": report_skipped,
            "EXEC": executor,
            "FLOW": flow,
            "FLOWNAME": flow.name,
            "HOOKS": hooks,
        }
        self.watchers = flow._wiring.watchers
        #: the block whose generated functions take ``emit`` (``flow.stream()`` hands each
        #: record's output to it): the flow's own sequence when it holds a source
        self.emitting: Block | None = None
        self.lines: list[str] = []
        self.n = 0

    def const(self, prefix: str, value: Any) -> str:
        self.n += 1
        name = f"{prefix}{self.n}"
        self.ns[name] = value
        return name

    # -- pieces ---------------------------------------------------------------------

    @staticmethod
    def guard(node: Fn | Block) -> str:
        if isinstance(node, Fn):
            req = node.info.required
            return "(" + " and ".join(f"{n!r} in d" for n in req) + ")" if req else "True"
        if not node.concurrent:
            return _Gen.guard(node.items[0])
        return "(" + " or ".join(_Gen.guard(b) for b in node.items) + ")"

    def combine(self, label: str) -> str:
        if self.visibility == "previous":
            return "d = r"
        if self.visibility == "initial":
            return f"d = _merge(init, r, 'the call arguments', {label!r})"
        return f"d = _merge(d, r, 'the data before it', {label!r})"

    def instrumented(self, fn: Fn) -> bool:
        info = fn.info
        return self.hooks.step_level or (
            info.timeout is not None
            or info.retry is not None
            or info.limit is not None
            or info.rate is not None
            or info.breaker is not None
            or info.dead_letter is not None
        )

    def call_fn(self, fn: Fn, fetched: bool = False) -> list[str]:
        """Lines that leave the step's checked output in ``r``. With ``fetched`` the
        required arguments are already in locals ``a_<name>`` (see :meth:`seq`)."""
        info = fn.info
        if self.instrumented(fn):
            runner = self.const("R", StepRunner(self.flow, fn, self.hooks))
            return [f"r = await {runner}(d, run)"]
        f = self.const("F", info.func)
        s = self.const("S", info)
        args = []
        for name, default in fn.params:
            if default is inspect.Parameter.empty:
                args.append(f"{name}=a_{name}" if fetched else f"{name}=d[{name!r}]")
            else:
                args.append(f"{name}=d.get({name!r}, {self.const('D', default)})")
        call = fn.call.expression(f, ", ".join(args))
        return [
            "try:",
            f"    r = {call}",
            "except BaseException as e:",
            f"    _note(e, {s}, FLOWNAME)",
            "    raise",
            "if r.__class__ is not dict:",
            f"    r = _check(r, {s})",
        ]

    def skip(self, node: Fn | Block) -> list[str]:
        return [f"_skipped(HOOKS, FLOW, run, {self.const('P', node)}, d)"]

    def passed_over(self, fn: Fn) -> list[str]:
        """Lines for a later step that is not taken: tell the hooks, look for a typo."""
        out = self.skip(fn) if self.skip_hooks else []
        watch = self.watchers.get(fn)
        if watch is not None:
            w = self.const("W", watch)
            out.append(f"if not {w}.done: {w}(d)")
        return out or ["pass"]

    def refuse_first(self, block: Block, item: Fn | Block, cause: str = "") -> list[str]:
        """Indented lines for the flow's own first item when it cannot run: nothing can
        (tell the hooks the block was not taken, raise the routing error)."""
        out = ["    " + self.skip(block)[0]] if self.skip_hooks else []
        return [*out, f"    raise _routing({self.const('P', item)}, d, True){cause}"]

    # -- blocks ---------------------------------------------------------------------

    def fn_branch(self, fn: Fn) -> str:
        name = self.const("fn_", None)
        if fn.info.source:  # alone in its branch: the branch passes on its last record
            runner = self.const(
                "SRC", SourceRunner(self.flow, fn, self.hooks, self.executor, self.visibility)
            )
            self.emit_function(name, [f"return await {runner}(d, run, init, None)"])
            return name
        body = [*self.call_fn(fn), self.combine(f"{fn.info.name} ({fn.path})"), "return d"]
        self.emit_function(name, body)
        return name

    def seq(self, block: Block, guard_checked: bool) -> str:
        name = self.const("seq_", None)
        body = self.chain(block, block.items, guard_checked, True)
        self.emit_function(name, body, block is self.emitting)
        return name

    def chain(
        self, block: Block, items: list[Fn | Block], guard_checked: bool, has_first: bool
    ) -> list[str]:
        """The body running ``items`` of a sequential block up to its first source, which
        takes over the rest (see :meth:`source`)."""
        body: list[str] = []
        for i, item in enumerate(items):
            first = has_first and i == 0
            known = first and guard_checked
            if isinstance(item, Fn) and item.info.source:
                return body + self.source(block, item, items[i + 1 :], first, known)
            if isinstance(item, Block) and item.concurrent:
                body += self.par(item, may_be_empty=not known, first=first)
                continue
            if (
                isinstance(item, Fn)
                and not known
                and item.info.required
                and (not self.instrumented(item))
            ):
                # one dict lookup per argument both tests the guard and fetches it
                body.append("try:")
                body += [f"    a_{n} = d[{n!r}]" for n in item.info.required]
                body.append("except KeyError:")
                if first:
                    body += self.refuse_first(block, item, " from None")
                else:
                    body += ["    " + line for line in self.passed_over(item)]
                body.append("else:")
                run = [
                    *self.call_fn(item, fetched=True),
                    self.combine(f"{item.info.name} ({item.path})"),
                ]
                body += ["    " + line for line in run]
                continue
            if isinstance(item, Fn):
                run = [*self.call_fn(item), self.combine(f"{item.info.name} ({item.path})")]
            else:
                sub = self.seq(item, guard_checked=True)
                run = [f"d = await {sub}(d, run, init)"]
            guard = self.guard(item)
            if known or guard == "True":
                body += run
                continue
            body.append(f"if {guard}:")
            body += ["    " + line for line in run]
            if first:
                body += ["else:", *self.refuse_first(block, item)]
            elif isinstance(item, Fn):
                lines = self.passed_over(item)
                if lines != ["pass"]:
                    body.append("else:")
                    body += ["    " + line for line in lines]
            elif self.skip_hooks:
                body.append("else:")
                body += ["    " + line for line in self.skip(item)]
        if block is self.emitting:
            body += ["if emit is not None:", "    await emit(d)"]
        body.append("return d")
        return body

    def source(
        self, block: Block, src: Fn, rest_items: list[Fn | Block], first: bool, known: bool
    ) -> list[str]:
        """Lines that hand the block over to a source: the items after it run per record,
        in a generated function of their own (``None`` when the source is last)."""
        emitting = block is self.emitting
        rest = "None"
        if rest_items:
            rest = self.const("rest_", None)
            tail = self.chain(block, rest_items, False, False)
            self.emit_function(rest, tail, emitting)
        runner = self.const(
            "SRC", SourceRunner(self.flow, src, self.hooks, self.executor, self.visibility)
        )
        e = ", emit" if emitting else ""
        call = [f"return await {runner}(d, run, init, {rest}{e})"]
        guard = self.guard(src)
        if known or guard == "True":
            return call
        body = [f"if {guard}:", "    " + call[0], "else:"]
        if first:
            return body + self.refuse_first(block, src)
        if self.skip_hooks:
            body.append("    " + self.skip(src)[0])
        # passed over like any later step: the rest of the block runs once, on its input
        if rest != "None":
            return [*body, f"    return await {rest}(d, run, init{e})"]
        if emitting:
            body += ["    if emit is not None:", "        await emit(d)"]
        return [*body, "    return d"]

    def par(self, block: Block, may_be_empty: bool, first: bool) -> list[str]:
        out = ["c = []", "n = []"]
        for branch in block.items:
            if isinstance(branch, Fn):
                fn = self.fn_branch(branch)
                label = f"{branch.info.name} ({branch.path})"
            else:
                fn = self.seq(branch, guard_checked=True)
                label = f"branch {branch.path}"
            out.append(f"if {self.guard(branch)}:")
            out.append(f"    c.append({fn}(d, run, init))")
            out.append(f"    n.append({label!r})")
            if self.skip_hooks:
                out.append("else:")
                out.append("    " + self.skip(branch)[0])
        if may_be_empty:
            out.append("if not c:")
            out.append(f"    raise _routing({self.const('P', block)}, d, {first})")
        # the branches already folded the visibility into their outputs
        return [
            *out,
            "if len(c) == 1:",
            "    d = await c[0]",
            "else:",
            "    d = _mergeb(await _gather(c), n)",
        ]

    def emit_function(self, name: str, body: list[str], emitting: bool = False) -> None:
        extra = ", emit=None" if emitting else ""
        self.lines.append(f"async def {name}(d, run, init{extra}):")
        self.lines += ["    " + line for line in body]
        self.lines.append("")


def _register_source(flow: DataFlow, source: str) -> str:
    """Put the generated source in ``linecache`` (as attrs does for the methods it
    writes), so that tracebacks through it show its lines; one entry per flow object,
    replaced when the flow is rebuilt and dropped with the flow."""
    filename = f"<asyncdataflow {flow.name} {id(flow):x}>"
    if filename not in linecache.cache:
        weakref.finalize(flow, linecache.cache.pop, filename, None)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return filename


def generate(
    flow: DataFlow,
    root: Block,
    visibility: str,
    hooks: Hooks,
    executor: Executor | None,
) -> Any:
    """The coroutine function ``entry(data, run, init)`` that runs the whole flow."""
    gen = _Gen(flow, visibility, hooks, executor)
    emits = has_source(root.items)
    gen.emitting = root if emits else None
    entry = gen.seq(root, guard_checked=False)
    source = "\n".join(gen.lines)
    filename = _register_source(flow, source)
    code = compile(source, filename, "exec")
    exec(code, gen.ns)
    func = gen.ns[entry]
    func.__asyncdataflow_source__ = source
    func.__asyncdataflow_emits__ = emits  # a source in the flow's own sequence: stream()
    return func


def has_source(items: list[Fn | Block]) -> bool:
    """Whether a sequential block's own items include a source (not nested blocks')."""
    return any(isinstance(item, Fn) and item.info.source for item in items)
