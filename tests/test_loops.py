"""SPEC 6: infinity_loop, interval, stop(), cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from asyncdataflow import DataFlow
from asyncdataflow.exceptions import (
    DataFlowDefinitionError,
)


class Counter:
    def __init__(self):
        self.n = 0
        self.counted = asyncio.Condition()

    async def __call__(self, x):
        self.n += 1
        async with self.counted:
            self.counted.notify_all()
        return {"n": self.n, "x": x}

    async def reached(self, n):
        """Wait until the step has been called ``n`` times (an event, not a poll)."""
        async with self.counted:
            await self.counted.wait_for(lambda: self.n >= n)


async def test_loop_runs_again_and_again_with_the_same_arguments():
    counter = Counter()
    flow = DataFlow((counter,), infinity_loop=True)
    task = asyncio.ensure_future(flow(x="same"))
    await counter.reached(50)
    flow.stop()
    result = await task
    assert result["x"] == "same"
    assert result["n"] >= 50


async def test_loop_yields_to_the_event_loop_between_iterations():
    ticks = 0

    async def no_await(x):  # a step that never awaits anything
        return {"x": x}

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    flow = DataFlow((no_await,), infinity_loop=True)
    t = asyncio.ensure_future(ticker())
    task = asyncio.ensure_future(flow(x=1))
    await asyncio.sleep(0.05)
    flow.stop()
    await task
    t.cancel()
    assert ticks > 10


async def test_stop_lets_the_current_iteration_finish_and_returns_its_result():
    started = asyncio.Event()
    finished = []

    async def slow(x):
        started.set()
        await asyncio.sleep(0.05)
        finished.append(x)
        return {"done": len(finished)}

    flow = DataFlow((slow,), infinity_loop=True)
    task = asyncio.ensure_future(flow(x=1))
    await started.wait()
    flow.stop()
    result = await task
    assert result == {"done": 1}
    assert finished == [1]


async def test_stop_ends_every_running_loop_of_the_flow():
    flow = DataFlow((Counter(),), infinity_loop=True)
    tasks = [asyncio.ensure_future(flow(x=i)) for i in range(3)]
    await asyncio.sleep(0.01)
    flow.stop()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert sorted(r["x"] for r in results) == [0, 1, 2]


async def test_stop_during_the_interval_returns_at_once():
    counter = Counter()
    flow = DataFlow((counter,), infinity_loop=True, interval=10)
    task = asyncio.ensure_future(flow(x=1))
    await counter.reached(1)
    started = time.perf_counter()
    flow.stop()
    assert await task == {"n": 1, "x": 1}
    assert time.perf_counter() - started < 1


async def test_interval_pauses_between_iterations():
    counter = Counter()
    flow = DataFlow((counter,), infinity_loop=True, interval=0.05)
    started = time.perf_counter()
    task = asyncio.ensure_future(flow(x=1))
    await counter.reached(3)
    flow.stop()
    await task
    elapsed = time.perf_counter() - started
    # n iterations need n - 1 pauses: never more iterations than the time allows
    assert (counter.n - 1) * 0.05 <= elapsed
    assert counter.n >= 3


async def test_cancelling_the_task_stops_at_once():
    cancelled = []

    async def hang(x):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return {}

    flow = DataFlow((hang,), infinity_loop=True)
    task = asyncio.ensure_future(flow(x=1))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled == [True]


async def test_exception_escaping_an_iteration_ends_the_loop_and_propagates():
    counter = Counter()

    async def fails_on_third(n):
        if n == 3:
            raise RuntimeError("third")
        return {}

    flow = DataFlow((counter, fails_on_third), infinity_loop=True)
    with pytest.raises(RuntimeError, match="third"):
        await flow(x=1)
    assert counter.n == 3


async def test_loop_started_after_stop_runs_normally():
    counter = Counter()
    flow = DataFlow((counter,), infinity_loop=True)
    flow.stop()  # nothing running: no effect on later loops
    task = asyncio.ensure_future(flow(x=1))
    await counter.reached(5)
    assert not task.done()
    flow.stop()
    await task


def test_negative_interval_is_refused():
    with pytest.raises(DataFlowDefinitionError, match="interval"):
        DataFlow((Counter(),), infinity_loop=True, interval=-1)


async def test_stop_called_by_a_step_returns_that_iterations_result():
    count = 0
    flow: DataFlow

    async def tick(x):
        nonlocal count
        count += 1
        if count == 3:
            flow.stop()
        return {"n": count}

    flow = DataFlow((tick,), infinity_loop=True)
    assert await asyncio.wait_for(flow(x=1), 2) == {"n": 3}


async def test_stop_reaches_a_loop_called_but_not_yet_started_only():
    async def tick(x):
        return {"x": x}

    flow = DataFlow((tick,), infinity_loop=True)
    early = flow(x=1)  # registered when called
    flow.stop()
    late = asyncio.create_task(flow(x=2))
    assert await asyncio.wait_for(early, 2) == {"x": 1}
    for _ in range(5):
        await asyncio.sleep(0)
    assert not late.done()  # called after stop(): not affected
    late.cancel()
    with pytest.raises(asyncio.CancelledError):
        await late


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
