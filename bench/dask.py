"""flow.map on one machine against asyncdataflow.dask.map on a local Dask cluster.

    python bench/dask.py [--quick]

1. CPU: 400 inputs of a pure-Python step of about 20 ms. flow.map with the loop's
   thread pool (the GIL lets one thread compute at a time), with a 2-process
   ProcessPoolExecutor, and asyncdataflow.dask.map on 2 worker processes. Prints each
   time and the speedup over threads (on 2 free cores the ideal is 2.0).
2. Overhead: trivial async steps, asyncdataflow.dask.map at chunk_size 1, 100 and 1,000
   against local flow.map: time per input and the ratio.

The load average is printed first and last: the figures mean little on a busy machine.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

# This file is named dask.py: with its directory on sys.path, `import dask` (by
# distributed) would find it instead of the library.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

import distributed  # noqa: E402

import asyncdataflow.dask  # noqa: E402
from asyncdataflow import DataFlow  # noqa: E402

QUICK = "--quick" in sys.argv
CPU_INPUTS = 100 if QUICK else 400
TRIVIAL_INPUTS = 2_000 if QUICK else 20_000
WORKERS = 2


def spin(rounds: int) -> int:
    total = 0
    for k in range(rounds):
        total = (total * 31 + k) % 1_000_003
    return total


def cpu(x: int, rounds: int) -> dict[str, Any]:
    """A pure-Python step of about 20 ms (``rounds`` is calibrated to this machine)."""
    return {"x": x, "value": spin(rounds)}


async def trivial(x: int) -> dict[str, Any]:
    return {"y": x}


def calibrate(target: float = 0.020) -> int:
    rounds = 10_000
    while True:
        started = time.perf_counter()
        spin(rounds)
        took = time.perf_counter() - started
        if took > 0.005:
            return max(1, int(rounds * target / took))
        rounds *= 4


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


async def timed_local(flow: DataFlow, inputs: list[dict[str, Any]], concurrency: int) -> float:
    started = time.perf_counter()
    count = 0
    async for _ in flow.map(inputs, concurrency=concurrency):
        count += 1
    assert count == len(inputs)
    return time.perf_counter() - started


async def timed_dask(
    flow: DataFlow,
    inputs: list[dict[str, Any]],
    client: distributed.Client,
    concurrency: int,
    chunk_size: int,
) -> float:
    started = time.perf_counter()
    count = 0
    async for _ in asyncdataflow.dask.map(
        flow, inputs, client=client, concurrency=concurrency, chunk_size=chunk_size
    ):
        count += 1
    assert count == len(inputs)
    return time.perf_counter() - started


async def main() -> None:
    print(load())
    rounds = calibrate()
    inputs = [{"x": i, "rounds": rounds} for i in range(CPU_INPUTS)]
    one = time.perf_counter()
    cpu(0, rounds)
    print(f"\n1. CPU: {CPU_INPUTS} inputs of a {1000 * (time.perf_counter() - one):.0f} ms step")

    threads = await timed_local(DataFlow((cpu,)), inputs, concurrency=8)
    print(f"  flow.map, threads                {threads:7.2f} s   1.00x")

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(WORKERS, mp_context=ctx) as pool:
        pool.submit(spin, 1).result()  # the processes are up before the clock starts
        pool.submit(spin, 1).result()
        processes = await timed_local(DataFlow((cpu,), executor=pool), inputs, concurrency=8)
    print(
        f"  flow.map, {WORKERS} processes            {processes:7.2f} s   "
        f"{threads / processes:.2f}x"
    )

    async with (
        distributed.LocalCluster(
            n_workers=WORKERS,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            worker_dashboard_address=None,
            asynchronous=True,
        ) as cluster,
        distributed.Client(cluster, asynchronous=True) as client,
    ):
        await client.wait_for_workers(WORKERS)
        dask_cpu = await timed_dask(DataFlow((cpu,)), inputs, client, 2, chunk_size=20)
        print(
            f"  dask.map, {WORKERS} worker processes     {dask_cpu:7.2f} s   "
            f"{threads / dask_cpu:.2f}x   (chunk_size=20)"
        )

        trivial_flow = DataFlow((trivial,))
        print(f"\n2. Overhead per input, trivial async step ({TRIVIAL_INPUTS} inputs)")
        many = [{"x": i} for i in range(TRIVIAL_INPUTS)]
        local = await timed_local(trivial_flow, many, concurrency=100)
        per_local = local / len(many)
        print(f"  flow.map, local                  {1e6 * per_local:9.1f} us   1.0x")
        for chunk_size in (1, 100, 1000):
            some = many[:500] if chunk_size == 1 else many
            took = await timed_dask(trivial_flow, some, client, 100, chunk_size)
            per = took / len(some)
            print(
                f"  dask.map, chunk_size={chunk_size:<5}       {1e6 * per:9.1f} us   "
                f"{per / per_local:.1f}x" + ("   (500 inputs)" if chunk_size == 1 else "")
            )
    print(f"\n{load()}")


if __name__ == "__main__":
    asyncio.run(main())
