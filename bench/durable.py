"""Benchmark: what durability costs. Each section runs its cases in the same process,
alternating, best of ``--rounds``, and prints the ratios.

    python bench/durable.py [--rounds 5] [SECTION ...]

Sections (all by default):
  mysql    ``--rows`` rows (INT key, VARCHAR, INT, DOUBLE; 200,000 by default) copied
           table to table by one flow, ``mysql.reader(chunk_size=1000)`` as a source with
           ``window=4`` into ``mysql.writer`` (mode insert, a destination without a key):
           - ``flow``: no checkpoint;
           - ``flow + checkpoint``: ``resume_by="id"``, ``name=`` and
             ``checkpoint=mysql.checkpoints(...)`` on the same database (each record's
             rows and its position committed in one transaction);
           - ``hand``: hand-written aiomysql: an ``SSCursor`` read with ``fetchmany(1000)``
             on one connection, each chunk written by a task of its own (``executemany``
             and ``COMMIT`` on a pooled connection), at most 4 at a time;
           - ``hand + position``: the same, each task also writing the chunk's last id
             into a checkpoint row before its ``COMMIT``, in chunk order (a task waits
             for the one before it to commit).
           Ratios of times (lower is better): flow + checkpoint / flow (target <= 1.10),
           flow / hand, flow + checkpoint / hand + position. The destination is emptied
           (TRUNCATE) and the checkpoint row deleted before each run; each run's row
           count is checked. Needs the server named by ASYNCDATAFLOW_MYSQL_URL (default
           mysql://root@127.0.0.1:3306/test).
  journal  ``flow.map`` of a one-step flow (``await asyncio.sleep(0.005)``) over
           ``--inputs`` inputs (1,000), at concurrency 10 and 100, with and without
           ``journal=`` (a fresh journal file each run); then the command
           ``asyncdataflow map --concurrency 10`` over the same inputs with and without
           ``--journal`` (each a process of its own, start-up included). Ratio =
           journal / none (target <= 1.10). Last, the journal's own cost per input:
           ``flow.map`` of a step that does nothing over ``--cost-inputs`` inputs
           (20,000), concurrency 100, with and without ``journal=``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomysql  # type: ignore[import-untyped]

from asyncdataflow import DataFlow, step
from asyncdataflow.plugins import mysql
from asyncdataflow.plugins.mysql._common import parse_url

URL = os.environ.get("ASYNCDATAFLOW_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


async def timed(run: Callable[[], Awaitable[Any]]) -> float:
    gc.collect()
    began = time.perf_counter()
    await run()
    return time.perf_counter() - began


async def best_of(
    rounds: int,
    cases: dict[str, Callable[[], Awaitable[Any]]],
    before: Callable[[], Awaitable[Any]],
) -> dict[str, float]:
    """The best time of each case over ``rounds`` rounds, the cases alternating; ``before``
    runs (untimed) before each run."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, run in cases.items():
            await before()
            seconds = await timed(run)
            best[name] = min(best.get(name, seconds), seconds)
    return best


def ratio(label: str, over: float, under: float, note: str = "") -> None:
    print(f"  {label:<44} {over / under:.2f}{note}")


# -- mysql: a checkpointed copy ----------------------------------------------------------


async def bench_mysql(rounds: int, rows: int, url: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    src, dst, ckpt = f"bench_src_{suffix}", f"bench_dst_{suffix}", f"bench_ckpt_{suffix}"
    kwargs, _ = parse_url("bench", url)
    pool = await aiomysql.create_pool(**{**kwargs, "maxsize": 8})

    async def sql(statement: str, args: Any = None) -> list[Any]:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(statement, args)
            found = list(await cur.fetchall())
            await conn.commit()
            return found

    query = f"SELECT id, name, qty, price FROM `{src}`"
    plain = DataFlow(
        (
            step(mysql.reader(query, url=url, chunk_size=1000), window=4),
            mysql.writer(dst, url=url),
        )
    )
    durable = DataFlow(
        (
            step(mysql.reader(query, url=url, chunk_size=1000, resume_by="id"), window=4),
            mysql.writer(dst, url=url),
        ),
        name="bench",
        checkpoint=mysql.checkpoints(url=url, table=ckpt),
    )
    insert = f"INSERT INTO `{dst}` (id, name, qty, price) VALUES (%s, %s, %s, %s)"
    upsert = (
        f"INSERT INTO `{ckpt}` (name, positions) VALUES ('hand', %s)"
        " ON DUPLICATE KEY UPDATE positions = VALUES(positions)"
    )

    async def hand(position: bool) -> None:
        limit = asyncio.Semaphore(4)
        turn: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()

        async def write(chunk: list[Any], index: int) -> None:
            try:
                async with pool.acquire() as conn, conn.cursor() as cur:
                    await conn.begin()
                    await cur.executemany(insert, chunk)
                    if position:
                        if index:
                            await turn[index - 1]  # the chunk before it has committed
                        await cur.execute(upsert, (json.dumps({"definition[0]": chunk[-1][0]}),))
                    await conn.commit()
                turn[index].set_result(None)
            finally:
                limit.release()

        async with pool.acquire() as conn, asyncio.TaskGroup() as group:
            async with conn.cursor(aiomysql.SSCursor) as cur:
                await cur.execute(query + (" ORDER BY id" if position else ""))
                while chunk := await cur.fetchmany(1000):
                    await limit.acquire()
                    turn.append(loop.create_future())
                    group.create_task(write(chunk, len(turn) - 1))
            await conn.commit()

    async def copied(run: Callable[[], Awaitable[Any]]) -> None:
        await run()
        found = (await sql(f"SELECT COUNT(*) FROM `{dst}`"))[0][0]
        assert found == rows, f"copied {found} rows of {rows}"

    async def empty() -> None:
        await sql(f"TRUNCATE TABLE `{dst}`")
        await sql(f"DELETE FROM `{ckpt}`")

    await sql(
        f"CREATE TABLE `{src}` (id INT PRIMARY KEY, name VARCHAR(64), qty INT, price DOUBLE)"
        " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )
    try:
        await sql(
            f"INSERT INTO `{src}` (id, name, qty, price)"
            " WITH RECURSIVE d (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM d WHERE n < 999)"
            " SELECT a.n * 1000 + b.n + 1, CONCAT('item number ', a.n * 1000 + b.n),"
            "  b.n %% 97, (a.n * 1000 + b.n) * 0.25 FROM d a, d b WHERE a.n < %s",
            (-(-rows // 1000),),
        )
        await sql(f"DELETE FROM `{src}` WHERE id > %s", (rows,))
        await sql(
            f"CREATE TABLE `{dst}` (id INT NOT NULL, name VARCHAR(64), qty INT, price DOUBLE)"
            " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
        await durable.checkpoint.load("bench")  # creates its table
        best = await best_of(
            rounds,
            {
                "flow": lambda: copied(plain),
                "flow + checkpoint": lambda: copied(durable),
                "hand": lambda: copied(lambda: hand(False)),
                "hand + position": lambda: copied(lambda: hand(True)),
            },
            empty,
        )
    finally:
        await sql(f"DROP TABLE IF EXISTS `{src}`, `{dst}`, `{ckpt}`")
        await plain.aclose()
        await durable.aclose()
        pool.close()
        await pool.wait_closed()

    print(f"mysql: {rows:,} rows copied, chunk_size=1000, window=4, best of {rounds} rounds")
    for name, seconds in best.items():
        print(f"  {name:<20} {seconds:7.3f} s  {rows / seconds:>9,.0f} rows/s")
    print("ratios (time over time):")
    ratio("flow + checkpoint / flow (target <= 1.10)", best["flow + checkpoint"], best["flow"])
    ratio("flow / hand", best["flow"], best["hand"])
    ratio("flow + checkpoint / hand + position", best["flow + checkpoint"], best["hand + position"])


# -- journal: a resumable map ------------------------------------------------------------

FLOW_MODULE = """\
import asyncio

from asyncdataflow import DataFlow


async def wait(n):
    await asyncio.sleep(0.005)
    return {"n": n}


flow = DataFlow((wait,))
"""


async def wait(n: int) -> dict[str, Any]:
    await asyncio.sleep(0.005)
    return {"n": n}


async def nothing(n: int) -> dict[str, Any]:
    return {"n": n}


async def bench_journal(rounds: int, count: int, cost_count: int) -> None:
    flow, idle = DataFlow((wait,)), DataFlow((nothing,))
    inputs = [{"n": n} for n in range(count)]
    many = [{"n": n} for n in range(cost_count)]
    with tempfile.TemporaryDirectory() as folder:
        journal = Path(folder) / "map.journal"

        async def run(concurrency: int, with_journal: bool, of: DataFlow = flow) -> None:
            given = {"journal": journal} if with_journal else {}
            todo = inputs if of is flow else many
            got = [r async for r in of.map(todo, concurrency=concurrency, **given)]
            assert len(got) == len(todo)

        async def fresh() -> None:
            journal.unlink(missing_ok=True)

        cases: dict[str, Callable[[], Awaitable[Any]]] = {}
        for concurrency in (10, 100):
            cases[f"map, concurrency {concurrency}"] = lambda c=concurrency: run(c, False)
            cases[f"map, concurrency {concurrency}, journal"] = lambda c=concurrency: run(c, True)

        (Path(folder) / "bench_flow.py").write_text(FLOW_MODULE)
        lines = Path(folder) / "in.jsonl"
        lines.write_text("".join(json.dumps(kw) + "\n" for kw in inputs))
        out = Path(folder) / "out.jsonl"
        env = {**os.environ, "PYTHONPATH": folder}

        async def cli(with_journal: bool) -> None:
            argv = [sys.executable, "-m", "asyncdataflow", "map", "bench_flow:flow"]
            argv += ["--input", str(lines), "--output", str(out), "--concurrency", "10"]
            argv += ["--journal", str(journal)] if with_journal else []
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=folder, env=env, stderr=asyncio.subprocess.DEVNULL
            )
            assert await proc.wait() == 0
            assert out.read_bytes().count(b"\n") == count

        cases["asyncdataflow map"] = lambda: cli(False)
        cases["asyncdataflow map --journal"] = lambda: cli(True)
        best = await best_of(rounds, cases, fresh)
        cost = await best_of(
            rounds,
            {"none": lambda: run(100, False, idle), "journal": lambda: run(100, True, idle)},
            fresh,
        )

    print(f"journal: {count:,} inputs of a 5 ms step, best of {rounds} rounds")
    for name, seconds in best.items():
        print(f"  {name:<40} {seconds * 1000:8.1f} ms")
    print("ratios (time over time; target <= 1.10):")
    pairs = [(f"map, concurrency {c}", f"map, concurrency {c}, journal") for c in (10, 100)]
    pairs.append(("asyncdataflow map", "asyncdataflow map --journal"))
    for none, journal in pairs:
        extra = (best[journal] - best[none]) / count * 1e6
        ratio(f"{journal} / none", best[journal], best[none], f"  ({extra:+.0f} us per input)")
    per = {name: seconds / cost_count * 1e6 for name, seconds in cost.items()}
    print(
        f"the journal's own cost: {per['journal'] - per['none']:.1f} us per input\n"
        f"  ({per['journal']:.1f} against {per['none']:.1f} us per input for a step that does "
        f"nothing, {cost_count:,} inputs, concurrency 100)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sections", nargs="*", metavar="SECTION", help="mysql, journal")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--inputs", type=int, default=1000)
    parser.add_argument("--cost-inputs", type=int, default=20_000)
    parser.add_argument("--url", default=URL)
    args = parser.parse_args()
    sections = args.sections or ["mysql", "journal"]
    if unknown := set(sections) - {"mysql", "journal"}:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}: mysql, journal")
    if "mysql" in sections:
        await bench_mysql(args.rounds, args.rows, args.url)
    if "journal" in sections:
        await bench_journal(args.rounds, args.inputs, args.cost_inputs)


if __name__ == "__main__":
    asyncio.run(main())
