"""Per-step limits (`step(f, limit=N)`): shared by every run and every place holding the
step object, per event loop; the slot of a sync step in a worker thread or on another
executor is held until the call ends and freed exactly once at every cancel point.

Every interleaving is made with events (asyncio.Event, threading.Event, a future's done
callback), not with sleeps."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import weakref
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import pytest

from asyncdataflow import DataFlow, step
from asyncdataflow._limits import _LIMITS, ThreadSlot

# -- helpers ----------------------------------------------------------------------------


class RecordingPool(ThreadPoolExecutor):
    """A thread pool (so the step takes the ThreadSlot path) that remembers the last
    future it handed out."""

    last: Future[Any] | None = None

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        cf = super().submit(fn, *args, **kwargs)
        self.last = cf
        return cf


class OtherExecutor(Executor):
    """Not a ThreadPoolExecutor: the step takes the submit + wrap_future path."""

    def __init__(self, workers: int) -> None:
        self.pool = ThreadPoolExecutor(workers)
        self.last: Future[Any] | None = None

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        cf = self.pool.submit(fn, *args, **kwargs)
        self.last = cf
        return cf

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.pool.shutdown(wait, cancel_futures=cancel_futures)


class DaskLikeExecutor(OtherExecutor):
    """The signature of distributed's ClientExecutor.submit: ``fn`` is not positional-only
    (and Dask reads ``key``, ``workers``, ``priority``, ``pure``... from the kwargs)."""

    def submit(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        return super().submit(fn, *args, **kwargs)


def make_executor(kind: str, workers: int) -> RecordingPool | OtherExecutor:
    return RecordingPool(workers) if kind == "thread" else OtherExecutor(workers)


class Gate:
    """A sync step that tells the loop it started, then blocks until ``go`` is set."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.started = asyncio.Event()
        self.go = threading.Event()
        self.lock = threading.Lock()
        self.calls = 0
        self.now = 0
        self.peak = 0

    def __call__(self, x: Any) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
            self.now += 1
            self.peak = max(self.peak, self.now)
        self.loop.call_soon_threadsafe(self.started.set)
        self.go.wait(5)
        with self.lock:
            self.now -= 1
        return {"x": x}


def free_slots(opts: Any) -> int:
    return int(_LIMITS[opts][asyncio.get_running_loop()]._value)


async def settle(opts: Any, value: int) -> None:
    """Wait (on a condition, at most 2 s) until the limit has ``value`` free slots, then
    give a stray second release a few loop turns to show up."""
    for _ in range(2000):
        if free_slots(opts) == value:
            break
        await asyncio.sleep(0.001)
    for _ in range(5):
        await asyncio.sleep(0)
    assert free_slots(opts) == value


async def occupy(ex: RecordingPool | OtherExecutor) -> threading.Event:
    """Take the executor's only worker, so the next submitted call stays queued."""
    unblock = threading.Event()
    running = threading.Event()

    def blocker() -> None:
        running.set()
        unblock.wait(5)

    ex.submit(blocker)
    await asyncio.get_running_loop().run_in_executor(None, running.wait, 5)
    return unblock


async def wait_submitted(ex: RecordingPool | OtherExecutor, before: Any) -> None:
    for _ in range(100):
        if ex.last is not before:
            return
        await asyncio.sleep(0)
    raise AssertionError("the step was never submitted")


KINDS = pytest.mark.parametrize("kind", ["thread", "other"])


# -- limits and executors ---------------------------------------------------------------


async def test_limit_on_a_non_thread_executor_passes_a_parameter_named_fn():
    def use(fn):
        return {"out": fn}

    ex = DaskLikeExecutor(1)
    try:
        assert await DataFlow((use,), executor=ex)(fn=1) == {"out": 1}  # no limit: fine
        assert await DataFlow((step(use, limit=1),), executor=ex)(fn=1) == {"out": 1}
    finally:
        ex.shutdown()


def test_a_closed_event_loop_is_not_kept_alive_by_a_step_limit():
    async def fetch(x):
        await asyncio.sleep(0)
        return {"x": x}

    opts = step(fetch, limit=1)
    flow = DataFlow((opts,))

    async def contend() -> weakref.ref[asyncio.AbstractEventLoop]:
        await asyncio.gather(*(flow(x=i) for i in range(3)))  # a waiter binds the loop
        return weakref.ref(asyncio.get_running_loop())

    refs = [asyncio.run(contend()) for _ in range(5)]
    gc.collect()
    assert sum(r() is not None for r in refs) <= 1  # closed loops do not pile up
    assert len(_LIMITS[opts]) <= 1


# -- pinned: the slot of a sync step under a limit -------------------------------------


@KINDS
async def test_cancel_while_the_call_is_queued_frees_the_slot_and_never_runs_it(kind):
    gate = Gate()
    gate.go.set()
    opts = step(gate, limit=1)
    ex = make_executor(kind, 1)
    try:
        flow = DataFlow((opts,), executor=ex)
        unblock = await occupy(ex)
        before = ex.last
        task = asyncio.create_task(flow(x=1))
        await wait_submitted(ex, before)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settle(opts, 1)  # freed although the worker is still busy
        unblock.set()
        assert await flow(x=2) == {"x": 2}
        await settle(opts, 1)
        assert gate.calls == 1  # the cancelled call never ran
    finally:
        ex.shutdown(wait=True)


@KINDS
async def test_a_timeout_while_the_call_is_queued_frees_the_slot(kind):
    gate = Gate()
    gate.go.set()
    opts = step(gate, limit=1, timeout=0.05)
    ex = make_executor(kind, 1)
    try:
        flow = DataFlow((opts,), executor=ex)
        unblock = await occupy(ex)
        with pytest.raises(TimeoutError):
            await flow(x=1)
        await settle(opts, 1)
        unblock.set()
        assert await flow(x=2) == {"x": 2}
        await settle(opts, 1)
        assert gate.calls == 1
    finally:
        ex.shutdown(wait=True)


@KINDS
async def test_cancel_while_the_thread_runs_keeps_the_slot_until_the_thread_ends(kind):
    gate = Gate()
    opts = step(gate, limit=1)
    ex = make_executor(kind, 2)
    try:
        flow = DataFlow((opts,), executor=ex)
        first = asyncio.create_task(flow(x=1))
        await gate.started.wait()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert free_slots(opts) == 0  # the thread still runs: its slot is still taken
        second = asyncio.create_task(flow(x=2))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not second.done()
        assert gate.calls == 1
        gate.go.set()
        assert await second == {"x": 2}
        assert gate.peak == 1
        await settle(opts, 1)
    finally:
        gate.go.set()
        ex.shutdown(wait=True)


@KINDS
async def test_cancel_after_the_thread_finished_but_before_the_await_resumed(kind):
    gate = Gate()
    opts = step(gate, limit=1)
    ex = make_executor(kind, 1)
    try:
        flow = DataFlow((opts,), executor=ex)
        task = asyncio.create_task(flow(x=1))
        await gate.started.wait()
        finished = threading.Event()
        assert ex.last is not None
        ex.last.add_done_callback(lambda _: finished.set())  # after asyncio's own callback
        gate.go.set()
        assert finished.wait(2)  # the loop is blocked: release and result are both queued
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settle(opts, 1)  # released once: neither lost nor doubled
    finally:
        gate.go.set()
        ex.shutdown(wait=True)


@KINDS
async def test_executor_shutdown_cancelling_a_queued_call_frees_its_slot(kind):
    gate = Gate()
    gate.go.set()
    opts = step(gate, limit=1)
    ex = make_executor(kind, 1)
    unblock = threading.Event()
    try:
        flow = DataFlow((opts,), executor=ex)
        unblock = await occupy(ex)
        before = ex.last
        task = asyncio.create_task(flow(x=1))
        await wait_submitted(ex, before)
        ex.shutdown(wait=False, cancel_futures=True)
        with pytest.raises(asyncio.CancelledError):
            await task
        await settle(opts, 1)
        with pytest.raises(RuntimeError, match="shutdown"):
            await flow(x=2)  # refused by the executor: the slot is given back
        await settle(opts, 1)
        assert gate.calls == 0
    finally:
        unblock.set()
        ex.shutdown(wait=True)


@KINDS
def test_the_loop_closing_while_a_limited_thread_runs_is_quiet(kind, caplog):
    caplog.set_level(logging.DEBUG)
    ex = make_executor(kind, 1)
    box: dict[str, Gate] = {}

    async def main() -> None:
        gate = box["gate"] = Gate()
        flow = DataFlow((step(gate, limit=1, timeout=0.05),), executor=ex)
        with pytest.raises(TimeoutError):
            await flow(x=1)

    try:
        asyncio.run(main())  # closes the loop while the worker still blocks
    finally:
        box["gate"].go.set()
        ex.shutdown(wait=True)  # the worker ends after the loop is closed
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_thread_slot_abandoned_before_the_worker_starts_never_calls_the_function():
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(1)
    await sem.acquire()
    slot = ThreadSlot(loop, sem)
    calls = []
    slot.leave()  # the await gave up while the call was still queued
    assert sem._value == 1
    assert await loop.run_in_executor(None, lambda: slot.run(lambda: calls.append(1))) is None
    slot.leave()
    for _ in range(3):
        await asyncio.sleep(0)
    assert calls == []
    assert sem._value == 1


async def test_thread_slot_released_by_the_worker_once_when_the_call_ran():
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(1)
    await sem.acquire()
    slot = ThreadSlot(loop, sem)
    assert await loop.run_in_executor(None, lambda: slot.run(lambda: {"a": 1})) == {"a": 1}
    slot.leave()  # too late: the worker owns the release (queued before the result)
    for _ in range(3):
        await asyncio.sleep(0)
    assert sem._value == 1


async def test_stop_iteration_in_a_limited_sync_step_is_a_runtime_error_and_frees_the_slot():
    def exhausted(x):
        return next(iter([]))

    opts = step(exhausted, limit=1)
    flow = DataFlow((opts,))
    for _ in range(2):
        with pytest.raises(RuntimeError, match="StopIteration"):
            await asyncio.wait_for(flow(x=1), 2)
    await settle(opts, 1)


async def test_a_waiter_woken_for_a_slot_and_cancelled_before_it_ran_passes_the_slot_on():
    go = asyncio.Event()

    async def hold(x):
        if x == 0:
            await go.wait()
        return {"x": x}

    opts = step(hold, limit=1)
    flow = DataFlow((opts,))
    holder = asyncio.create_task(flow(x=0))
    await asyncio.sleep(0)
    woken = asyncio.create_task(flow(x=1))
    third = asyncio.create_task(flow(x=2))
    await asyncio.sleep(0)  # both wait for the slot
    go.set()
    await asyncio.sleep(0)  # holder ends and hands the slot to `woken`...
    woken.cancel()  # ...which is cancelled before it resumes
    assert await holder == {"x": 0}
    with pytest.raises(asyncio.CancelledError):
        await woken
    assert await asyncio.wait_for(third, 2) == {"x": 2}
    await settle(opts, 1)


async def test_a_timeout_bounds_the_wait_for_a_limit_slot_too():
    """timeout= bounds the whole attempt: a run queued behind a stuck holder of the only
    slot times out instead of waiting without bound. The holder is a sync step, which
    keeps its slot after its own timeout until its thread ends."""
    release = threading.Event()
    calls = []

    def stuck(x):
        calls.append(x)
        release.wait(10)
        return {"x": x}

    flow = DataFlow((step(stuck, limit=1, timeout=0.1),))
    try:
        with pytest.raises(TimeoutError):
            await flow(x=1)  # times out; its thread still holds the slot
        with pytest.raises(TimeoutError):
            await flow(x=2)  # waits for the slot, within its timeout
        assert calls == [1]  # the second run never got the slot
    finally:
        release.set()


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
