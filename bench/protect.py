"""Cost of ``step(..., rate=...)`` and ``step(..., breaker=...)`` when neither holds a call
back: a rate far above the rate achieved, and a breaker that stays closed.

Variants, all run in the same process and event loop, interleaved round by round, each a
one-step flow around the same trivial async function (``{"v": v + 1}``):

- hand-written: ``await f(v=v)`` (what the flow replaces);
- plain: ``DataFlow((f,))`` (the generated fast path);
- limit: ``step(f, limit=10**9)``, another option that takes the step runner, for
  comparison;
- rate: ``step(f, rate=Rate(1e9, burst=1000))``;
- breaker: ``step(f, breaker=Breaker())``;
- rate + breaker: both.

Each round times ``--calls`` sequential calls of each variant with ``time.process_time``
(CPU time of this process: on a shared machine, time spent waiting for a CPU is not
counted; ``--clock wall`` uses ``time.perf_counter``);
the median per-call time over ``--rounds`` rounds is printed, and the per-call overhead of
rate= and breaker= over the plain step.

    python bench/protect.py [--calls 2000] [--rounds 31] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from collections.abc import Awaitable, Callable
from statistics import median
from typing import Any

from asyncdataflow import Breaker, DataFlow, Rate, step

Call = Callable[[], Awaitable[Any]]


async def f(v: int) -> dict[str, int]:
    return {"v": v + 1}


def variants() -> dict[str, Call]:
    def flow(item: Any) -> Call:
        fl = DataFlow((item,), name="bench")
        return lambda: fl(v=0)

    fast = Rate(1e9, burst=1000)
    return {
        "hand-written": lambda: f(v=0),
        "plain": flow(f),
        "limit": flow(step(f, limit=10**9)),
        "rate": flow(step(f, rate=fast)),
        "breaker": flow(step(f, breaker=Breaker())),
        "rate + breaker": flow(step(f, rate=Rate(1e9, burst=1000), breaker=Breaker())),
    }


async def measure(calls: int, rounds: int, clock: Callable[[], float]) -> dict[str, float]:
    runs = variants()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for call in runs.values():  # warm up: compile, first bucket, first breaker state
        for _ in range(100):
            await call()
    for _ in range(rounds):
        for name, call in runs.items():
            started = clock()
            for _ in range(calls):
                await call()
            times[name].append((clock() - started) / calls)
    return {name: median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    got = asyncio.run(measure(args.calls, args.rounds, clock))
    us = {name: t * 1e6 for name, t in got.items()}
    print(
        f"one-step flow, {args.calls} calls x {args.rounds} rounds, median {args.clock} "
        f"time per call (Python {platform.python_version()})"
    )
    print(f"{'variant':<16}{'us/call':>9}{'x hand-written':>16}")
    for name, t in us.items():
        print(f"{name:<16}{t:>9.2f}{t / us['hand-written']:>16.2f}")
    print()
    print(f"{'overhead per call (us)':<24}{'vs plain':>10}")
    for name in ("limit", "rate", "breaker", "rate + breaker"):
        print(f"{name:<24}{us[name] - us['plain']:>10.2f}")


if __name__ == "__main__":
    main()
