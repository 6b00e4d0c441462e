"""HTTP pack overhead: http.reader through a flow against hand-written aiohttp.

5,000 GETs of a small JSON document from a local aiohttp server (in this process, on
127.0.0.1) at concurrency 100:

- hand-written: one shared ``aiohttp.ClientSession``, an ``asyncio.Semaphore(100)``,
  ``raise_for_status()`` and ``await response.json()`` per request, ``asyncio.gather``;
- flow: ``DataFlow((http.reader(url),))`` run with ``flow.map(..., concurrency=100)``.

Each round runs both (alternating which goes first); the best and the median round of each
are reported, as requests per second, with the ratio flow / hand-written (1.0 = no
overhead).

    python bench/http.py [--requests 5000] [--concurrency 100] [--rounds 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/http.py`, this file's folder comes first on sys.path and this file
# would shadow the standard library's `http` package (which aiohttp imports).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import time  # noqa: E402
from statistics import median  # noqa: E402

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from asyncdataflow import DataFlow  # noqa: E402
from asyncdataflow.plugins import http  # noqa: E402

DOCUMENT = {"id": 1, "name": "widget", "tags": ["a", "b"], "price": 9.5}


async def start_server() -> tuple[web.AppRunner, str]:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(DOCUMENT)

    app = web.Application()
    app.router.add_get("/doc", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}/doc"


async def hand_written(url: str, n: int, concurrency: int) -> float:
    async with aiohttp.ClientSession() as session:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> object:
            async with sem, session.get(url) as response:
                response.raise_for_status()
                return await response.json()

        await one()  # warm the pool like the flow's first call does
        start = time.perf_counter()
        results = await asyncio.gather(*(one() for _ in range(n)))
        elapsed = time.perf_counter() - start
    assert len(results) == n
    assert results[-1] == DOCUMENT
    return n / elapsed


async def with_flow(url: str, n: int, concurrency: int) -> float:
    async with DataFlow((http.reader(url),)) as flow:
        await flow()
        start = time.perf_counter()
        count = 0
        async for result in flow.map(({} for _ in range(n)), concurrency=concurrency):
            count += 1
            last = result
        elapsed = time.perf_counter() - start
    assert count == n
    assert last == {"data": DOCUMENT}
    return n / elapsed


async def main(n: int, concurrency: int, rounds: int) -> None:
    runner, url = await start_server()
    try:
        runs: dict[str, list[float]] = {"hand-written aiohttp": [], "flow with http.reader": []}
        for r in range(rounds):
            order = [hand_written, with_flow] if r % 2 == 0 else [with_flow, hand_written]
            for fn in order:
                rps = await fn(url, n, concurrency)
                key = "hand-written aiohttp" if fn is hand_written else "flow with http.reader"
                runs[key].append(rps)
                print(f"round {r + 1}: {key:24s} {rps:9.0f} req/s")
    finally:
        await runner.cleanup()
    hand, flow = runs["hand-written aiohttp"], runs["flow with http.reader"]
    print(f"\n{n} GETs, concurrency {concurrency}, {rounds} rounds (best / median):")
    print(f"  hand-written aiohttp   {max(hand):9.0f} / {median(hand):9.0f} req/s")
    print(f"  flow with http.reader  {max(flow):9.0f} / {median(flow):9.0f} req/s")
    print(
        f"  ratio flow/hand        {max(flow) / max(hand):9.3f} / "
        f"{median(flow) / median(hand):9.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency, args.rounds))
