"""Review of the core against SPEC 1-6 and 9: odd but legal definitions, cancellation at
awkward moments, BaseExceptions, shared objects, error messages.

Each test either pinned a deviation the review found (since fixed in the core) or covers
a SPEC line that had no test which would fail if the behaviour broke."""

from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from asyncdataflow import DataFlow, Retry, args_mapper, hookimpl, step
from asyncdataflow.exceptions import (
    ArgsMapperError,
    DataFlowDefinitionError,
    DataFlowFunctionResultError,
    DataFlowMergeResultError,
    DataFlowRoutingError,
)

# -- bugs -------------------------------------------------------------------------------


async def test_args_mapper_wraps_a_function_with_a_parameter_named_func():
    def apply(func, x):
        return func(x)

    flow = DataFlow((args_mapper(apply, output="y"),))
    assert await flow(func=abs, x=-3) == {"y": 3}


async def test_sync_step_raising_stop_iteration_fails_the_run_instead_of_hanging():
    def exhausted(x):
        return next(iter([]))

    with pytest.raises(Exception) as info:
        await asyncio.wait_for(DataFlow((exhausted,))(x=1), 1)
    assert not isinstance(info.value, TimeoutError)
    assert "definition[0]" in info.value.__notes__[0]


async def test_a_reraised_exception_object_gets_the_step_note_only_once():
    shared = ConnectionError("pool is down")

    async def connect(x):
        raise shared

    flow = DataFlow((connect,))
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await flow(x=1)
    assert len(shared.__notes__) == 1


async def test_map_return_exceptions_yields_a_cancelled_error_raised_by_a_run():
    async def maybe_cancelled(x):
        if x == 1:
            raise asyncio.CancelledError("the connection was torn down")
        return {"x": x}

    flow = DataFlow((maybe_cancelled,))
    out = [
        r
        async for r in flow.map([{"x": i} for i in range(3)], concurrency=2, return_exceptions=True)
    ]
    assert out[0] == {"x": 0} and out[2] == {"x": 2}
    assert isinstance(out[1], asyncio.CancelledError)


async def test_stop_right_after_create_task_stops_the_loop():
    async def tick(x):
        return {"x": x}

    flow = DataFlow((tick,), infinity_loop=True)
    task = asyncio.create_task(flow(x=1))
    flow.stop()
    try:
        assert await asyncio.wait_for(task, 1) == {"x": 1}
    finally:
        task.cancel()


async def test_limit_holds_for_a_sync_step_whose_timeout_fired():
    release = threading.Event()
    lock = threading.Lock()
    running = [0, 0]  # now, peak

    def blocking(x):
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        release.wait(5)
        with lock:
            running[0] -= 1
        return {}

    with ThreadPoolExecutor(4) as pool:
        flow = DataFlow((step(blocking, limit=1, timeout=0.05),), executor=pool)
        for i in range(3):
            with pytest.raises(TimeoutError):
                await flow(x=i)
        release.set()
    assert running[1] == 1


async def test_a_step_options_object_used_twice_shares_its_limit():
    running = [0, 0]

    async def fetch(x):
        running[0] += 1
        running[1] = max(running[1], running[0])
        await asyncio.sleep(0.01)
        running[0] -= 1
        return {}

    limited = step(fetch, limit=1)
    await DataFlow(((limited, limited),))(x=1)
    assert running[1] == 1


async def test_a_wrong_result_type_is_reported_to_on_step_error():
    events: list[str] = []

    class Recorder:
        @hookimpl
        def before_step_run(self, step):
            events.append("before")

        @hookimpl
        def after_step_run(self, step):
            events.append("after")

        @hookimpl
        def on_step_error(self, step, error):
            events.append(type(error).__name__)

    async def returns_a_number():
        return 5

    with pytest.raises(DataFlowFunctionResultError):
        await DataFlow((returns_a_number,), plugins=[Recorder()])()
    assert events == ["before", "DataFlowFunctionResultError"]


async def test_merge_error_names_the_places_of_two_branches_with_the_same_name():
    async def fetch(url):
        return {"data": url}

    flow = DataFlow(((functools.partial(fetch, url="a"), functools.partial(fetch, url="b")),))
    with pytest.raises(DataFlowMergeResultError) as info:
        await flow()
    assert "definition[0][0]" in str(info.value) and "definition[0][1]" in str(info.value)


async def test_a_nested_flow_keeps_its_own_default_retry():
    calls = [0]

    async def flaky():
        calls[0] += 1
        if calls[0] < 3:
            raise ConnectionError("transient")
        return {"ok": True}

    inner = DataFlow((flaky,), retry=Retry(attempts=3, backoff=0))
    assert await DataFlow((inner,))() == {"ok": True}


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


async def test_args_mapper_list_output_refuses_a_returned_dict():
    def pair():
        return {"p": 1, "q": 2}

    with pytest.raises(ArgsMapperError):
        await DataFlow((args_mapper(pair, output=["a", "b"]),))()


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


# -- correct behaviour that had no test ---------------------------------------------------


async def test_routing_error_for_the_first_item_says_it_could_not_be_taken():
    async def needs(endpoint):
        return {}

    with pytest.raises(DataFlowRoutingError) as info:
        await DataFlow((needs,))(wrong=1)
    first_line = str(info.value).splitlines()[0]
    assert "could not be taken" in first_line and "definition[0]" in first_line


def test_a_limit_works_when_the_flow_runs_on_a_second_event_loop():
    running = [0, 0]

    async def fetch(x):
        running[0] += 1
        running[1] = max(running[1], running[0])
        await asyncio.sleep(0.01)
        running[0] -= 1
        return {"x": x}

    flow = DataFlow((step(fetch, limit=2),))

    async def many() -> list[Any]:
        return await asyncio.gather(*(flow(x=i) for i in range(6)))

    assert asyncio.run(many()) == [{"x": i} for i in range(6)]
    assert asyncio.run(many()) == [{"x": i} for i in range(6)]  # no semaphore of a dead loop
    assert running[1] == 2


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


async def test_cancelling_during_a_retry_pause_stops_at_once_without_retrying():
    attempts = [0]

    async def fails(x):
        attempts[0] += 1
        raise ConnectionError("down")

    flow = DataFlow((step(fails, retry=Retry(attempts=5, backoff=10, jitter=False)),))
    task = asyncio.ensure_future(flow(x=1))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert attempts == [1]


async def test_cancelling_a_loop_during_its_interval_stops_at_once():
    iterations = [0]

    async def tick(x):
        iterations[0] += 1
        return {}

    flow = DataFlow((tick,), infinity_loop=True, interval=10)
    task = asyncio.ensure_future(flow(x=1))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert iterations == [1]
    assert not flow._loops  # the stopped loop does not linger in stop()'s registry


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


async def test_lean_and_instrumented_paths_give_the_same_result_for_a_sync_step():
    def shape(a, b=10):
        return {"sum": a + b}

    lean = DataFlow((shape,))
    instrumented = DataFlow((step(shape, timeout=5, limit=3, retry=Retry(attempts=2)),))
    for kwargs in ({"a": 1}, {"a": 1, "b": 2}):
        assert await lean(**kwargs) == await instrumented(**kwargs)
