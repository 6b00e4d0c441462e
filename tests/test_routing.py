"""SPEC 2 and 4: what a step receives, and which steps run (routing by arguments)."""

from __future__ import annotations

import functools

import pytest

from asyncdataflow import DataFlow, hookimpl
from asyncdataflow.exceptions import (
    DataFlowRoutingError,
)

calls: list[str] = []


def recorder(name, out=None, params=("x",)):
    """An async step taking ``params`` and returning ``out`` (default: {name: True})."""
    src = f"async def {name}({', '.join(params)}):\n    calls.append({name!r})\n    return OUT"
    ns = {"calls": calls, "OUT": out if out is not None else {name: True}}
    exec(src, ns)
    return ns[name]


@pytest.fixture(autouse=True)
def _clear():
    calls.clear()


# -- SPEC 2: what a step receives --------------------------------------------------------


async def test_required_parameters_must_all_be_present():
    async def needs_two(a, b):
        return {"sum": a + b}

    async def first(x):
        return {"a": x}

    async def fallback(a):
        return {"only_a": a}

    flow = DataFlow((first, needs_two, fallback))
    # needs_two is not taken (no b); its input flows on to fallback
    assert await flow(x=1) == {"only_a": 1}


async def test_default_takes_input_value_when_present_else_default():
    async def f(x, scale=10):
        return {"y": x * scale}

    flow = DataFlow((f,))
    assert await flow(x=2) == {"y": 20}
    assert await flow(x=2, scale=3) == {"y": 6}


async def test_partial_bound_value_is_never_overridden_by_flow_data():
    async def f(x, creds):
        return {"used": creds}

    flow = DataFlow((functools.partial(f, creds="bound"),))
    assert await flow(x=1, creds="from-flow") == {"used": "bound"}
    # and a bound name is not required from the flow
    assert await flow(x=1) == {"used": "bound"}


async def test_keys_the_step_does_not_name_are_ignored():
    async def f(x):
        return {"x": x}

    assert await DataFlow((f,))(x=1, noise=2, more=3) == {"x": 1}


async def test_function_with_no_parameters_always_runs():
    async def start(x):
        return {}

    async def tick():
        calls.append("tick")
        return {"ticked": True}

    assert await DataFlow((start, tick))(x=1) == {"ticked": True}
    assert calls == ["tick"]


async def test_returning_none_is_the_same_as_an_empty_dict():
    async def nothing(x):
        return None

    def after():
        return {"ran": True}

    assert await DataFlow((nothing,))(x=1) == {}
    assert await DataFlow((nothing, after))(x=1) == {"ran": True}


# -- SPEC 4: routing ---------------------------------------------------------------------


async def test_step_with_missing_arguments_is_not_taken_later_in_a_block():
    a = recorder("a", {"y": 1})
    b = recorder("b", {"z": 2}, params=("missing",))
    c = recorder("c", {"done": 3}, params=("y",))
    assert await DataFlow((a, b, c))(x=0) == {"done": 3}
    assert calls == ["a", "c"]


async def test_passed_over_step_hands_its_input_on_unchanged():
    a = recorder("a", {"y": 1, "w": 5})
    b = recorder("b", {"z": 2}, params=("missing",))
    assert await DataFlow((a, b))(x=0) == {"y": 1, "w": 5}


async def test_sequential_branch_is_not_taken_when_its_first_item_is_not():
    dispatch = recorder("dispatch", {"qa": 1})
    ask_a = recorder("ask_a", {"ra": 1}, params=("qa",))
    ask_b = recorder("ask_b", {"rb": 1}, params=("qb",))
    # shape_b could run on the dispatcher's output, but its branch is not taken as a whole
    shape_b = recorder("shape_b", {"sb": 1}, params=())
    flow = DataFlow((dispatch, ((ask_a,), (ask_b, shape_b))))
    assert await flow(x=0) == {"ra": 1}
    assert calls == ["dispatch", "ask_a"]


async def test_concurrent_block_runs_only_the_branches_that_can_be_taken():
    dispatch = recorder("dispatch", {"qb": 1})
    ask_a = recorder("ask_a", {"ra": 1}, params=("qa",))
    ask_b = recorder("ask_b", {"rb": 1}, params=("qb",))
    assert await DataFlow((dispatch, (ask_a, ask_b)))(x=0) == {"rb": 1}
    assert calls == ["dispatch", "ask_b"]


async def test_concurrent_block_not_taken_at_a_later_place_raises_routing_error():
    dispatch = recorder("dispatch", {"other": 1})
    ask_a = recorder("ask_a", {"ra": 1}, params=("qa",))
    ask_b = recorder("ask_b", {"rb": 1}, params=("qb", "token"))
    flow = DataFlow((dispatch, (ask_a, ask_b)))
    with pytest.raises(DataFlowRoutingError) as info:
        await flow(x=0)
    message = str(info.value)
    assert "definition[1]" in message
    assert "ask_a" in message
    assert "['qa']" in message
    assert "ask_b" in message
    assert "['qb', 'token']" in message
    assert "['other']" in message  # the available keys


async def test_flow_whose_first_item_is_not_taken_raises_routing_error():
    a = recorder("a", params=("endpoint",))
    with pytest.raises(DataFlowRoutingError) as info:
        await DataFlow((a,))(wrong=1)
    message = str(info.value)
    assert "first item" in message
    assert "['endpoint']" in message
    assert "['wrong']" in message
    assert calls == []


async def test_flow_whose_first_concurrent_block_is_not_taken_raises_routing_error():
    a = recorder("a", params=("p",))
    b = recorder("b", params=("q",))
    with pytest.raises(DataFlowRoutingError, match=r"\['p'\]"):
        await DataFlow(((a, b),))(x=1)


async def test_concurrent_block_as_a_branch_guard_is_not_taken_when_no_branch_is():
    # sequential( concurrent( sequential( concurrent(a, b), c ), d ) )
    a = recorder("a", params=("p",))
    b = recorder("b", params=("q",))
    c = recorder("c", params=())
    d = recorder("d", params=("x",))
    flow = DataFlow(((((a, b), c), d),))
    assert await flow(x=1) == {"d": True}
    assert calls == ["d"]


async def test_first_item_of_a_branch_is_its_guard_for_a_nested_flow_too():
    inner = DataFlow((recorder("inner", params=("qa",)),))
    other = recorder("other", params=("x",))
    assert await DataFlow(((inner, other),))(x=1) == {"other": True}


async def test_nested_flow_at_a_later_place_that_is_not_taken_is_passed_over():
    first = recorder("first", {"y": 1})
    inner = DataFlow((recorder("inner", params=("missing",)),))
    assert await DataFlow((first, inner))(x=1) == {"y": 1}


async def test_seed_request_broker_routes_by_the_dispatchers_output():
    async def receive_request(request):
        return {"request": request}

    async def dispatch_request(request):
        return {f"q_{s}": request["q"] for s in request["systems"]}

    async def ask_a(q_a):
        return {"ra": f"A({q_a})"}

    async def transform_a(ra):
        return {"a": ra.lower()}

    async def ask_b(q_b):
        return {"rb": f"B({q_b})"}

    async def transform_b(rb):
        return {"b": rb.lower()}

    async def compose(a=None, b=None):
        return {"response": [x for x in (a, b) if x]}

    flow = DataFlow(
        (receive_request, dispatch_request, ((ask_a, transform_a), (ask_b, transform_b)), compose)
    )
    assert await flow(request={"q": "Q", "systems": ["a"]}) == {"response": ["a(q)"]}
    assert await flow(request={"q": "Q", "systems": ["b"]}) == {"response": ["b(q)"]}
    assert await flow(request={"q": "Q", "systems": ["a", "b"]}) == {"response": ["a(q)", "b(q)"]}
    with pytest.raises(DataFlowRoutingError):
        await flow(request={"q": "Q", "systems": []})


class SkipRecorder:
    def __init__(self):
        self.skipped = []

    @hookimpl
    def on_step_skipped(self, step, missing, available):
        self.skipped.append((step.path, missing, available))


async def test_every_step_not_taken_is_reported_to_plugins():
    dispatch = recorder("dispatch", {"qa": 1})
    ask_a = recorder("ask_a", {"ra": 1}, params=("qa",))
    ask_b = recorder("ask_b", {"rb": 1}, params=("qb",))
    shape_b = recorder("shape_b", {"sb": 1}, params=("rb",))
    late = recorder("late", params=("nope",))
    plugin = SkipRecorder()
    flow = DataFlow((dispatch, ((ask_a,), (ask_b, shape_b)), late), plugins=[plugin])
    await flow(x=0)
    assert plugin.skipped == [
        ("definition[1][1][0]", ("qb",), ("qa",)),
        ("definition[1][1][1]", ("rb",), ("qa",)),
        ("definition[2]", ("nope",), ("ra",)),
    ]


async def test_skipped_steps_are_reported_before_a_routing_error():
    plugin = SkipRecorder()
    a = recorder("a", params=("p",))
    flow = DataFlow((a,), plugins=[plugin])
    with pytest.raises(DataFlowRoutingError):
        await flow(x=1)
    assert plugin.skipped == [("definition[0]", ("p",), ("x",))]


async def test_routing_error_for_the_first_item_says_it_could_not_be_taken():
    async def needs(endpoint):
        return {}

    with pytest.raises(DataFlowRoutingError) as info:
        await DataFlow((needs,))(wrong=1)
    first_line = str(info.value).splitlines()[0]
    assert "could not be taken" in first_line
    assert "definition[0]" in first_line


async def test_first_concurrent_block_whose_branch_starts_with_a_concurrent_block_routes():
    async def a(x):
        return {"a": x}

    async def b(y):
        return {"b": y}

    async def join(a=None, b=None):
        return {"joined": (a, b)}

    async def other(z):
        return {"z": z}

    flow = DataFlow(((((a, b), join), other),))
    assert await flow(x=1) == {"joined": (1, None)}
    assert await flow(z=3) == {"z": 3}
    assert await flow(x=1, y=2, z=3) == {"joined": (1, 2), "z": 3}
    with pytest.raises(DataFlowRoutingError) as info:
        await flow(q=1)
    message = str(info.value)
    for place in ("definition[0][0][0][0]", "definition[0][0][0][1]", "definition[0][1]"):
        assert place in message


async def test_a_concurrent_block_of_parameterless_functions_always_runs():
    async def one():
        return {"one": 1}

    def two():
        return {"two": 2}

    flow = DataFlow((lambda: None, (one, two)))
    assert await flow(anything=1) == {"one": 1, "two": 2}


async def test_a_function_in_a_concurrent_block_and_after_it_runs_in_both_places():
    calls: list[int] = []

    async def count(n):
        calls.append(n)
        return {"n": n}

    flow = DataFlow(((count, count), count))
    assert await flow(n=1) == {"n": 1}
    assert calls == [1, 1, 1]


def test_missing_arguments_names_the_first_step_candidates_and_what_each_lacks() -> None:
    async def a(x: int, y: int = 0) -> dict[str, int]:
        return {"z": x}

    async def b(q: int, r: int) -> dict[str, int]:
        return {"z": q}

    async def after(z: int) -> dict[str, int]:
        return {"z": z}

    single = DataFlow((a, after))
    assert single.missing_arguments({"x": 1}) == []
    assert [(info.name, info.path, missing) for info, missing in single.missing_arguments({})] == [
        (a.__qualname__, "definition[0]", ("x",))
    ]
    branches = DataFlow(((a, b), after))
    assert branches.missing_arguments({"q": 1, "r": 2}) == []  # one branch is enough
    assert [(info.path, missing) for info, missing in branches.missing_arguments({"r": 1})] == [
        ("definition[0][0]", ("x",)),
        ("definition[0][1]", ("q",)),
    ]
