"""SPEC 6: async with / aclose() closes what the flow's steps opened, once each."""

from __future__ import annotations

import functools

import pytest

from asyncdataflow import DataFlow, args_mapper, step


class Resource:
    def __init__(self, fail=False):
        self.closed = 0
        self.fail = fail

    async def __call__(self, x):
        return {"x": x}

    async def aclose(self):
        self.closed += 1
        if self.fail:
            raise OSError("close failed")


async def test_async_with_closes_every_step_object_once():
    shared = Resource()
    other = Resource()
    async with DataFlow((shared, (other, shared), shared)) as flow:
        assert await flow(x=1) == {"x": 1}
    assert shared.closed == 1
    assert other.closed == 1


async def test_wrapped_step_objects_are_closed_through_their_wrappers():
    a, b, c = Resource(), Resource(), Resource()
    flow = DataFlow(
        (
            functools.partial(a),
            args_mapper(b, input={"x": "y"}, output={"x": "y"}),
            step(c, name="c", timeout=1),
        )
    )
    await flow.aclose()
    assert (a.closed, b.closed, c.closed) == (1, 1, 1)


async def test_nested_flow_steps_are_closed_by_the_outer_flow():
    inner_res = Resource()
    inner = DataFlow((inner_res,))
    await DataFlow((Resource(), inner)).aclose()
    assert inner_res.closed == 1


async def test_one_failing_aclose_does_not_stop_the_others():
    bad, good = Resource(fail=True), Resource()
    with pytest.raises(OSError, match="close failed") as info:
        await DataFlow((bad, good)).aclose()
    assert good.closed == 1
    assert "aclose" in info.value.__notes__[0]


async def test_plain_functions_need_no_closing():
    async def f(x):
        return {}

    await DataFlow((f,)).aclose()


async def test_aclose_closes_the_object_behind_a_bound_method_step():
    class Client:
        closed = 0

        async def fetch(self, x):
            return {"y": x}

        async def aclose(self):
            Client.closed += 1

    client = Client()
    async with DataFlow((client.fetch,)) as flow:
        await flow(x=1)
    assert Client.closed == 1
