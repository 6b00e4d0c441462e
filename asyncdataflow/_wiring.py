"""The wiring check: follow the keys the steps declare along every path of a plan.

When a flow is built, :func:`analyze` walks the plan the way data moves through it
(sequential and concurrent blocks, the three visibilities) with, at every point, the keys
that *may* be in the data: the declared outputs of the steps before it, plus "anything"
where the call's arguments or a step with undeclared outputs reach. A step one of whose
required parameters is in none of them can never be taken: :class:`DataFlowWiringError`.
The check only ever refuses what no run can take; the rest is left to the run-time
:class:`DataFlowSkipWarning`, which :class:`SkipWatch` gives, off the taken path.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

from ._compiler import Block, Fn
from ._names import NEAR_MISS, closest
from .exceptions import DataFlowSkipWarning, DataFlowWiringError

__all__ = ["Explanation", "SkipWatch", "StepWiring", "Wiring", "analyze"]

CALL = "the call's arguments"


@dataclass(frozen=True, slots=True)
class _Keys:
    """What may be in the data at one point of the flow."""

    known: frozenset[str] = frozenset()
    call: bool = False  # the call's arguments (any key) may be there
    unknown: tuple[Fn, ...] = ()  # steps with undeclared outputs (any key) that reach it

    @property
    def closed(self) -> bool:
        return not self.call and not self.unknown

    def __or__(self, other: _Keys) -> _Keys:
        unknown = self.unknown + tuple(f for f in other.unknown if f not in self.unknown)
        return _Keys(self.known | other.known, self.call or other.call, unknown)

    def sources(self) -> tuple[str, ...]:
        out = [CALL] if self.call else []
        out += [f"{fn.info.name} at {fn.path} (outputs not declared)" for fn in self.unknown]
        return tuple(out)


@dataclass(frozen=True, slots=True)
class StepWiring:
    """What :meth:`DataFlow.explain` says about one step.

    Attributes:
        name: the step's display name.
        path: its place in the definition, e.g. ``definition[2][0]``.
        needs: its required parameters (all must be in its input for it to be taken).
        takes: its parameters with a default.
        available: the keys known to be available there (declared by the steps before it).
        also_from: where other, unknown keys may come from: ``"the call's arguments"`` and
            the steps before it whose outputs are not declared. Empty when ``available``
            is all it can get.
        guard: whether it decides if its block is taken (the first item of a sequential
            block, a branch of a concurrent block): such a step routes on purpose.
        outputs: the keys it may return, or ``None`` when not declared.
        optional_outputs: those of ``outputs`` it may leave out.
        reachable: ``False`` when a step before it can never be taken, so neither can it.
        never_taken: the required parameters produced on no path into it (the flow then
            cannot be built).
        near_misses: ``(parameter, close key)`` pairs: a parameter that only the call's
            arguments could bring, spelled like a key a step before it declares.
    """

    name: str
    path: str
    needs: tuple[str, ...]
    takes: tuple[str, ...]
    available: tuple[str, ...]
    also_from: tuple[str, ...]
    guard: bool
    outputs: tuple[str, ...] | None
    optional_outputs: tuple[str, ...] = ()
    reachable: bool = True
    never_taken: tuple[str, ...] = ()
    near_misses: tuple[tuple[str, str], ...] = ()

    def lines(self) -> list[str]:
        def names(items: tuple[str, ...]) -> str:
            return ", ".join(items) if items else "-"

        head = f"{self.path}  {self.name}" + ("  (guard)" if self.guard else "")
        available = names(self.available)
        if self.outputs is None:
            outputs = "not declared"
        else:
            outputs = names(
                tuple(k + ("?" if k in self.optional_outputs else "") for k in self.outputs)
            )
        out = [head, f"    needs:     {names(self.needs)}"]
        if self.takes:
            out.append(f"    optional:  {names(self.takes)}")
        if not self.reachable:
            out.append("    available: - (not reachable: a step before it is never taken)")
        else:
            out.append(f"    available: {available}")
            if self.also_from:
                out.append(f"    and maybe: any key from {'; '.join(self.also_from)}")
        out.append(f"    outputs:   {outputs}")
        for name in self.never_taken:
            out.append(f"    NEVER TAKEN: no path into it produces {name!r}")
        for name, close in self.near_misses:
            out.append(
                f"    NEAR MISS: needs {name!r}, which only the call's arguments could "
                f"bring; did you mean {close!r}?"
            )
        return out


@dataclass(frozen=True, slots=True)
class Explanation:
    """The wiring of a flow, step by step (:meth:`DataFlow.explain`). ``str()`` of it is
    a readable report; ``steps`` holds one :class:`StepWiring` per step in definition
    order."""

    flow: str
    args_visibility: str
    steps: tuple[StepWiring, ...]

    @property
    def problems(self) -> list[StepWiring]:
        """The steps with a parameter never produced or a near miss."""
        return [s for s in self.steps if s.never_taken or s.near_misses]

    def __str__(self) -> str:
        lines = [f"flow {self.flow!r} (args_visibility={self.args_visibility!r})"]
        for s in self.steps:
            lines += s.lines()
        problems = self.problems
        lines.append(
            f"{len(problems)} problem(s): " + ", ".join(f"{s.name} at {s.path}" for s in problems)
            if problems
            else "no near miss found"
        )
        return "\n".join(lines)


class SkipWatch:
    """On the not-taken path of a later step: warn once if the data holds a near miss of
    a parameter it lacks."""

    __slots__ = ("done", "exclude", "flow_name", "fn", "seen")

    def __init__(self, fn: Fn, flow_name: str) -> None:
        self.fn = fn
        self.flow_name = flow_name
        self.exclude = frozenset(fn.info.params)
        self.done = False
        self.seen: set[tuple[str, ...]] = set()  # key sets already found innocent

    def __call__(self, data: dict[str, object]) -> None:
        if self.done:
            return
        keys = tuple(data)
        if keys in self.seen:
            return
        info = self.fn.info
        for name in info.required:
            if name in data:
                continue
            close = closest(name, keys, exclude=self.exclude, cutoff=NEAR_MISS)
            if close is not None:
                self.done = True
                warnings.warn(
                    DataFlowSkipWarning(
                        f"step {info.name!r} at {info.path} of flow {self.flow_name!r} was "
                        f"not taken: it needs {name!r} and the data holds {close!r} (did "
                        f"you mean {close!r}?). If this is a typo, rename the parameter or "
                        f"map it: args_mapper({info.name}, input={{{name!r}: {close!r}}}); if the "
                        f"step is skipped on purpose, declare the outputs of the steps "
                        f"before it so the flow can be checked when it is built."
                    ),
                    stacklevel=2,
                )
                return
        if len(self.seen) < 64:
            self.seen.add(keys)


@dataclass(slots=True)
class Wiring:
    """The result of :func:`analyze`."""

    visibility: str
    reports: dict[Fn, StepWiring] = field(default_factory=dict)
    #: later steps of a sequential block whose not-taken path checks for a near miss
    watchers: dict[Fn, SkipWatch] = field(default_factory=dict)

    def explanation(self, flow_name: str) -> Explanation:
        return Explanation(flow_name, self.visibility, tuple(self.reports.values()))

    def error(self) -> DataFlowWiringError | None:
        bad = [(s, n) for s in self.reports.values() for n in s.never_taken]
        if not bad:
            return None
        s, name = bad[0]
        close = closest(name, s.available, exclude=s.needs + s.takes)
        hint = f"; did you mean {close!r}?" if close else "."
        fix = (
            f"map it: args_mapper({s.name}, input={{{name!r}: {close!r}}})"
            if close
            else f"make a step before it return {name!r}"
        )
        more = "".join(f"\n  also: {t.name} at {t.path} needs {m!r}" for t, m in bad[1:])
        return DataFlowWiringError(
            f"step {s.name!r} at {s.path} can never be taken: its parameter {name!r} is "
            f"produced on no path into it{hint}\n"
            f"  keys available there: {list(s.available)}{more}\n"
            f"Rename the parameter, or {fix}, or, if a step before it returns {name!r}, "
            f"declare it in that step's outputs.",
            tuple((t.path, m) for t, m in bad),
        )


class _Analysis:
    def __init__(self, plan: Block, visibility: str, flow_name: str) -> None:
        self.visibility = visibility
        self.flow_name = flow_name
        self.wiring = Wiring(visibility)
        self.inputs = frozenset(p for fn in _entries(plan) for p in fn.info.params)
        self.guards = set(_guards(plan))

    def combine(self, data: _Keys, out: _Keys) -> _Keys:
        if self.visibility == "previous":
            return out
        if self.visibility == "initial":
            return _Keys(call=True) | out
        return data | out

    def after(self, fn: Fn, data: _Keys, skippable: bool) -> _Keys:
        out = _Keys(frozenset(fn.outputs)) if fn.outputs is not None else _Keys(unknown=(fn,))
        out = self.combine(data, out)
        # a step that may be passed over, or a source that may yield nothing, lets its
        # input through
        return out | data if skippable or fn.info.source is not None else out

    def step(self, fn: Fn, data: _Keys, guard: bool) -> bool:
        info = fn.info
        exclude = frozenset(info.params)
        never = tuple(n for n in info.required if data.closed and n not in data.known)
        near: list[tuple[str, str]] = []
        if data.call and not data.unknown:  # only the call's arguments are unknown
            for name in info.required:
                if name in data.known or name in self.inputs:
                    continue
                close = closest(name, data.known, exclude=exclude, cutoff=NEAR_MISS)
                if close is not None:
                    near.append((name, close))
        self.report(fn, data, guard, never=never, near=tuple(near))
        if not guard and info.required and not never and _may_see_near_miss(fn, data):
            self.wiring.watchers[fn] = SkipWatch(fn, self.flow_name)
        return not never

    def report(
        self,
        fn: Fn,
        data: _Keys | None,
        guard: bool,
        never: tuple[str, ...] = (),
        near: tuple[tuple[str, str], ...] = (),
    ) -> None:
        info = fn.info
        self.wiring.reports[fn] = StepWiring(
            name=info.name,
            path=info.path,
            needs=info.required,
            takes=tuple(n for n, d in fn.params if d is not inspect.Parameter.empty),
            available=tuple(sorted(data.known)) if data else (),
            also_from=data.sources() if data else (),
            guard=guard,
            outputs=fn.outputs,
            optional_outputs=tuple(k for k in fn.outputs or () if k in fn.optional),
            reachable=data is not None,
            never_taken=never,
            near_misses=near,
        )

    def unreachable(self, items: list[Fn | Block]) -> None:
        for item in items:
            for fn in item.steps():
                self.report(fn, None, fn in self.guards)

    def seq(self, block: Block, data: _Keys) -> _Keys | None:
        """The keys a sequential block may pass on, or None if it can never be taken."""
        for i, item in enumerate(block.items):
            first = i == 0
            out: _Keys | None
            if isinstance(item, Fn):
                # a later step with required parameters may be passed over; one without
                # is always taken
                skippable = not first and bool(item.info.required)
                out = self.after(item, data, skippable) if self.step(item, data, first) else None
            elif item.concurrent:
                out = self.par(item, data)
            else:  # a nested flow: its first item is its guard
                out = self.seq(item, data)
                if out is not None and not first:
                    out = out | data
            if out is None:
                if first:
                    self.unreachable(block.items[1:])
                    return None
                continue  # never taken here: the data flows on unchanged
            data = out
        return data

    def par(self, block: Block, data: _Keys) -> _Keys | None:
        """The keys a concurrent block may pass on, or None if no branch can be taken."""
        outs: list[_Keys] = []
        for branch in block.items:
            if isinstance(branch, Fn):
                if self.step(branch, data, guard=True):
                    outs.append(self.after(branch, data, False))
            else:
                out = self.seq(branch, data)
                if out is not None:
                    outs.append(out)
        if not outs:
            return None
        merged = outs[0]
        for out in outs[1:]:
            merged = merged | out
        return merged


def _entries(node: Fn | Block) -> Iterator[Fn]:
    """The steps that receive a node's input."""
    if isinstance(node, Fn):
        yield node
    elif node.concurrent:
        for branch in node.items:
            yield from _entries(branch)
    else:
        yield from _entries(node.items[0])


def _guards(block: Block) -> Iterator[Fn]:
    """The steps that decide whether their block is taken: the first item of every
    sequential block, every step that is a branch of a concurrent block."""
    for i, item in enumerate(block.items):
        if isinstance(item, Fn):
            if block.concurrent or i == 0:
                yield item
        else:
            yield from _guards(item)


def _may_see_near_miss(fn: Fn, data: _Keys) -> bool:
    """Whether the data can ever hold a near miss of one of ``fn``'s parameters."""
    if not data.closed:
        return True
    exclude = frozenset(fn.info.params)
    return any(
        closest(n, data.known, exclude=exclude, cutoff=NEAR_MISS) is not None
        for n in fn.info.required
    )


def analyze(plan: Block, visibility: str, flow_name: str) -> Wiring:
    """Follow the declared keys through ``plan``; the caller raises
    :meth:`Wiring.error` when a step can never be taken."""
    analysis = _Analysis(plan, visibility, flow_name)
    analysis.seq(plan, _Keys(call=True))
    reports = analysis.wiring.reports
    # definition order, whatever order the walk met the steps in
    analysis.wiring.reports = {fn: reports[fn] for fn in plan.steps() if fn in reports}
    return analysis.wiring
