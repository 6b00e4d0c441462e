"""Benchmark: mysql.writer against hand-written aiomysql code, same server, same process.

100,000 rows of five columns (INT key, VARCHAR, INT, DOUBLE, DATETIME) are written into
a fresh InnoDB table, ``--rounds`` times each, alternating, best round kept:

- ``writer (tuples)``: ``mysql.writer(table, columns=[...])`` given rows as tuples;
- ``writer (dicts)``: ``mysql.writer(table)`` given rows as dicts;
- ``hand executemany``: one connection from an aiomysql pool, BEGIN, ``executemany`` of
  the same INSERT in batches of the same size, COMMIT (the shortest correct code);
- ``hand executemany (dicts)``: the same, turning the dicts into tuples first;
- ``hand row by row``: one ``INSERT`` per row in one transaction (``--row-rows`` rows,
  default 5,000, as it is slow), compared by rows/s.

The table is emptied (TRUNCATE) before each round. Prints rows/s and the ratios
(step rows/s / hand-written rows/s: 1.0 means as fast as hand-written).

Run: /work/venv/bin/python bench/mysql.py [--rows 100000] [--row-rows 5000]
     [--batch-size 1000] [--rounds 5] [--url mysql://root@127.0.0.1:3306/test]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiomysql  # type: ignore[import-untyped]

from asyncdataflow.plugins import mysql
from asyncdataflow.plugins.mysql._common import parse_url

COLUMNS = ["id", "name", "qty", "price", "at"]


def make_rows(count: int) -> list[dict[str, Any]]:
    start = dt.datetime(2024, 1, 1)
    return [
        {
            "id": n,
            "name": f"item number {n}",
            "qty": n % 97,
            "price": n * 0.25,
            "at": start + dt.timedelta(seconds=n),
        }
        for n in range(count)
    ]


async def timed(run: Callable[[], Awaitable[Any]]) -> float:
    gc.collect()
    began = time.perf_counter()
    await run()
    return time.perf_counter() - began


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--row-rows", type=int, default=5_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--url",
        default=os.environ.get("ASYNCDATAFLOW_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
    )
    args = parser.parse_args()

    dict_rows = make_rows(args.rows)
    tuple_rows = [tuple(r[c] for c in COLUMNS) for r in dict_rows]
    few_rows = tuple_rows[: args.row_rows]
    table = f"bench_{uuid.uuid4().hex[:8]}"
    kwargs, _ = parse_url("bench", args.url)
    pool = await aiomysql.create_pool(**kwargs)
    insert = (
        f"INSERT INTO `{table}` (`id`, `name`, `qty`, `price`, `at`) VALUES (%s, %s, %s, %s, %s)"
    )

    async def sql(statement: str) -> None:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(statement)
            await conn.commit()

    async def hand_many(rows: list[Any]) -> None:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await conn.begin()
            for start in range(0, len(rows), args.batch_size):
                await cur.executemany(insert, rows[start : start + args.batch_size])
            await conn.commit()

    async def hand_many_dicts() -> None:
        await hand_many([tuple(r[c] for c in COLUMNS) for r in dict_rows])

    async def hand_row_by_row() -> None:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await conn.begin()
            for row in few_rows:
                await cur.execute(insert, row)
            await conn.commit()

    writer_tuples = mysql.writer(table, url=args.url, columns=COLUMNS, batch_size=args.batch_size)
    writer_dicts = mysql.writer(table, url=args.url, batch_size=args.batch_size)

    cases: dict[str, tuple[int, Callable[[], Awaitable[Any]]]] = {
        "writer (tuples)": (args.rows, lambda: writer_tuples(data=tuple_rows)),
        "hand executemany": (args.rows, lambda: hand_many(tuple_rows)),
        "writer (dicts)": (args.rows, lambda: writer_dicts(data=dict_rows)),
        "hand executemany (dicts)": (args.rows, hand_many_dicts),
        "hand row by row": (len(few_rows), hand_row_by_row),
    }
    best: dict[str, float] = {}
    await sql(
        f"CREATE TABLE `{table}` (id INT PRIMARY KEY, name VARCHAR(64), qty INT,"
        " price DOUBLE, at DATETIME) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )
    try:
        for _ in range(args.rounds):
            for name, (_count, run) in cases.items():
                await sql(f"TRUNCATE TABLE `{table}`")
                seconds = await timed(run)
                best[name] = min(best.get(name, seconds), seconds)
    finally:
        await sql(f"DROP TABLE IF EXISTS `{table}`")
        await writer_tuples.aclose()
        await writer_dicts.aclose()
        pool.close()
        await pool.wait_closed()

    rate = {name: cases[name][0] / best[name] for name in cases}
    print(
        f"{args.rows:,} rows x 5 columns, batch_size={args.batch_size}, "
        f"best of {args.rounds} rounds ({len(few_rows):,} rows row by row)"
    )
    for name in cases:
        print(f"  {name:<26} {rate[name]:>12,.0f} rows/s  ({best[name]:.3f} s)")
    print("ratios (rows/s over rows/s):")
    print(
        f"  writer (tuples) / hand executemany          "
        f"{rate['writer (tuples)'] / rate['hand executemany']:.2f}"
    )
    print(
        f"  writer (dicts) / hand executemany (dicts)   "
        f"{rate['writer (dicts)'] / rate['hand executemany (dicts)']:.2f}"
    )
    print(
        f"  writer (tuples) / hand row by row           "
        f"{rate['writer (tuples)'] / rate['hand row by row']:.1f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
