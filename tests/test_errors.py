"""SPEC 2, 3 and 9: run-time errors, step exceptions unchanged with a note, cancellation."""

from __future__ import annotations

import asyncio
import functools

import pytest

from asyncdataflow import DataFlow, exceptions, step
from asyncdataflow.exceptions import (
    ArgsMapperError,
    DataFlowCallError,
    DataFlowDefinitionError,
    DataFlowError,
    DataFlowFunctionResultError,
    DataFlowMergeResultError,
    DataFlowRoutingError,
    DataFlowRunError,
)


class Boom(Exception):
    pass


async def start(x):
    return {"x": x}


async def test_step_returning_a_list_raises_result_error_naming_step_and_type():
    async def listy(x):
        return [1, 2]

    with pytest.raises(DataFlowFunctionResultError) as info:
        await DataFlow((start, listy))(x=1)
    message = str(info.value)
    assert "listy" in message
    assert "list" in message
    assert "definition[1]" in message
    assert "args_mapper" in message
    assert "output=" in message


async def test_sync_step_returning_a_coroutine_is_explained_and_closed():
    async def inner():
        return {}

    def wrong(x):
        return inner()

    with pytest.raises(DataFlowFunctionResultError, match="async def"):
        await DataFlow((wrong,))(x=1)


async def test_dict_subclasses_and_mappings_are_accepted():
    from collections import OrderedDict
    from types import MappingProxyType

    async def od(x):
        return OrderedDict(a=1)

    async def proxy(a):
        return MappingProxyType({"b": a})

    assert await DataFlow((od, proxy))(x=1) == {"b": 1}


async def test_positional_arguments_to_a_flow_are_refused_at_once():
    flow = DataFlow((start,))
    with pytest.raises(DataFlowCallError, match="keyword arguments only"):
        flow(1)  # raised before any coroutine exists: nothing left unawaited


async def test_step_exception_propagates_unchanged_with_a_note():
    error = Boom("bad")

    async def fails(x):
        raise error

    flow = DataFlow((start, fails), name="pipeline")
    with pytest.raises(Boom) as info:
        await flow(x=1)
    assert info.value is error
    assert type(info.value) is Boom
    notes = info.value.__notes__
    assert len(notes) == 1
    assert "fails" in notes[0]
    assert "definition[1]" in notes[0]
    assert "pipeline" in notes[0]


async def test_sync_step_exception_also_unchanged_with_a_note():
    def fails(x):
        raise KeyError("k")

    with pytest.raises(KeyError) as info:
        await DataFlow((fails,))(x=1)
    assert "definition[0]" in info.value.__notes__[0]


async def test_failing_branch_cancels_and_awaits_its_siblings():
    sibling_state = {}

    async def slow(x):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            sibling_state["cancelled"] = True
            await asyncio.sleep(0.01)  # cleanup that must be awaited
            sibling_state["cleaned"] = True
            raise
        return {"slow": 1}

    async def fails(x):
        await asyncio.sleep(0.01)
        raise Boom("branch")

    with pytest.raises(Boom) as info:
        await DataFlow(((slow, fails),))(x=1)
    assert sibling_state == {"cancelled": True, "cleaned": True}
    assert "definition[0][1]" in info.value.__notes__[0]


async def test_exception_in_a_nested_branch_keeps_its_own_note_only():
    async def deep(x):
        raise Boom()

    async def other(x):
        await asyncio.sleep(1)
        return {}

    with pytest.raises(Boom) as info:
        await DataFlow((((start, deep), other),))(x=1)
    assert len(info.value.__notes__) == 1
    assert "definition[0][0][1]" in info.value.__notes__[0]


async def test_cancelling_a_run_cancels_its_branches():
    cancelled = []

    async def hang(x):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(1)
            raise
        return {}

    async def hang2(x):
        return await hang(x) or {"b": 1}

    task = asyncio.ensure_future(DataFlow(((hang, hang2),))(x=1))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled == [1, 1]


def test_exception_hierarchy():
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert issubclass(cls, DataFlowError)
    assert issubclass(DataFlowRoutingError, DataFlowRunError)
    assert issubclass(DataFlowMergeResultError, DataFlowRunError)
    assert issubclass(DataFlowFunctionResultError, DataFlowRunError)
    assert issubclass(DataFlowCallError, DataFlowRunError)
    assert issubclass(exceptions.DataFlowNotTupleError, DataFlowDefinitionError)
    assert issubclass(exceptions.ArgsMapperInputKeyError, ArgsMapperError)


async def test_a_defaultdict_output_does_not_fake_missing_keys():
    from collections import defaultdict

    async def loose(x):
        return defaultdict(int, {"y": 1})

    async def needs_z(z):
        return {"z": z}

    assert await DataFlow((loose, needs_z))(x=1) == {"y": 1}


async def test_a_reraised_exception_object_gets_the_step_note_only_once():
    shared = ConnectionError("pool is down")

    async def connect(x):
        raise shared

    flow = DataFlow((connect,))
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await flow(x=1)
    assert len(shared.__notes__) == 1


async def test_merge_error_names_the_places_of_two_branches_with_the_same_name():
    async def fetch(url):
        return {"data": url}

    flow = DataFlow(((functools.partial(fetch, url="a"), functools.partial(fetch, url="b")),))
    with pytest.raises(DataFlowMergeResultError) as info:
        await flow()
    assert "definition[0][0]" in str(info.value)
    assert "definition[0][1]" in str(info.value)


async def test_cancelled_error_raised_by_a_branch_propagates_and_cancels_siblings():
    own = asyncio.CancelledError("raised by the step itself")
    sibling: list[str] = []

    async def raises(x):
        await asyncio.sleep(0)
        raise own

    async def slow(x):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            sibling.append("cancelled")
            raise
        return {}

    with pytest.raises(asyncio.CancelledError) as info:
        await DataFlow(((raises, slow),))(x=1)
    assert info.value is own
    assert sibling == ["cancelled"]


async def test_a_base_exception_from_a_branch_propagates_unchanged_and_cancels_siblings():
    class Abort(BaseException):
        pass

    error = Abort()
    sibling: list[str] = []

    async def aborts(x):
        await asyncio.sleep(0)
        raise error

    async def slow(x):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            sibling.append("cancelled")
            raise
        return {}

    with pytest.raises(Abort) as info:
        await DataFlow(((aborts, slow),))(x=1)
    assert info.value is error
    assert sibling == ["cancelled"]


@pytest.mark.parametrize("is_async", [True, False])
async def test_a_step_timeout_says_which_step_and_how_many_seconds(is_async: bool) -> None:
    import threading

    release = threading.Event()

    async def slow_async(x: int) -> dict[str, int]:
        await asyncio.Event().wait()
        return {"x": x}

    def slow_sync(x: int) -> dict[str, int]:
        release.wait(10)
        return {"x": x}

    func = slow_async if is_async else slow_sync
    flow = DataFlow((step(func, name="fetch", timeout=0.05),))
    try:
        with pytest.raises(TimeoutError) as info:
            await flow(x=1)
    finally:
        release.set()
    # it used to be a bare TimeoutError with an empty message
    assert str(info.value).startswith(
        "step 'fetch' at definition[0] did not finish within its timeout of 0.05 s"
    )


async def test_a_timeout_error_raised_by_the_step_itself_is_left_alone() -> None:
    async def refuses(x: int) -> dict[str, int]:
        raise TimeoutError("upstream said 504")

    flow = DataFlow((step(refuses, timeout=5),))
    with pytest.raises(TimeoutError) as info:
        await flow(x=1)
    assert info.value.args == ("upstream said 504",)
