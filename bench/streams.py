"""Streams against hand-written asyncio doing the same work, in one process.

    python bench/streams.py [--quick]

Each section is an independent ``bench_*`` function that prints its figures and the ratio
of the flow's time to the hand-written code's (below 1.0 means the flow is faster);
``main()`` runs them all.

Per-record overhead: a source yielding 100,000 small dicts into 2 async steps.
  - window 1 against a hand-written ``async for`` loop calling the two steps;
  - window 16 against a hand-written pipeline: an ``asyncio.Queue`` feeding 16 worker
    tasks, with the outputs taken in order (one future per item, at most 16 outstanding).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from asyncdataflow import DataFlow, step

QUICK = "--quick" in sys.argv
RECORDS = 10_000 if QUICK else 100_000
ROUNDS = 3 if QUICK else 7


def report(label: str, hand: float, flow: float, unit: str = "us", scale: float = 1e6) -> None:
    print(
        f"{label:<44} hand {hand * scale:9.2f} {unit}  flow {flow * scale:9.2f} {unit}  "
        f"ratio {flow / hand:5.2f}x",
        flush=True,
    )


async def timed(make: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await make()
    return time.perf_counter() - started


async def compare(
    hand: Callable[[], Awaitable[Any]], flow: Callable[[], Awaitable[Any]]
) -> tuple[float, float]:
    """Median seconds of each, rounds interleaved so load on the machine hits both."""
    assert await hand() == await flow(), "the two do not compute the same thing"
    hands, flows = [], []
    for _ in range(ROUNDS):
        hands.append(await timed(hand))
        flows.append(await timed(flow))
    return statistics.median(hands), statistics.median(flows)


# -- per-record overhead ------------------------------------------------------------------


async def numbers(n: int) -> AsyncIterator[dict[str, int]]:
    for i in range(n):
        yield {"x": i}


async def increment(x: int) -> dict[str, int]:
    return {"x": x + 1}


async def double(x: int) -> dict[str, int]:
    return {"y": x * 2}


async def hand_loop(n: int) -> dict[str, int]:
    out: dict[str, int] = {}
    async for item in numbers(n):
        r = await increment(x=item["x"])
        out = await double(x=r["x"])
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
            fut.set_result(await double(x=r["x"]))

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


async def bench_record_overhead() -> None:
    n = RECORDS
    serial = DataFlow((numbers, increment, double))
    hand, flow = await compare(lambda: hand_loop(n), lambda: serial(n=n))
    report(f"{n:,} records, window 1 vs async for (per record)", hand / n, flow / n)

    windowed = DataFlow((step(numbers, window=16), increment, double))
    hand, flow = await compare(lambda: hand_pipeline(n, 16), lambda: windowed(n=n))
    report(f"{n:,} records, window 16 vs Queue + 16 workers", hand / n, flow / n)


# -- all of it ------------------------------------------------------------------------------

BENCHES: list[Callable[[], Awaitable[None]]] = [bench_record_overhead]


def main() -> None:
    print(f"python {sys.version.split()[0]}, medians of {ROUNDS} rounds", flush=True)
    for bench in BENCHES:
        asyncio.run(bench())


if __name__ == "__main__":
    main()
