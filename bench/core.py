"""Core overhead against hand-written asyncio doing the same work, in one process.

    python bench/core.py [--quick]

Prints the median per-invocation time of each case and its ratio to hand-written code:
  1. a 10-step async chain
  2. one step, an 8-way concurrent block, one merging step
  3. 10,000 runs of the 10-step chain started at once (time and peak memory)
  4. a 5-step chain of sync steps (baseline: asyncio.to_thread per step)
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

from asyncdataflow import DataFlow

QUICK = "--quick" in sys.argv


def make_async_step(i: int) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def step(x: int) -> dict[str, Any]:
        return {"x": x + 1}

    step.__qualname__ = f"step{i}"
    return step


def make_sync_step(i: int) -> Callable[..., dict[str, Any]]:
    def step(x: int) -> dict[str, Any]:
        return {"x": x + 1}

    step.__qualname__ = f"sync{i}"
    return step


CHAIN = [make_async_step(i) for i in range(10)]
SYNC = [make_sync_step(i) for i in range(5)]


async def hand_chain(x: int) -> dict[str, Any]:
    r = await CHAIN[0](x=x)
    r = await CHAIN[1](x=r["x"])
    r = await CHAIN[2](x=r["x"])
    r = await CHAIN[3](x=r["x"])
    r = await CHAIN[4](x=r["x"])
    r = await CHAIN[5](x=r["x"])
    r = await CHAIN[6](x=r["x"])
    r = await CHAIN[7](x=r["x"])
    r = await CHAIN[8](x=r["x"])
    r = await CHAIN[9](x=r["x"])
    return r


async def first(x: int) -> dict[str, Any]:
    return {"x": x}


def make_branch(i: int) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def branch(x: int) -> dict[str, Any]:
        return {f"k{i}": x + i}

    branch.__qualname__ = f"branch{i}"
    return branch


BRANCHES = [make_branch(i) for i in range(8)]


async def merge(
    k0: int, k1: int, k2: int, k3: int, k4: int, k5: int, k6: int, k7: int
) -> dict[str, Any]:
    return {"sum": k0 + k1 + k2 + k3 + k4 + k5 + k6 + k7}


async def hand_fanout(x: int) -> dict[str, Any]:
    r = await first(x=x)
    x = r["x"]
    parts = await asyncio.gather(*(b(x=x) for b in BRANCHES))
    merged: dict[str, Any] = {}
    for p in parts:
        merged.update(p)
    return await merge(**merged)


async def hand_sync(x: int) -> dict[str, Any]:
    r = await asyncio.to_thread(SYNC[0], x=x)
    r = await asyncio.to_thread(SYNC[1], x=r["x"])
    r = await asyncio.to_thread(SYNC[2], x=r["x"])
    r = await asyncio.to_thread(SYNC[3], x=r["x"])
    r = await asyncio.to_thread(SYNC[4], x=r["x"])
    return r


async def per_call(fn: Callable[..., Awaitable[Any]], n: int, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(n):
            await fn(x=1)
        samples.append((time.perf_counter() - started) / n)
    return statistics.median(samples)


async def compare(
    name: str, hand: Callable[..., Awaitable[Any]], flow: DataFlow, n: int, repeats: int
) -> float:
    assert await hand(x=1) == await flow(x=1), name
    # interleave to share machine noise fairly
    h, f = [], []
    for _ in range(repeats):
        h.append(await per_call(hand, n, 1))
        f.append(await per_call(flow, n, 1))
    hm, fm = statistics.median(h), statistics.median(f)
    ratio = fm / hm
    print(f"{name:<44} hand {hm * 1e6:8.2f} us  flow {fm * 1e6:8.2f} us  ratio {ratio:5.2f}x")
    return ratio


async def many_at_once(fn: Callable[..., Awaitable[Any]], n: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(fn(x=i) for i in range(n)))
    return time.perf_counter() - started


async def peak_memory(fn: Callable[..., Awaitable[Any]], n: int) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    await asyncio.gather(*(fn(x=i) for i in range(n)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


async def main() -> None:
    scale = 0.2 if QUICK else 1.0
    repeats = 5 if QUICK else 15
    chain = DataFlow(tuple(CHAIN), name="chain")
    fanout = DataFlow((first, tuple(BRANCHES), merge), name="fanout")
    sync_chain = DataFlow(tuple(SYNC), name="sync_chain")
    print(f"python {sys.version.split()[0]}, medians of {repeats} rounds")
    await compare("10-step async chain", hand_chain, chain, int(5000 * scale), repeats)
    await compare(
        "step, 8-way concurrent block, merge", hand_fanout, fanout, int(2000 * scale), repeats
    )
    n = 10_000
    th, tf = [], []
    for _ in range(max(3, repeats // 3)):
        th.append(await many_at_once(hand_chain, n))
        tf.append(await many_at_once(chain, n))
    hm, fm = statistics.median(th), statistics.median(tf)
    print(
        f"{'10,000 chains at once (time)':<44} hand {hm * 1e3:8.2f} ms  flow {fm * 1e3:8.2f} ms"
        f"  ratio {fm / hm:5.2f}x"
    )
    mh = await peak_memory(hand_chain, n)
    mf = await peak_memory(chain, n)
    print(
        f"{'10,000 chains at once (peak memory)':<44} hand {mh / 2**20:8.2f} MiB flow "
        f"{mf / 2**20:8.2f} MiB ratio {mf / mh:5.2f}x"
    )
    await compare(
        "5-step sync chain vs asyncio.to_thread", hand_sync, sync_chain, int(500 * scale), repeats
    )


if __name__ == "__main__":
    asyncio.run(main())
