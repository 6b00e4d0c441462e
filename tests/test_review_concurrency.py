"""Review of the concurrency code of the core: step limits for sync steps (the thread slot
and the submit + wrap_future path), flow.map, infinity-loop stop(), the generated guards.

Every interleaving is made with events (asyncio.Event, threading.Event, a future's done
callback), not with sleeps. Some tests pin bugs the review found (since fixed: map dropping
inputs, submit() kwargs, closed loops kept alive, repeated retry notes, a `self` argument);
the others pin behaviour that had no test which would fail if it broke."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import weakref
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import pytest

from asyncdataflow import DataFlow, Retry, step
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


# -- bugs -------------------------------------------------------------------------------


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


async def test_limit_on_a_non_thread_executor_passes_a_parameter_named_fn():
    def use(fn):
        return {"out": fn}

    ex = DaskLikeExecutor(1)
    try:
        assert await DataFlow((use,), executor=ex)(fn=1) == {"out": 1}  # no limit: fine
        assert await DataFlow((step(use, limit=1),), executor=ex)(fn=1) == {"out": 1}
    finally:
        ex.shutdown()


async def test_a_reraised_exception_object_gets_the_retry_note_only_once():
    shared = ConnectionError("pool is down")

    async def connect(x):
        raise shared

    flow = DataFlow((step(connect, retry=Retry(attempts=1)),))
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await flow(x=1)
    assert len(shared.__notes__) == len(set(shared.__notes__))


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


async def test_a_call_argument_named_self_reaches_the_step():
    async def method_like(self):
        return {"got": self}

    assert await DataFlow((method_like,))(self=1) == {"got": 1}


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
        assert not second.done() and gate.calls == 1  # waits for the slot
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
    assert await loop.run_in_executor(None, lambda: slot.run(calls.append, a=1)) is None
    slot.leave()
    for _ in range(3):
        await asyncio.sleep(0)
    assert calls == [] and sem._value == 1


async def test_thread_slot_released_by_the_worker_once_when_the_call_ran():
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(1)
    await sem.acquire()
    slot = ThreadSlot(loop, sem)
    assert await loop.run_in_executor(None, lambda: slot.run(lambda **kw: kw, a=1)) == {"a": 1}
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


# -- pinned: map ------------------------------------------------------------------------


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


# -- pinned: infinity loop stop() -------------------------------------------------------


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


# -- pinned: generated code -------------------------------------------------------------

NAMES = ("d", "r", "run", "init", "c", "n", "e", "a_x", "x", "func", "fn", "_note", "EXEC")


def _make(names: tuple[str, ...], is_async: bool, out: str) -> Any:
    args = ", ".join(names)
    body = f"return {{{out!r}: ({args},)}}"
    src = f"{'async ' if is_async else ''}def f({args}):\n    {body}\n"
    ns: dict[str, Any] = {}
    exec(src, ns)
    return ns["f"]


@pytest.mark.parametrize("is_async", [True, False])
@pytest.mark.parametrize("instrumented", [False, True])
async def test_parameters_named_like_generated_locals_reach_the_step(is_async, instrumented):
    def wrap(f: Any) -> Any:
        return step(f, limit=2) if instrumented else f

    first = wrap(_make(NAMES, is_async, "first"))
    later = wrap(_make(NAMES, is_async, "later"))
    pairs = ((("d", "e"), "p"), (("a_x", "run"), "q"))
    both = tuple(wrap(_make(ns, is_async, o)) for ns, o in pairs)

    def spread(first=(), later=()):  # the tuple a step returned, back into named keys
        return dict(zip(NAMES, first or later, strict=True))

    values = {n: f"v_{n}" for n in NAMES}
    flow = DataFlow((first, spread, later, spread, both))
    assert await flow(**values) == {"p": ("v_d", "v_e"), "q": ("v_a_x", "v_run")}


async def test_a_later_step_whose_required_argument_is_missing_is_passed_over():
    async def a(x):
        return {"y": x}

    def needs_z(z, y=0):  # sync, required z absent: its input flows on unchanged
        raise AssertionError("must not run")

    async def b(y):
        return {"out": y}

    flow = DataFlow((a, needs_z, b))
    assert await flow(x=5) == {"out": 5}


async def test_a_key_error_raised_by_a_later_step_is_not_taken_for_a_missing_argument():
    async def a(x):
        return {"y": x}

    async def lookup(y):
        return {}["nope"]

    flow = DataFlow((a, lookup))
    with pytest.raises(KeyError, match="nope") as info:
        await flow(x=1)
    assert "definition[1]" in info.value.__notes__[0]


@pytest.mark.parametrize("instrumented", [False, True])
async def test_no_note_is_added_to_cancellation_or_exit_signals(instrumented):
    async def cancel(x):
        raise asyncio.CancelledError()

    def leave(x):
        raise SystemExit(3)

    def wrap(f: Any) -> Any:
        return step(f, timeout=5) if instrumented else f

    with pytest.raises(asyncio.CancelledError) as c_info:
        await DataFlow((wrap(cancel),))(x=1)
    assert not getattr(c_info.value, "__notes__", None)
    with pytest.raises(SystemExit) as s_info:
        await DataFlow((wrap(leave),))(x=1)
    assert not getattr(s_info.value, "__notes__", None)


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
