"""Streams benchmarks: each section runs the hand-written asyncio equivalent in the same
process, alternating with the library, and prints the ratio.

    python bench/streams.py [--quick] [SECTION ...]

Sections (all by default):
  map     flow.map against a hand-written bounded map (TaskGroup + Semaphore, consuming
          the finished head of a deque): 10,000 inputs of a 2-step flow with one
          ``await asyncio.sleep(0)``, concurrency 100 and 1,000; ratio = flow / hand
          (time per input, lower is better; target <= 1.3).
  records per-record overhead of a source yielding 100,000 small dicts into 2 async
          steps: window 1 against a hand-written ``async for`` loop calling the two
          steps; window 16 against a hand-written pipeline (an ``asyncio.Queue`` feeding
          16 worker tasks, outputs taken in order through one future per item, at most
          16 outstanding); ratio = flow / hand (time per record; target <= 1.3).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from asyncdataflow import DataFlow, step

QUICK = "--quick" in sys.argv


def median_of(samples: list[float]) -> float:
    return statistics.median(samples)


# -- map ---------------------------------------------------------------------------------


async def hop(x: int) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"y": x + 1}


async def double(y: int) -> dict[str, Any]:
    return {"z": y * 2}


async def hand_run(x: int) -> dict[str, Any]:
    r = await hop(x=x)
    return await double(y=r["y"])


async def hand_map(
    inputs: Iterable[dict[str, Any]], concurrency: int
) -> AsyncIterator[dict[str, Any]]:
    """The hand-written bounded map: at most ``concurrency`` runs, results in order."""
    sem = asyncio.Semaphore(concurrency)
    pending: deque[asyncio.Task[dict[str, Any]]] = deque()

    async def run(kw: dict[str, Any]) -> dict[str, Any]:
        try:
            return await hand_run(**kw)
        finally:
            sem.release()

    async with asyncio.TaskGroup() as tg:
        for kw in inputs:
            await sem.acquire()
            pending.append(tg.create_task(run(kw)))
            while pending and pending[0].done():
                yield pending.popleft().result()
        while pending:
            yield await pending.popleft()


async def drain(agen: AsyncIterator[Any]) -> int:
    n = 0
    async for _ in agen:
        n += 1
    return n


async def timed(make: Callable[[], AsyncIterator[Any]], n: int) -> float:
    started = time.perf_counter()
    assert await drain(make()) == n
    return (time.perf_counter() - started) / n


async def peak(make: Callable[[], AsyncIterator[Any]]) -> int:
    tracemalloc.start()
    try:
        await drain(make())
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def report(name: str, hand: float, flow: float, unit: str = "us", scale: float = 1e6) -> float:
    ratio = flow / hand
    print(
        f"{name:<52} hand {hand * scale:9.2f} {unit}  flow {flow * scale:9.2f} {unit}"
        f"  ratio {ratio:5.2f}x"
    )
    return ratio


async def bench_map() -> None:
    n = 10_000
    rounds = 3 if QUICK else 9
    flow = DataFlow((hop, double), name="two_steps")
    for concurrency in (100, 1000):

        def inputs() -> Iterable[dict[str, Any]]:
            return ({"x": i} for i in range(n))

        def hand(c: int = concurrency) -> AsyncIterator[Any]:
            return hand_map(inputs(), c)

        def ours(c: int = concurrency) -> AsyncIterator[Any]:
            return flow.map(inputs(), concurrency=c)

        assert [r async for r in hand()] == [r async for r in ours()]
        h, f = [], []
        for _ in range(rounds):
            h.append(await timed(hand, n))
            f.append(await timed(ours, n))
        report(f"flow.map, {n:,} inputs, concurrency {concurrency:,}", median_of(h), median_of(f))
        report(
            f"flow.map, {n:,} inputs, concurrency {concurrency:,} (peak memory)",
            await peak(hand),
            await peak(ours),
            "MiB",
            1 / 2**20,
        )


# -- records: per-record overhead of a source ---------------------------------------------


async def numbers(n: int) -> AsyncIterator[dict[str, int]]:
    for i in range(n):
        yield {"x": i}


async def increment(x: int) -> dict[str, int]:
    return {"x": x + 1}


async def halve(x: int) -> dict[str, int]:
    return {"y": x // 2}


async def hand_loop(n: int) -> dict[str, int]:
    out: dict[str, int] = {}
    async for item in numbers(n):
        r = await increment(x=item["x"])
        out = await halve(x=r["x"])
    return out


async def hand_pipeline(n: int, window: int) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    work: asyncio.Queue[tuple[dict[str, int], asyncio.Future[dict[str, int]]] | None]
    work = asyncio.Queue(window)
    order: asyncio.Queue[asyncio.Future[dict[str, int]] | None] = asyncio.Queue(window)

    async def worker() -> None:
        while (job := await work.get()) is not None:
            item, fut = job
            r = await increment(x=item["x"])
            fut.set_result(await halve(x=r["x"]))

    async def produce() -> None:
        async for item in numbers(n):
            fut = loop.create_future()
            await order.put(fut)  # at most `window` items outstanding
            await work.put((item, fut))
        await order.put(None)
        for _ in range(window):
            await work.put(None)

    tasks = [loop.create_task(worker()) for _ in range(window)]
    tasks.append(loop.create_task(produce()))
    out: dict[str, int] = {}
    while (fut := await order.get()) is not None:
        out = await fut
    await asyncio.gather(*tasks)
    return out


async def per_record(run: Callable[[], Awaitable[Any]], n: int) -> float:
    started = time.perf_counter()
    await run()
    return (time.perf_counter() - started) / n


async def bench_records() -> None:
    n = 10_000 if QUICK else 100_000
    rounds = 3 if QUICK else 7
    serial = DataFlow((numbers, increment, halve), name="window_1")
    windowed = DataFlow((step(numbers, window=16), increment, halve), name="window_16")
    cases: list[tuple[str, Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]] = [
        ("window 1 vs async for", lambda: hand_loop(n), lambda: serial(n=n)),
        ("window 16 vs Queue + 16 workers", lambda: hand_pipeline(n, 16), lambda: windowed(n=n)),
    ]
    for label, hand, ours in cases:
        assert await hand() == await ours(), "the two do not compute the same thing"
        h, f = [], []
        for _ in range(rounds):  # alternating, so load on the machine hits both
            h.append(await per_record(hand, n))
            f.append(await per_record(ours, n))
        report(f"source, {n:,} records, {label}", median_of(h), median_of(f))


SECTIONS: dict[str, Callable[[], Awaitable[None]]] = {"map": bench_map, "records": bench_records}


async def main() -> None:
    wanted = [a for a in sys.argv[1:] if not a.startswith("-")] or list(SECTIONS)
    unknown = [w for w in wanted if w not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    print(f"python {sys.version.split()[0]}")
    for name in wanted:
        await SECTIONS[name]()


if __name__ == "__main__":
    asyncio.run(main())
