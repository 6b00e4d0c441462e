"""SPEC 1: a flow is a tuple; what an item may be; compile-time errors with their place."""

from __future__ import annotations

import asyncio
import functools
import inspect

import pytest

from asyncdataflow import DataFlow, args_mapper, step
from asyncdataflow.exceptions import (
    DataFlowDefinitionError,
    DataFlowEmptyError,
    DataFlowFunctionArgsError,
    DataFlowNotCallableError,
    DataFlowNotTupleError,
)


async def inc(x):
    return {"x": x + 1}


def double(x):
    return {"x": x * 2}


async def test_calling_a_flow_returns_a_coroutine():
    flow = DataFlow((inc,))
    coro = flow(x=1)
    assert inspect.iscoroutine(coro)
    assert await coro == {"x": 2}


async def test_top_level_tuple_runs_sequentially_in_order():
    flow = DataFlow((inc, double, inc))
    assert await flow(x=1) == {"x": 5}


async def test_nested_tuple_in_sequential_block_runs_concurrently():
    both_started = asyncio.Event()
    started = []

    async def a(x):
        started.append("a")
        if len(started) == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), 1)
        return {"a": x}

    async def b(x):
        started.append("b")
        if len(started) == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), 1)
        return {"b": x}

    # each branch waits for the other to have started: only possible concurrently
    assert await DataFlow(((a, b),))(x=1) == {"a": 1, "b": 1}


async def test_tuple_in_concurrent_block_is_a_sequential_branch():
    order = []

    async def a1(x):
        order.append("a1")
        await asyncio.sleep(0.01)
        return {"y": x + 1}

    async def a2(y):
        order.append("a2")
        return {"a": y * 10}

    async def b(x):
        order.append("b")
        return {"b": x}

    result = await DataFlow((((a1, a2), b),))(x=1)
    assert result == {"a": 20, "b": 1}
    assert order.index("a1") < order.index("a2")


async def test_nesting_alternates_at_every_level():
    log = []

    def rec(name, out):
        async def f(x):
            log.append(name)
            await asyncio.sleep(0)
            return {out: x, "x": x} if out != "x" else {"x": x}

        f.__qualname__ = name
        return f

    # sequential( concurrent( sequential(A, B), sequential(C, D) ) )
    a, b = rec("A", "a"), rec("B", "b")
    c, d = rec("C", "c"), rec("D", "d")
    flow = DataFlow((((a, b), (c, d)),))
    result = await flow(x=1)
    assert result == {"b": 1, "d": 1, "x": 1}  # each branch returns its last output
    assert log.index("A") < log.index("B")
    assert log.index("C") < log.index("D")
    assert [s.path for s in flow.steps] == [
        "definition[0][0][0]",
        "definition[0][0][1]",
        "definition[0][1][0]",
        "definition[0][1][1]",
    ]


class AsyncCallable:
    async def __call__(self, x):
        return {"x": x + 100}


class SyncCallable:
    def __call__(self, x):
        return {"x": x - 1}


class PackLikeStep:
    """A step object declaring its parameters through __signature__ (as the pack does)."""

    def __init__(self):
        self.__signature__ = inspect.Signature(
            [inspect.Parameter("x", inspect.Parameter.KEYWORD_ONLY)]
        )
        self.__qualname__ = "pack.step"

    async def __call__(self, **kwargs):
        return {"x": kwargs["x"] * 3}


async def test_every_kind_of_item_is_accepted():
    sub = DataFlow((inc,))
    flow = DataFlow(
        (
            inc,  # async function
            double,  # sync function
            functools.partial(inc),  # partial
            args_mapper(lambda v: v + 1, input={"v": "x"}, output="x"),  # mapper
            AsyncCallable(),
            SyncCallable(),
            PackLikeStep(),
            sub,  # another DataFlow
        )
    )
    # ((1+1)*2 +1 +1 +100 -1)*3 +1
    assert await flow(x=1) == {"x": ((((1 + 1) * 2 + 1 + 1) + 100 - 1) * 3) + 1}


@pytest.mark.parametrize(
    ("definition", "place"),
    [
        ([inc], "definition"),
        ((inc, [inc, double]), "definition[1]"),
        ((inc, {inc}), "definition[1]"),
        ((inc, ({"a": inc},)), "definition[1][0]"),
        (((inc, [double]),), "definition[0][1]"),
    ],
)
def test_non_tuple_where_a_tuple_is_expected(definition, place):
    with pytest.raises(DataFlowNotTupleError) as info:
        DataFlow(definition)
    assert place in str(info.value)
    assert "tuple" in str(info.value)


@pytest.mark.parametrize(
    ("definition", "place"),
    [((), "definition"), ((inc, ()), "definition[1]"), ((inc, ((),)), "definition[1][0]")],
)
def test_empty_tuple_anywhere(definition, place):
    with pytest.raises(DataFlowEmptyError, match=r"empty tuple") as info:
        DataFlow(definition)
    assert f"{place}:" in str(info.value)


@pytest.mark.parametrize("item", [1, "step", None, 3.5, object()])
def test_item_neither_callable_nor_tuple(item):
    with pytest.raises(DataFlowNotCallableError) as info:
        DataFlow((inc, (double, item)))
    assert "definition[1][1]" in str(info.value)


def star_args(*args):
    return {}


def star_kwargs(a, **kwargs):
    return {}


def positional_only(a, /, b):
    return {}


@pytest.mark.parametrize(
    ("func", "what"),
    [(star_args, "*args"), (star_kwargs, "**kwargs"), (positional_only, "positional-only")],
)
def test_bad_parameters_are_refused_with_place_and_name(func, what):
    with pytest.raises(DataFlowFunctionArgsError) as info:
        DataFlow((inc, ((double,), (func,))))
    message = str(info.value)
    assert "definition[1][1][0]" in message
    assert func.__qualname__ in message
    assert what in message


async def test_keyword_only_parameters_are_accepted():
    async def f(*, creds, data):
        return {"out": (creds, data)}

    flow = DataFlow((functools.partial(f, creds="secret"),))
    assert await flow(data=1) == {"out": ("secret", 1)}


def test_definition_errors_share_a_base():
    for cls in (
        DataFlowNotTupleError,
        DataFlowEmptyError,
        DataFlowNotCallableError,
        DataFlowFunctionArgsError,
    ):
        assert issubclass(cls, DataFlowDefinitionError)


async def test_compiled_once_no_introspection_per_call(monkeypatch):
    async def fa(x):
        return {"a": x}

    def fb(x, k=2):
        return {"b": x * k}

    flow = DataFlow((inc, double, (fa, fb)))

    def forbidden(*a, **k):
        raise AssertionError("inspect called on the hot path")

    monkeypatch.setattr(inspect, "signature", forbidden)
    monkeypatch.setattr(inspect, "iscoroutinefunction", forbidden)
    monkeypatch.setattr(inspect, "getfullargspec", forbidden)
    assert await flow(x=1) == {"a": 4, "b": 8}


async def test_one_flow_awaited_many_times_at_once_keeps_runs_apart():
    async def slow(x):
        await asyncio.sleep(0.001 * (x % 5))
        return {"y": x}

    async def square(y):
        await asyncio.sleep(0)
        return {"z": y * y}

    flow = DataFlow((slow, square))
    results = await asyncio.gather(*(flow(x=i) for i in range(200)))
    assert results == [{"z": i * i} for i in range(200)]


async def _bump(x):
    return {"x": x + 1}


def _nested(levels: int) -> tuple[object, ...]:
    definition: tuple[object, ...] = (_bump,)
    for _ in range(levels):
        definition = (definition,)
    return definition


async def test_nesting_up_to_the_limit_builds_and_runs() -> None:
    from asyncdataflow._compiler import MAX_DEPTH

    flow = DataFlow(_nested(MAX_DEPTH))
    assert await flow(x=1) == {"x": 2}


@pytest.mark.parametrize("levels", [101, 400, 3000])
def test_nesting_deeper_than_the_limit_is_a_definition_error_not_a_recursion_error(
    levels: int,
) -> None:
    # depth 400 of alternating blocks used to raise a bare RecursionError
    with pytest.raises(DataFlowDefinitionError, match="nest more than 100 levels") as info:
        DataFlow(_nested(levels))
    assert str(info.value).startswith("definition[0][0]")


def test_a_nested_infinity_loop_flow_is_refused_at_definition():
    async def tick(x):
        return {"x": x}

    inner = DataFlow((tick,), infinity_loop=True)
    with pytest.raises(DataFlowDefinitionError, match=r"definition\[1\]"):
        DataFlow((tick, inner))


def test_step_options_around_a_nested_flow_get_a_fitting_message():
    async def tick(x):
        return {"x": x}

    with pytest.raises(DataFlowDefinitionError) as info:
        DataFlow((step(DataFlow((tick,)), timeout=1),))
    assert "DataFlow(a, b)" not in str(info.value)
    assert "definition[0]" in str(info.value)
