"""SPEC 6: flow.map with bounded concurrency, results in input order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random

import pytest

from asyncdataflow import DataFlow
from asyncdataflow.exceptions import (
    DataFlowCallError,
)


class Tracker:
    def __init__(self):
        self.now = 0
        self.peak = 0
        self.started = 0

    async def __call__(self, i):
        self.now += 1
        self.started += 1
        self.peak = max(self.peak, self.now)
        await asyncio.sleep(random.random() * 0.002)
        self.now -= 1
        if i == "fail":
            raise ValueError("failed input")
        return {"out": i}


async def collect(agen):
    return [r async for r in agen]


async def test_results_come_in_input_order_and_concurrency_is_bounded():
    tracker = Tracker()
    flow = DataFlow((tracker,))
    results = await collect(flow.map(({"i": i} for i in range(300)), concurrency=7))
    assert results == [{"out": i} for i in range(300)]
    assert tracker.peak == 7


async def test_inputs_from_an_async_iterable():
    async def gen():
        for i in range(20):
            await asyncio.sleep(0)
            yield {"i": i}

    flow = DataFlow((Tracker(),))
    assert await collect(flow.map(gen(), concurrency=3)) == [{"out": i} for i in range(20)]


async def test_inputs_are_pulled_lazily_not_all_up_front():
    pulled = 0

    def inputs():
        nonlocal pulled
        for i in range(1_000_000):
            pulled += 1
            yield {"i": i}

    flow = DataFlow((Tracker(),))
    agen = flow.map(inputs(), concurrency=5)
    got = []
    async for r in agen:
        got.append(r)
        if len(got) == 10:
            break
    await agen.aclose()
    assert pulled <= 10 + 2 * 5 + 1
    assert len(asyncio.all_tasks()) == 1  # no task left behind


async def test_return_exceptions_yields_the_failure_in_its_place():
    flow = DataFlow((Tracker(),))
    inputs = [{"i": 0}, {"i": "fail"}, {"i": 2}]
    results = await collect(flow.map(inputs, concurrency=2, return_exceptions=True))
    assert results[0] == {"out": 0}
    assert results[2] == {"out": 2}
    assert isinstance(results[1], ValueError)
    assert "definition[0]" in results[1].__notes__[0]


async def test_without_return_exceptions_a_failure_stops_the_rest():
    tracker = Tracker()
    flow = DataFlow((tracker,))
    inputs = [{"i": 0}, {"i": "fail"}] + [{"i": i} for i in range(2, 1000)]
    got = []
    with pytest.raises(ValueError, match="failed input"):
        async for r in flow.map(inputs, concurrency=4):
            got.append(r)
    assert got == [{"out": 0}]
    assert tracker.started < 20  # no new runs once the failure was seen
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == 1


async def test_input_that_is_not_a_mapping_is_refused():
    flow = DataFlow((Tracker(),))
    with pytest.raises(DataFlowCallError, match="#1"):
        await collect(flow.map([{"i": 0}, 5], concurrency=2))


@pytest.mark.parametrize("bad", [0, -1, 1.5])
async def test_bad_concurrency_is_refused(bad):
    flow = DataFlow((Tracker(),))
    with pytest.raises(DataFlowCallError):
        await collect(flow.map([], concurrency=bad))


async def test_many_inputs_never_mean_many_tasks_at_once():
    flow = DataFlow((Tracker(),))
    peak_tasks = 0
    n = 0
    async for _ in flow.map(({"i": i} for i in range(5000)), concurrency=10):
        n += 1
        peak_tasks = max(peak_tasks, len(asyncio.all_tasks()))
    assert n == 5000
    assert peak_tasks <= 1 + 2 * 10
    gc.collect()


async def test_map_does_not_drop_inputs_when_runs_in_flight_finish_together():
    release = asyncio.Event()
    consumer_gate = asyncio.Event()
    second_waiting = asyncio.Event()

    async def work(x):
        if x in (1, 2):
            if x == 2:
                second_waiting.set()
            await release.wait()
            if x == 1:
                consumer_gate.set()  # wakes the consumer before the runs' done callbacks
        return {"x": x}

    flow = DataFlow((work,))
    out = []
    async with contextlib.aclosing(flow.map([{"x": i} for i in range(4)], concurrency=2)) as rs:
        async for r in rs:
            out.append(r["x"])
            if r["x"] == 0:
                await second_waiting.wait()  # runs 1 and 2 both wait on `release`
                release.set()
                await consumer_gate.wait()
    assert out == [0, 1, 2, 3]


async def test_map_starts_at_most_twice_concurrency_runs_while_the_first_is_slow():
    head_go = asyncio.Event()
    started: list[int] = []
    window_full = asyncio.Event()

    async def work(x):
        started.append(x)
        if len(started) == 4:
            window_full.set()
        if x == 0:
            await head_go.wait()
        return {"x": x}

    flow = DataFlow((work,))
    agen = flow.map(({"x": i} for i in range(10)), concurrency=2)
    first = asyncio.ensure_future(anext(agen))
    await window_full.wait()
    for _ in range(10):
        await asyncio.sleep(0)
    assert started == [0, 1, 2, 3]  # one running, three finished waiting behind it
    head_go.set()
    out = [(await first)["x"]] + [r["x"] async for r in agen]
    assert out == list(range(10))


async def test_leaving_map_early_cancels_and_awaits_the_runs_in_flight():
    entered = asyncio.Event()
    cancelled: list[int] = []

    async def work(x):
        if x == 0:
            return {"x": x}
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(x)
            raise ValueError("cleanup failed") from None  # must be retrieved, not warned
        return {"x": x}

    flow = DataFlow((work,))
    async with contextlib.aclosing(flow.map(({"x": i} for i in range(5)), concurrency=3)) as rs:
        async for r in rs:
            assert r == {"x": 0}
            await entered.wait()
            break
    assert sorted(cancelled) == [1, 2]
    assert len(asyncio.all_tasks()) == 1


async def test_map_failure_yields_earlier_results_then_raises_and_cancels_later_runs():
    fail = asyncio.Event()
    cancelled: list[int] = []

    async def work(x):
        if x == 0:
            await fail.wait()
            return {"x": 0}
        if x == 1:
            raise KeyError("boom")
        try:
            fail.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return {"x": x}

    flow = DataFlow((work,))
    got = []
    with pytest.raises(KeyError, match="boom"):
        async for r in flow.map(({"x": i} for i in range(100)), concurrency=3):
            got.append(r)
    assert got == [{"x": 0}]
    assert cancelled == [2]  # no new run after the failure; the one in flight cancelled


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
    assert out[0] == {"x": 0}
    assert out[2] == {"x": 2}
    assert isinstance(out[1], asyncio.CancelledError)


# -- a finished result is never held back by the input iterable ----------------------


async def test_a_result_is_yielded_while_the_input_iterable_waits_for_its_next_input():
    events: list[str] = []
    next_input = asyncio.Event()

    async def inputs():
        yield {"i": 0}
        events.append("waiting for input 1")
        await next_input.wait()
        events.append("input 1")
        yield {"i": 1}

    async def work(i):
        return {"out": i}

    agen = DataFlow((work,)).map(inputs(), concurrency=4)
    first = asyncio.ensure_future(anext(agen))
    done, _ = await asyncio.wait({first}, timeout=30)  # a hang guard, not a synchronisation
    next_input.set()
    assert done, "result 0 was held until input 1 arrived"
    events.append("result 0")
    assert await first == {"out": 0}
    assert [r async for r in agen] == [{"out": 1}]
    assert events == ["waiting for input 1", "result 0", "input 1"]


@pytest.mark.parametrize("return_exceptions", [False, True])
async def test_when_the_input_iterable_raises_the_results_before_it_come_first(
    return_exceptions,
):
    release = asyncio.Event()
    started = 0

    async def inputs():
        for i in range(5):
            yield {"i": i}
        raise OSError("input source broke")

    async def work(i):
        nonlocal started
        started += 1
        if i >= 3:  # still running when the input iterable raises
            await release.wait()
        return {"out": i}

    got = []
    agen = DataFlow((work,)).map(inputs(), concurrency=10, return_exceptions=return_exceptions)
    with pytest.raises(OSError, match="input source broke"):
        async for r in agen:
            got.append(r)
            if r["out"] == 2:
                release.set()
    assert got == [{"out": i} for i in range(5)]
    assert started == 5


async def test_a_sync_input_iterable_that_raises_yields_the_earlier_results_first():
    def inputs():
        yield {"i": 0}
        yield {"i": 1}
        raise LookupError("no more")

    got = []
    with pytest.raises(LookupError, match="no more"):
        async for r in DataFlow((Tracker(),)).map(inputs(), concurrency=1):
            got.append(r)
    assert got == [{"out": 0}, {"out": 1}]


async def test_an_input_that_is_not_a_mapping_comes_after_the_results_before_it():
    got = []
    with pytest.raises(DataFlowCallError, match="input #2 is a int"):
        async for r in DataFlow((Tracker(),)).map([{"i": 0}, {"i": 1}, 7], concurrency=2):
            got.append(r)
    assert got == [{"out": 0}, {"out": 1}]


async def test_an_earlier_failed_run_is_raised_before_the_input_iterables_error():
    def inputs():
        yield {"i": "fail"}
        raise LookupError("no more")

    with pytest.raises(ValueError, match="failed input"):
        await collect(DataFlow((Tracker(),)).map(inputs(), concurrency=2))


async def test_runs_are_admitted_while_the_caller_holds_a_result_up_to_the_window():
    started: list[int] = []
    four_started = asyncio.Event()

    async def work(i):
        started.append(i)
        if len(started) == 4:
            four_started.set()
        return {"out": i}

    agen = DataFlow((work,)).map(({"i": i} for i in range(100)), concurrency=2)
    async with contextlib.aclosing(agen):
        assert await anext(agen) == {"out": 0}
        # the caller holds result 0; the feeder fills the window meanwhile, and no more
        await four_started.wait()
        for _ in range(20):
            await asyncio.sleep(0)
        assert started == [0, 1, 2, 3, 4]  # result 0 taken: 4 started and not yet yielded
        assert [r["out"] async for r in agen] == list(range(1, 100))


async def test_a_large_concurrency_keeps_every_input_in_order():
    flow = DataFlow((Tracker(),))
    out = await collect(flow.map(({"i": i} for i in range(3000)), concurrency=1000))
    assert out == [{"out": i} for i in range(3000)]


async def test_cancelling_the_consumer_cancels_the_feeder_and_the_runs():
    waiting = asyncio.Event()

    async def inputs():
        yield {"i": 0}
        waiting.set()
        await asyncio.Event().wait()
        yield {"i": 1}  # pragma: no cover

    async def work(i):
        await asyncio.Event().wait()

    async def consume():
        async with contextlib.aclosing(DataFlow((work,)).map(inputs(), concurrency=2)) as rs:
            async for _ in rs:
                pass

    task = asyncio.ensure_future(consume())
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(asyncio.all_tasks()) == 1
