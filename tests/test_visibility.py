"""SPEC 5: args_visibility "previous", "initial" and "all"; SPEC 2/3 merging rules."""

from __future__ import annotations

import pytest

from asyncdataflow import DataFlow
from asyncdataflow.exceptions import (
    DataFlowDefinitionError,
    DataFlowMergeResultError,
)


async def a(x):
    return {"y": x + 1}


async def b(y):
    return {"z": y + 1}


async def needs_x_and_z(x, z):
    return {"w": x + z}


async def test_previous_each_item_sees_only_what_the_item_before_returned():
    seen = {}

    async def spy(z, x=None):
        seen["x"] = x
        return {"out": z}

    assert await DataFlow((a, b, spy))(x=1) == {"out": 3}
    assert seen == {"x": None}


async def test_initial_call_arguments_reach_every_item_and_the_result():
    flow = DataFlow((a, b, needs_x_and_z), args_visibility="initial")
    assert await flow(x=1) == {"x": 1, "w": 4}


async def test_all_every_item_sees_everything_before_it_and_result_holds_all():
    flow = DataFlow((a, b, needs_x_and_z), args_visibility="all")
    assert await flow(x=1) == {"x": 1, "y": 2, "z": 3, "w": 4}


async def test_all_concurrent_branches_see_the_path_before_them_and_merge():
    async def left(y):
        return {"l": y}

    async def right(x, y):
        return {"r": x + y}

    async def final(l, r, x):  # noqa: E741
        return {"f": l + r + x}

    flow = DataFlow((a, (left, right), final), args_visibility="all")
    assert await flow(x=1) == {"x": 1, "y": 2, "l": 2, "r": 3, "f": 6}


async def test_all_branch_outputs_do_not_leak_into_sibling_branches():
    seen = {}

    async def left(x):
        return {"l": 1}

    async def right(x, l=None):  # noqa: E741
        seen["l"] = l
        return {"r": 1}

    await DataFlow(((left, right),), args_visibility="all")(x=1)
    assert seen == {"l": None}


async def test_initial_unequal_value_under_a_call_argument_raises():
    async def overwrite(x):
        return {"x": x + 1}

    with pytest.raises(DataFlowMergeResultError, match="'x'"):
        await DataFlow((overwrite,), args_visibility="initial")(x=1)


async def test_all_equal_value_under_an_existing_key_is_fine():
    async def same(x):
        return {"x": x}

    assert await DataFlow((same,), args_visibility="all")(x=1) == {"x": 1}


async def test_all_unequal_value_under_an_existing_key_raises():
    async def overwrite(y):
        return {"x": 99}

    with pytest.raises(DataFlowMergeResultError, match="'x'"):
        await DataFlow((a, overwrite), args_visibility="all")(x=1)


def test_unknown_visibility_is_refused():
    with pytest.raises(DataFlowDefinitionError, match="args_visibility"):
        DataFlow((a,), args_visibility="everything")


# -- SPEC 3: merging concurrent outputs -------------------------------------------------


async def test_concurrent_outputs_merge_in_definition_order():
    async def one(x):
        return {"k1": 1, "shared": 0}

    async def two(x):
        return {"k2": 2, "shared": 0}

    async def three(x):
        return {"k0": 3}

    result = await DataFlow(((one, two, three),))(x=1)
    assert result == {"k1": 1, "shared": 0, "k2": 2, "k0": 3}
    assert list(result) == ["k1", "shared", "k2", "k0"]


async def test_concurrent_same_key_unequal_values_names_key_and_both_branches():
    async def fetch_a(x):
        return {"data": [1]}

    async def fetch_b(x):
        return {"data": [2]}

    with pytest.raises(DataFlowMergeResultError) as info:
        await DataFlow(((fetch_a, fetch_b),))(x=1)
    message = str(info.value)
    assert "'data'" in message
    assert "fetch_a" in message
    assert "fetch_b" in message
    assert "args_mapper" in message


async def test_framework_never_mutates_a_dict_a_step_returned():
    returned = []

    def keep(d):
        returned.append((d, dict(d)))
        return d

    async def s1(x):
        return keep({"y": 1})

    async def s2(y):
        return keep({"z": 2})

    async def s3(y):
        return keep({"q": 3})

    async def s4(z, q):
        return keep({"end": z + q})

    for visibility in ("previous", "initial", "all"):
        returned.clear()
        await DataFlow((s1, (s2, s3), s4), args_visibility=visibility)(x=1)
        assert len(returned) == 4
        for obj, snapshot in returned:
            assert obj == snapshot, visibility


async def test_call_arguments_are_not_mutated():
    kwargs = {"x": 1}
    await DataFlow((a, (b,)), args_visibility="all")(**kwargs)
    assert kwargs == {"x": 1}


async def test_a_nested_flow_runs_with_the_outer_flows_visibility():
    # README: an inlined flow takes the outer flow's args_visibility, not its own
    async def first(x):
        return {"y": x + 1}

    async def second(x=None, y=None):
        return {"seen": (x, y)}

    inner = DataFlow((first, second), args_visibility="all")
    assert await inner(x=1) == {"x": 1, "y": 2, "seen": (1, 2)}
    assert await DataFlow((inner,))(x=1) == {"seen": (None, 2)}
    assert await DataFlow((inner,), args_visibility="all")(x=1) == {
        "x": 1,
        "y": 2,
        "seen": (1, 2),
    }
