"""Benchmark: files.writer / files.reader (JSON Lines) against hand-written aiofiles code.

100,000 JSON records are written as JSON Lines and read back, through the steps and
through the shortest hand-written aiofiles code that does the same, in the same process,
alternating, best of ``--rounds``. Prints seconds and ratios (hand-written time / step
time: 1.0 means as fast as hand-written, above 1.0 faster).

Run: /work/venv/bin/python bench/files.py [--records 100000] [--rounds 11] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiofiles
import aiofiles.os

from asyncdataflow.plugins import files


def make_records(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": n,
            "name": f"user {n}",
            "email": f"user{n}@example.org",
            "score": n * 0.5,
            "active": n % 3 == 0,
            "tags": ["a", "b", "ü"][: n % 4],
        }
        for n in range(count)
    ]


async def hand_write(path: str, records: list[dict[str, Any]]) -> None:
    """Plain write: no temporary file, no fsync."""
    text = "".join(json.dumps(r) + "\n" for r in records)
    async with aiofiles.open(path, "w", encoding="utf-8") as f:
        await f.write(text)


async def hand_write_atomic(path: str, records: list[dict[str, Any]]) -> None:
    """What the writer does by default: temporary file, fsync, rename."""
    text = "".join(json.dumps(r) + "\n" for r in records)
    temp = f"{path}.{secrets.token_hex(6)}.tmp"
    async with aiofiles.open(temp, "w", encoding="utf-8") as f:
        await f.write(text)
        await f.flush()
        await asyncio.get_running_loop().run_in_executor(None, os.fsync, f.fileno())
    await aiofiles.os.replace(temp, path)


async def hand_read(path: str) -> list[Any]:
    async with aiofiles.open(path, encoding="utf-8") as f:
        text = await f.read()
    return [json.loads(line) for line in text.splitlines() if line]


async def best_of(
    rounds: int, cases: dict[str, Callable[[], Awaitable[Any]]]
) -> dict[str, tuple[float, float]]:
    """Per case, the best wall time and the best CPU time (all threads of the process)."""
    wall = dict.fromkeys(cases, float("inf"))
    cpu = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, case in cases.items():
            gc.collect()  # every case starts from the same heap (the GC stays on while timed)
            start, start_cpu = time.perf_counter(), time.process_time()
            await case()
            wall[name] = min(wall[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
    return {name: (wall[name], cpu[name]) for name in cases}


async def main(count: int, rounds: int, directory: str) -> None:
    records = make_records(count)
    path = os.path.join(directory, "bench.jsonl")
    hand_path = os.path.join(directory, "bench-hand.jsonl")
    write_atomic = files.writer(path, format="jsonl")
    write_plain = files.writer(path, format="jsonl", atomic=False)
    read = files.reader(path, format="jsonl")

    await write_atomic(data=records)
    await hand_write(hand_path, records)
    assert (await read())["data"] == records == await hand_read(hand_path)

    times = await best_of(
        rounds,
        {
            "hand write": lambda: hand_write(hand_path, records),
            "hand write atomic": lambda: hand_write_atomic(hand_path, records),
            "step write atomic=False": lambda: write_plain(data=records),
            "step write atomic=True": lambda: write_atomic(data=records),
            "hand read": lambda: hand_read(hand_path),
            "step read": lambda: read(),
        },
    )
    size = os.path.getsize(path)  # noqa: ASYNC240 - after the timed runs
    print(f"{count:,} records, {size / 1e6:.1f} MB of JSON Lines, best of {rounds}")
    print(f"  {'':<25} {'wall ms':>8} {'cpu ms':>8}")
    for name, (wall, cpu) in times.items():
        print(f"  {name:<25} {wall * 1000:8.1f} {cpu * 1000:8.1f}")
    print("ratios, hand-written time / step time (target >= 0.9):      wall   cpu")
    pairs = [
        (
            "write, atomic=True vs hand temp+fsync+rename",
            "hand write atomic",
            "step write atomic=True",
        ),
        ("write, atomic=True vs plain hand write", "hand write", "step write atomic=True"),
        ("write, atomic=False vs plain hand write", "hand write", "step write atomic=False"),
        ("read vs hand read", "hand read", "step read"),
    ]
    for label, hand, step in pairs:
        wall_ratio = times[hand][0] / times[step][0]
        cpu_ratio = times[hand][1] / times[step][1]
        print(f"  {label:<56} {wall_ratio:5.2f} {cpu_ratio:5.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--dir", help="where to write (default: a new temporary directory)")
    args = parser.parse_args()
    if args.dir:
        asyncio.run(main(args.records, args.rounds, args.dir))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(args.records, args.rounds, tmp))
