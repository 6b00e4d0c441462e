"""Property test: the compiled executor agrees with a plain interpreter of the SPEC.

Hypothesis draws random nested definitions (sequential/concurrent alternating, SPEC 1) of
async, sync (thread) and inline-sync steps, written as plain functions, ``partial``s with
a bound argument, ``args_mapper`` wrappers that rename parameters, or callable objects
with a ``__signature__``. Each step has random parameters (required or with a default)
over a small key alphabet, so routing both takes and passes over steps, and a fixed output
rule (a dict whose values depend on the arguments it got, so a wrong argument shows in the
result; sometimes ``None``, sometimes a non-dict, sometimes an exception). Each flow runs
twice at once (different call arguments, one loop) and every run is compared with
:class:`Model`, a direct recursive reading of SPEC 2-5: the result (or the kind of
exception), the steps that ran and the arguments each one got, and, when an observer
plugin is attached, the steps reported as not taken.

Some sequential blocks hold a source (an async, sync or inline generator step, drawn with a
window of 1 to 4 and 0 to 4 records, sometimes failing or yielding a non-dict part way):
the model runs the rest of the block once per record (SPEC 10). A source in the flow's own
tuple is followed by a tally step that counts the records that finished, so the source
itself checks, every time it is advanced, that the records taken and not yet finished
never exceed its window; and one run of each such flow goes through ``flow.stream()``,
whose outputs are compared with the model's, record by record.

About half the steps declare their outputs (``step(..., outputs=...)`` or a ``TypedDict``
return annotation, sometimes with a key they never return), so the wiring check of SPEC 11
runs on every flow. When it refuses one, no step it names may be taken by the model, for
the drawn calls nor for any set of call arguments (:func:`reach`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypedDict

from hypothesis import event, given, note
from hypothesis import strategies as st

import asyncdataflow
from asyncdataflow import DataFlow, hookimpl
from asyncdataflow.exceptions import (
    DataFlowFunctionResultError,
    DataFlowMergeResultError,
    DataFlowRoutingError,
    DataFlowWiringError,
)

KEYS = "abcdef"
VALUES = st.integers(0, 2)
REQUIRED = inspect.Parameter.empty
MAX_DEPTH = 4  # tuple nesting: seq > par > seq > par (whose branches are steps)
FRAMEWORK_ERRORS = (DataFlowRoutingError, DataFlowMergeResultError, DataFlowFunctionResultError)


class StepFailed(Exception):
    """What a generated step raises when its rule says so."""


# -- the generated definition --------------------------------------------------------


@dataclass(eq=False)
class StepSpec:
    id: int
    kind: str  # "async" | "sync" | "inline"
    form: str  # "def" | "partial" | "mapper" (args_mapper input renaming) | "object"
    kwonly: bool
    params: tuple[tuple[str, Any], ...]  # flow-side: (name, default or REQUIRED)
    bound: tuple[tuple[str, int], ...]  # bound with functools.partial (never flow-fed)
    outputs: tuple[tuple[str, int, str | None], ...]  # (key, constant, added argument)
    ret: str  # "dict" | "none" | "raise" | "bad"
    options: bool  # wrapped in asyncdataflow.step(..., timeout=...)
    #: a source: how many records it yields (then it fails there if ret says so)
    records: int | None = None
    window: int = 1
    root: bool = False  # a source in the flow's own tuple: checks its window
    tally: bool = False  # counts finished records and passes its input on
    declare: str = "no"  # "no" | "step" (step(outputs=)) | "typeddict" (return annotation)
    extra: tuple[str, ...] = ()  # declared keys it never returns

    def declared(self) -> tuple[str, ...]:
        return tuple(k for k, _, _ in self.outputs) + self.extra

    def output(self, args: dict[str, int], record: int = 0) -> dict[str, int]:
        return {k: (c + record + (args[p] if p is not None else 0)) % 3 for k, c, p in self.outputs}


@dataclass(eq=False)
class Seq:
    items: list[Any]


@dataclass(eq=False)
class Par:
    branches: list[Any]


def all_steps(node: Any) -> list[StepSpec]:
    if isinstance(node, StepSpec):
        return [node]
    children = node.items if isinstance(node, Seq) else node.branches
    return [s for child in children for s in all_steps(child)]


# -- what the steps record ---------------------------------------------------------------


@dataclass
class Record:
    calls: list[tuple[int, tuple[tuple[str, int], ...]]] = field(default_factory=list)
    on_loop: dict[int, bool] = field(default_factory=dict)
    returned: list[tuple[dict[str, int], dict[str, int]]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    taken: int = 0  # records the root source yielded
    tallied: int = 0  # records that reached the tally step
    most_in_flight: int = 0


RECORD: contextvars.ContextVar[Record] = contextvars.ContextVar("RECORD")


MISSING = -1  # the tally's default: the key was not in its input


def behave(spec: StepSpec, args: dict[str, int]) -> Any:
    rec = RECORD.get()  # a sync step sees it only if the context reached its thread
    rec.calls.append((spec.id, tuple(sorted(args.items()))))
    rec.on_loop[spec.id] = threading.current_thread() is threading.main_thread()
    if spec.tally:
        rec.tallied += 1
        return {k: v for k, v in args.items() if v != MISSING}
    if spec.ret == "raise":
        raise StepFailed(spec.id)
    if spec.ret == "bad":
        return [spec.id]
    if spec.ret == "none":
        return None
    out = spec.output(args)
    rec.returned.append((out, dict(out)))
    return out


def produce(spec: StepSpec, args: dict[str, int]) -> Iterator[Any]:
    """What a source yields: ``spec.records`` outputs, then perhaps a failure."""
    rec = RECORD.get()
    rec.calls.append((spec.id, tuple(sorted(args.items()))))
    rec.on_loop[spec.id] = threading.current_thread() is threading.main_thread()
    assert spec.records is not None
    for index in range(spec.records + 1):
        if spec.root:  # advanced only while the window has room
            rec.most_in_flight = max(rec.most_in_flight, rec.taken - rec.tallied + 1)
        if index == spec.records:
            if spec.ret == "raise":
                raise StepFailed(spec.id)
            if spec.ret == "bad":
                yield [spec.id]
            return
        if spec.root:
            rec.taken += 1
        yield None if spec.ret == "none" else spec.output(args, index)


class SyncStep:
    def __init__(self, spec: StepSpec, sig: inspect.Signature) -> None:
        self.spec = spec
        self.__signature__ = sig
        self.__qualname__ = f"SyncStep{spec.id}"

    def __call__(self, **kwargs: int) -> Any:
        return behave(self.spec, kwargs)


class AsyncStep(SyncStep):
    async def __call__(self, **kwargs: int) -> Any:  # type: ignore[override]
        return behave(self.spec, kwargs)


def build_step(spec: StepSpec) -> Any:
    """A real callable whose signature is the spec's; it calls :func:`behave`."""
    if spec.form == "object":
        kind = (
            inspect.Parameter.KEYWORD_ONLY
            if spec.kwonly
            else (inspect.Parameter.POSITIONAL_OR_KEYWORD)
        )
        ordered = sorted(spec.params, key=lambda p: p[1] is not REQUIRED)
        sig = inspect.Signature([inspect.Parameter(n, kind, default=d) for n, d in ordered])
        obj: Any = (AsyncStep if spec.kind == "async" else SyncStep)(spec, sig)
        if spec.kind == "inline":
            asyncdataflow.inline(obj)
        func = obj
    else:
        # with args_mapper, the function's own parameter names differ from the flow's
        own = (lambda n: f"own_{n}") if spec.form == "mapper" else (lambda n: n)
        required = [own(n) for n, d in spec.params if d is REQUIRED] + [n for n, _ in spec.bound]
        optional = [f"{own(n)}={d}" for n, d in spec.params if d is not REQUIRED]
        sig_src = ", ".join(required + optional)
        if spec.kwonly and sig_src:
            sig_src = "*, " + sig_src
        names = [n for n, _ in spec.params] + [n for n, _ in spec.bound]
        body = "{" + ", ".join(f"{n!r}: {own(n)}" for n in names) + "}"
        prefix = "async " if spec.kind == "async" else ""
        src = f"{prefix}def step_{spec.id}({sig_src}):\n    return BEHAVE(SPEC, {body})\n"
        if spec.records is not None and spec.kind == "async":
            src = (
                f"async def step_{spec.id}({sig_src}):\n"
                f"    for item in PRODUCE(SPEC, {body}):\n        yield item\n"
            )
        elif spec.records is not None:
            src = f"def step_{spec.id}({sig_src}):\n    yield from PRODUCE(SPEC, {body})\n"
        ns: dict[str, Any] = {"BEHAVE": behave, "PRODUCE": produce, "SPEC": spec}
        exec(src, ns)
        func = ns[f"step_{spec.id}"]
        if spec.kind == "inline":
            asyncdataflow.inline(func)
        if spec.declare == "typeddict":
            keys = {k: int for k in spec.declared()}
            func.__annotations__["return"] = TypedDict(f"Out{spec.id}", keys, total=False)  # type: ignore[operator]
        if spec.form == "partial":
            func = functools.partial(func, **dict(spec.bound))
        if spec.form == "mapper":
            func = asyncdataflow.args_mapper(func, input={own(n): n for n, _ in spec.params})
    if spec.declare == "step":
        func = asyncdataflow.step(func, outputs=spec.declared())
    if spec.options:
        func = asyncdataflow.step(func, name=f"step_{spec.id}", timeout=60)
    if spec.records is not None:
        func = asyncdataflow.step(func, window=spec.window)
    return func


def build_definition(node: Any, funcs: dict[int, Any]) -> Any:
    if isinstance(node, StepSpec):
        func = build_step(node)
        funcs[node.id] = func
        return func
    children = node.items if isinstance(node, Seq) else node.branches
    return tuple(build_definition(child, funcs) for child in children)


class SkipObserver:
    """Records the steps reported as not taken (and makes the flow use the hooked path)."""

    def __init__(self, ids: dict[int, int]) -> None:
        self.ids = ids  # id(StepInfo.func) -> spec id

    @hookimpl
    def before_step_run(self) -> None:
        pass

    @hookimpl
    def on_step_skipped(self, step: Any) -> None:
        RECORD.get().skipped.append(self.ids[id(step.func)])


# -- the model -------------------------------------------------------------------------


class ModelError(Exception):
    """The run fails with one of ``outcomes`` (several when concurrent branches race)."""

    def __init__(self, outcomes: set[Any]) -> None:
        super().__init__(outcomes)
        self.outcomes = outcomes


class Model:
    """SPEC 2-5 read literally, one item at a time, with no concurrency."""

    def __init__(self, visibility: str, kwargs: dict[str, int]) -> None:
        self.visibility = visibility
        self.init = dict(kwargs)
        self.calls: list[tuple[int, tuple[tuple[str, int], ...]]] = []
        #: what flow.stream() yields: every record's output of the root source, or the result
        self.emitted: list[dict[str, int]] | None = None

    def run(self, root: Seq) -> dict[str, int]:
        result = self.seq(root, dict(self.init), root=True)
        if self.emitted is None:
            self.emitted = [result]
        return result

    def taken(self, node: Any, d: dict[str, int]) -> bool:
        if isinstance(node, StepSpec):  # SPEC 4: all required arguments present
            return all(n in d for n, default in node.params if default is REQUIRED)
        if isinstance(node, Seq):  # the first item is the guard
            return self.taken(node.items[0], d)
        return any(self.taken(b, d) for b in node.branches)  # any branch

    def args(self, spec: StepSpec, d: dict[str, int]) -> dict[str, int]:
        # SPEC 2: an argument takes the input's value when present, else its default
        args = {n: d[n] for n, _ in spec.params if n in d}
        args.update((n, dflt) for n, dflt in spec.params if n not in d and dflt is not REQUIRED)
        args.update(spec.bound)  # SPEC 2: partial-bound values are never overridden
        self.calls.append((spec.id, tuple(sorted(args.items()))))
        return args

    def call(self, spec: StepSpec, d: dict[str, int]) -> dict[str, int]:
        args = self.args(spec, d)
        if spec.tally:
            return {k: v for k, v in args.items() if v != MISSING}
        if spec.ret == "raise":
            raise ModelError({("step", spec.id)})
        if spec.ret == "bad":
            raise ModelError({DataFlowFunctionResultError})
        if spec.ret == "none":
            return {}
        return spec.output(args)

    @staticmethod
    def merge(left: dict[str, int], right: dict[str, int]) -> dict[str, int]:
        for key, value in right.items():
            if key in left and left[key] != value:
                raise ModelError({DataFlowMergeResultError})
        return {**left, **right}

    def combine(self, d: dict[str, int], r: dict[str, int]) -> dict[str, int]:
        if self.visibility == "previous":
            return r
        if self.visibility == "initial":
            return self.merge(self.init, r)
        return self.merge(d, r)

    def seq(self, block: Seq, d: dict[str, int], root: bool, start: int = 0) -> dict[str, int]:
        for i in range(start, len(block.items)):
            item = block.items[i]
            if not self.taken(item, d):
                assert root or i > 0, "a branch runs only when its guard is taken"
                if i == 0 or isinstance(item, Par):
                    raise ModelError({DataFlowRoutingError})
                continue  # a later function step is passed over; d flows on
            if isinstance(item, StepSpec) and item.records is not None:
                return self.stream(item, block, i + 1, d, root)
            if isinstance(item, StepSpec):
                d = self.combine(d, self.call(item, d))
            else:
                d = self.par(item, d)
        return d

    def stream(
        self, spec: StepSpec, block: Seq, rest: int, d: dict[str, int], root: bool
    ) -> dict[str, int]:
        """SPEC 10: the rest of the block once per record, in order; the last output."""
        args = self.args(spec, d)
        assert spec.records is not None
        outputs = [{} if spec.ret == "none" else spec.output(args, j) for j in range(spec.records)]
        fails = {"raise": {("step", spec.id)}, "bad": {DataFlowFunctionResultError}}
        source_error = fails.get(spec.ret)

        def record(j: int) -> dict[str, int]:
            return self.seq(block, self.combine(d, outputs[j]), False, rest)

        if root:
            self.emitted = []
        out = d
        for j in range(spec.records):
            try:
                out = record(j)
            except ModelError as error:
                # the records after it in the window may fail first, or the source
                outcomes = set(error.outcomes)
                for later in range(j + 1, min(j + spec.window, spec.records)):
                    try:
                        record(later)
                    except ModelError as other:
                        outcomes |= other.outcomes
                if source_error and spec.records <= j + spec.window - 1:
                    outcomes |= source_error
                raise ModelError(outcomes) from None
            if root and self.emitted is not None:
                self.emitted.append(out)
        if source_error:
            raise ModelError(source_error)
        return out

    def par(self, block: Par, d: dict[str, int]) -> dict[str, int]:
        outs: list[dict[str, int]] = []
        errors: set[Any] = set()
        for branch in block.branches:
            if not self.taken(branch, d):
                continue
            try:
                if isinstance(branch, StepSpec):
                    outs.append(self.combine(d, self.call(branch, d)))
                else:
                    outs.append(self.seq(branch, d, root=False))
            except ModelError as error:
                # the first failure wins and cancels the others: any of them may be it
                errors |= error.outcomes
        if errors:
            raise ModelError(errors)
        out = outs[0]
        for other in outs[1:]:
            out = self.merge(out, other)
        return out


def reach(
    node: Any, d: frozenset[str], visibility: str, init: frozenset[str], seen: set[int]
) -> frozenset[str] | None:
    """SPEC 4-5 on key sets alone: which steps some run with call arguments ``init`` can
    take, every step returning all it may (no merge conflict, no failure stops the run).
    Returns the keys a node passes on, or None when it is not taken."""

    def combine(d: frozenset[str], r: frozenset[str]) -> frozenset[str]:
        return r if visibility == "previous" else (init if visibility == "initial" else d) | r

    if isinstance(node, StepSpec):
        if not all(n in d for n, default in node.params if default is REQUIRED):
            return None
        seen.add(node.id)
        return combine(d, frozenset(k for k, _, _ in node.outputs))
    if isinstance(node, Par):
        outs = [o for b in node.branches if (o := reach(b, d, visibility, init, seen)) is not None]
        return frozenset().union(*outs) if outs else None
    for i, item in enumerate(node.items):
        out = reach(item, d, visibility, init, seen)
        if out is None:
            if i == 0 or isinstance(item, Par):
                return None  # not taken, or a routing error: nothing after it runs
            continue
        d = out
    return d


def paths(node: Any, path: str, out: dict[str, int]) -> dict[str, int]:
    if isinstance(node, StepSpec):
        out[path] = node.id
    else:
        children = node.items if isinstance(node, Seq) else node.branches
        for i, child in enumerate(children):
            paths(child, f"{path}[{i}]", out)
    return out


def check_refusal(
    error: DataFlowWiringError, root: Seq, visibility: str, calls: list[dict[str, int]]
) -> None:
    """The check refused the flow: no step it names may ever be taken."""
    ids = paths(root, "definition", {})
    refused = {ids[path] for path, _ in error.problems}
    assert refused, error
    for kwargs in calls:
        model = Model(visibility, kwargs)
        try:
            model.run(root)
        except ModelError:
            pass
        assert not refused & {i for i, _ in model.calls}, (error, kwargs)
    for n in range(len(KEYS) + 1):
        for keys in itertools.combinations(KEYS, n):
            seen: set[int] = set()
            init = frozenset(keys)
            reach(root, init, visibility, init, seen)
            assert not refused & seen, (error, keys)


# -- the strategies ----------------------------------------------------------------------


def draw_step(draw: st.DrawFn, counter: list[int], is_source: bool = False) -> StepSpec:
    counter[0] += 1
    kind = draw(st.sampled_from(["async", "sync", "inline"]))
    forms = ["def", "def", "partial", "mapper"] + ([] if is_source else ["object"])
    form = draw(st.sampled_from(forms))
    names = draw(st.lists(st.sampled_from(KEYS), max_size=3, unique=True))
    params = tuple((n, REQUIRED if draw(st.integers(0, 2)) else draw(VALUES)) for n in names)
    bound: tuple[tuple[str, int], ...] = ()
    if form == "partial":
        free = [k for k in KEYS if k not in names]
        bound = ((draw(st.sampled_from(free)), draw(VALUES)),)
    arg_names = names + [n for n, _ in bound]
    source = st.one_of(st.none(), st.sampled_from(arg_names)) if arg_names else st.none()
    outputs = tuple(
        draw(
            st.lists(
                st.tuples(st.sampled_from(KEYS), VALUES, source),
                max_size=4,
                unique_by=lambda o: o[0],
            )
        )
    )
    declare = draw(
        st.sampled_from(["no", "step", "typeddict"] if form != "object" else ["no", "step"])
    )
    extra = () if declare == "no" or draw(st.integers(0, 3)) else (draw(st.sampled_from(KEYS)),)
    extra = tuple(k for k in extra if k not in {o[0] for o in outputs})
    roll = draw(st.integers(0, 99))
    ret = "dict" if roll < 85 else "none" if roll < 93 else "raise" if roll < 97 else "bad"
    return StepSpec(
        id=counter[0],
        kind=kind,
        form=form,
        kwonly=draw(st.booleans()),
        params=params,
        bound=bound,
        outputs=outputs,
        ret=ret,
        options=draw(st.integers(0, 9)) == 0,
        records=draw(st.integers(0, 4)) if is_source else None,
        window=draw(st.integers(1, 4)) if is_source else 1,
        declare=declare,
        extra=extra,
    )


def draw_seq(draw: st.DrawFn, depth: int, counter: list[int]) -> Seq:
    items: list[Any] = []
    length = draw(st.integers(1, 4 if depth == 1 else 3))
    # one source in a block at most (a flat map is a second source in a record)
    source_at = draw(st.integers(0, 3 * length - 1))
    for i in range(length):
        if i == source_at:
            items.append(draw_step(draw, counter, is_source=True))
        elif depth < MAX_DEPTH and draw(st.integers(0, 2)) == 0:
            items.append(draw_par(draw, depth + 1, counter))
        else:
            items.append(draw_step(draw, counter))
    if depth == 1 and any(isinstance(s, StepSpec) and s.records is not None for s in items):
        for spec in items:
            if isinstance(spec, StepSpec) and spec.records is not None:
                spec.root = True
        counter[0] += 1
        keys = tuple((k, MISSING) for k in KEYS)
        tally = StepSpec(counter[0], "inline", "def", False, keys, (), (), "dict", False)
        tally.tally = True
        items.append(tally)
    return Seq(items)


def draw_par(draw: st.DrawFn, depth: int, counter: list[int]) -> Par:
    branches: list[Any] = []
    for _ in range(draw(st.integers(1, 3))):
        if depth < MAX_DEPTH and draw(st.booleans()):
            branches.append(draw_seq(draw, depth + 1, counter))
        else:
            branches.append(draw_step(draw, counter))
    return Par(branches)


@st.composite
def flows(draw: st.DrawFn) -> tuple[Seq, str, bool, list[dict[str, int]]]:
    root = draw_seq(draw, 1, [0])
    visibility = draw(st.sampled_from(["previous", "initial", "all"]))
    observed = draw(st.booleans())
    calls = draw(
        st.lists(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6), min_size=2, max_size=2)
    )
    return root, visibility, observed, calls


# -- the test --------------------------------------------------------------------------


def describe(outcomes: set[Any]) -> str:
    return " or ".join(sorted(o.__name__ if isinstance(o, type) else o[0] for o in outcomes))


def outcome_of(error: BaseException) -> Any:
    if type(error) is StepFailed:
        return ("step", error.args[0])
    if type(error) in FRAMEWORK_ERRORS:
        return type(error)
    return error  # anything else never matches an expected outcome


async def run_one(flow: DataFlow, kwargs: dict[str, int], stream: bool) -> tuple[Any, Record]:
    record = Record()
    RECORD.set(record)  # this task's own context: concurrent runs never share it
    try:
        if stream:
            return [out async for out in flow.stream(**kwargs)], record
        return await flow(**kwargs), record
    except Exception as error:
        return error, record


async def run_all(
    flow: DataFlow, calls: list[dict[str, int]], streamed: bool
) -> list[tuple[Any, Record]]:
    runs = (run_one(flow, kw, streamed and i == 1) for i, kw in enumerate(calls))
    return await asyncio.gather(*runs)


@given(flows())
def test_executor_agrees_with_the_model(case: tuple[Seq, str, bool, list[dict[str, int]]]) -> None:
    root, visibility, observed, calls = case
    specs = {s.id: s for s in all_steps(root)}
    funcs: dict[int, Any] = {}
    definition = build_definition(root, funcs)
    plugins: list[Any] = []
    if observed:
        ids = {
            id(f.func if isinstance(f, asyncdataflow.options.StepOptions) else f): i
            for i, f in funcs.items()
        }
        plugins.append(SkipObserver(ids))
    try:
        flow = DataFlow(definition, args_visibility=visibility, plugins=plugins)
    except DataFlowWiringError as error:
        event(f"{visibility}: refused by the wiring check")
        check_refusal(error, root, visibility, calls)
        return
    note(f"definition: {definition!r}\nvisibility={visibility}\n{flow.source}")
    sources = [s for s in specs.values() if s.records is not None]
    roots = [s for s in sources if s.root]
    outcomes = asyncio.run(run_all(flow, calls, streamed=bool(roots)))

    for i, (kwargs, (got, record)) in enumerate(zip(calls, outcomes, strict=True)):
        streamed = bool(roots) and i == 1
        model = Model(visibility, kwargs)
        note(f"kwargs={kwargs} got={got!r} calls={record.calls}")
        try:
            expected = model.run(root)
        except ModelError as error:
            event(f"{visibility}: fails with {describe(error.outcomes)}")
            assert isinstance(got, BaseException), f"expected one of {error.outcomes}"
            assert outcome_of(got) in error.outcomes, (got, error.outcomes)
            if isinstance(got, StepFailed):  # the same object, with a note naming it
                assert any("step_" in n or "Step" in n for n in got.__notes__)
            ran = set(record.calls)
            assert ran <= set(model.calls), "a step ran that the model never reaches"
        else:
            event(f"{visibility}: result, {min(len(model.calls), 6)}+ steps ran")
            if sources:
                event(f"sources: {len(sources)}, streamed={streamed}")
            assert not isinstance(got, BaseException), f"raised {got!r}, expected {expected}"
            assert got == (model.emitted if streamed else expected)
            assert sorted(record.calls) == sorted(model.calls)
            if observed and not sources:  # SPEC 4: every step not taken is reported, once
                ran_ids = {i for i, _ in record.calls}
                assert sorted(record.skipped) == sorted(set(specs) - ran_ids)
        if roots:  # SPEC 10: records taken and not yet finished never exceed the window
            assert record.most_in_flight <= roots[0].window, (record.most_in_flight, roots)
        if sources:  # a step after a source runs once per record, never more
            assert Counter(record.calls) <= Counter(model.calls) or not isinstance(got, dict)
        else:
            assert len({i for i, _ in record.calls}) == len(record.calls), "a step ran twice"
        for step_id, on_loop in record.on_loop.items():  # SPEC 6: sync steps off the loop
            assert on_loop == (specs[step_id].kind != "sync"), specs[step_id]
        for returned, snapshot in record.returned:  # SPEC 2: returned dicts untouched
            assert returned == snapshot
