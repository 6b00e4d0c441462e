"""SPEC 6: sync steps never block the event loop. They run in an executor (the loop's
default thread pool, or ``DataFlow(..., executor=...)``: a thread pool, a process pool, a
Dask cluster's executor); context variables reach the thread; a step marked
``asyncdataflow.inline`` runs on the loop thread instead."""

from __future__ import annotations

import asyncio
import contextvars
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest

from asyncdataflow import DataFlow, args_mapper, inline, step

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("REQUEST_ID")

# The two ways a step is called: the generated inline call, and the StepRunner that a step
# with options goes through. Both must put sync steps off the loop.
PLAIN: Callable[[Any], Any] = lambda f: f  # noqa: E731
WITH_OPTIONS: Callable[[Any], Any] = lambda f: step(f, timeout=30)  # noqa: E731
CALL_PATHS = pytest.mark.parametrize("wrap", [PLAIN, WITH_OPTIONS], ids=["plain", "options"])


def where(x: int) -> dict[str, Any]:
    """Module level, so a process pool can pickle it."""
    return {
        "y": x + 1,
        "pid": os.getpid(),
        "thread": threading.get_ident(),
        "thread_name": threading.current_thread().name,
    }


@CALL_PATHS
async def test_a_sync_step_runs_in_a_thread_other_than_the_loops(wrap: Any) -> None:
    flow = DataFlow((wrap(where),))
    result = await flow(x=1)
    assert result["y"] == 2
    assert result["thread"] != threading.get_ident()
    assert result["pid"] == os.getpid()


@CALL_PATHS
async def test_the_loop_keeps_running_while_a_sync_step_blocks(wrap: Any) -> None:
    # The sync step blocks its thread until a coroutine on the loop releases it: if the
    # step held the loop, the release could never run and the wait would time out.
    released = threading.Event()
    ticks = []

    def blocking(go: bool) -> dict[str, bool]:
        return {"released": released.wait(timeout=10)}

    async def ticker(go: bool) -> dict[str, int]:
        for i in range(5):
            ticks.append(i)
            await asyncio.sleep(0.001)
        released.set()
        return {"ticks": len(ticks)}

    flow = DataFlow(((wrap(blocking), ticker),))
    assert await flow(go=True) == {"released": True, "ticks": 5}


@CALL_PATHS
async def test_context_variables_set_before_the_call_reach_the_thread(wrap: Any) -> None:
    def read_context(x: int) -> dict[str, Any]:
        return {"request_id": REQUEST_ID.get("unset"), "thread": threading.get_ident()}

    flow = DataFlow((wrap(read_context),))
    token = REQUEST_ID.set("req-42")
    try:
        result = await flow(x=1)
    finally:
        REQUEST_ID.reset(token)
    assert result["request_id"] == "req-42"
    assert result["thread"] != threading.get_ident()


async def test_context_variables_reach_sync_steps_in_concurrent_branches() -> None:
    def read(x: int) -> dict[str, str]:
        return {"a": REQUEST_ID.get("unset")}

    def read_too(x: int) -> dict[str, str]:
        return {"b": REQUEST_ID.get("unset")}

    flow = DataFlow(((read, read_too),))

    async def one(request_id: str) -> dict[str, Any]:
        REQUEST_ID.set(request_id)  # this task's own context
        return await flow(x=0)

    results = await asyncio.gather(one("r1"), one("r2"))
    assert results == [{"a": "r1", "b": "r1"}, {"a": "r2", "b": "r2"}]


async def test_the_loops_default_executor_is_used_when_none_is_given() -> None:
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(1, thread_name_prefix="loop-default")
    loop.set_default_executor(pool)  # the loop shuts it down when the test's loop closes
    result = await DataFlow((where,))(x=1)
    assert result["thread_name"].startswith("loop-default")


@CALL_PATHS
async def test_a_given_thread_pool_is_used(wrap: Any) -> None:
    with ThreadPoolExecutor(2, thread_name_prefix="adf-pool") as pool:
        flow = DataFlow((wrap(where),), executor=pool)
        results = await asyncio.gather(*(flow(x=i) for i in range(4)))
    assert [r["y"] for r in results] == [1, 2, 3, 4]
    assert all(r["thread_name"].startswith("adf-pool") for r in results)
    threads = {r["thread"] for r in results}
    assert len(threads) <= 2  # the pool's two threads, nothing else
    assert threading.get_ident() not in threads


@CALL_PATHS
async def test_context_variables_reach_a_given_thread_pool(wrap: Any) -> None:
    def read_context(x: int) -> dict[str, Any]:
        return {"request_id": REQUEST_ID.get("unset")}

    with ThreadPoolExecutor(1) as pool:
        flow = DataFlow((wrap(read_context),), executor=pool)
        token = REQUEST_ID.set("req-7")
        try:
            assert await flow(x=1) == {"request_id": "req-7"}
        finally:
            REQUEST_ID.reset(token)


@CALL_PATHS
async def test_a_process_pool_runs_sync_steps_in_another_process(wrap: Any) -> None:
    # spawn: forking a process that runs threads is unsafe (and deprecated in 3.12)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        flow = DataFlow((wrap(where), wrap(partial(where_next, offset=10))), executor=pool)
        result = await flow(x=1)
    assert result["y"] == 12  # where(1) -> y=2, then where_next(y=2, offset=10)
    assert result["pid"] != os.getpid()


def double_pid(a: int) -> tuple[int, int]:
    return a * 2, os.getpid()


async def test_a_sync_args_mapper_wrapper_runs_in_a_process_pool() -> None:
    """The wrapper pickles as its recipe, so mapped names survive the trip."""
    ctx = multiprocessing.get_context("spawn")
    mapped = args_mapper(double_pid, input={"a": "x"}, output=["y", "pid"])
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        result = await DataFlow((mapped,), executor=pool)(x=21)
    assert result["y"] == 42
    assert result["pid"] != os.getpid()


def where_next(y: int, offset: int) -> dict[str, Any]:
    return {"y": y + offset, "pid": os.getpid()}


def on_dask_worker(x: int) -> dict[str, Any]:
    import distributed

    return {"y": x * 2, "worker": distributed.get_worker().address}


@pytest.mark.slow  # starts a dask LocalCluster
def test_a_dask_clusters_executor_runs_sync_steps_on_a_dask_worker() -> None:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        workers = set(client.scheduler_info()["workers"])
        with client.get_executor() as executor:
            flow = DataFlow((on_dask_worker,), executor=executor)

            async def main() -> list[dict[str, Any]]:
                return await asyncio.gather(*(flow(x=i) for i in range(3)))

            results = asyncio.run(main())
    assert [r["y"] for r in results] == [0, 2, 4]
    assert {r["worker"] for r in results} <= workers
    assert len(workers) == 1


@CALL_PATHS
async def test_an_inline_step_runs_on_the_loop_thread(wrap: Any) -> None:
    @inline
    def cheap(x: int) -> dict[str, Any]:
        return {"thread": threading.get_ident(), "request_id": REQUEST_ID.get("unset")}

    flow = DataFlow((wrap(cheap),))
    token = REQUEST_ID.set("inline")
    try:
        result = await flow(x=1)
    finally:
        REQUEST_ID.reset(token)
    assert result == {"thread": threading.get_ident(), "request_id": "inline"}


async def test_an_inline_step_runs_on_the_loop_even_with_an_executor() -> None:
    @inline
    def cheap(x: int) -> dict[str, int]:
        return {"thread": threading.get_ident()}

    with ThreadPoolExecutor(1) as pool:
        result = await DataFlow((cheap,), executor=pool)(x=1)
    assert result == {"thread": threading.get_ident()}


async def test_wrapped_sync_steps_still_run_in_a_thread() -> None:
    # partial, args_mapper and a sync callable object keep the function's nature
    class Shape:
        def __call__(self, value: int) -> dict[str, int]:
            return {"shaped": threading.get_ident()}

    def source(endpoint: str, creds: str) -> int:
        return threading.get_ident()

    flow = DataFlow(
        (
            args_mapper(partial(source, creds="secret"), output="value"),
            Shape(),
        )
    )
    result = await flow(endpoint="e")
    assert result["shaped"] != threading.get_ident()


async def test_inline_survives_partial_and_args_mapper() -> None:
    @inline
    def source(endpoint: str, creds: str) -> int:
        return threading.get_ident()

    flow = DataFlow((args_mapper(partial(source, creds="secret"), output="value"),))
    assert await flow(endpoint="e") == {"value": threading.get_ident()}


async def test_sync_step_raising_stop_iteration_fails_the_run_instead_of_hanging():
    def exhausted(x):
        return next(iter([]))

    with pytest.raises(RuntimeError, match="StopIteration") as info:
        await asyncio.wait_for(DataFlow((exhausted,))(x=1), 1)
    assert not isinstance(info.value, TimeoutError)
    assert "definition[0]" in info.value.__notes__[0]
