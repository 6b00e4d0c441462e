"""The two-source merge with a real destination: two sources read concurrently, merged, and
written to MySQL/MariaDB by ``mysql.writer``.

    python examples/mysql_merge.py

The server is ``ASYNCDATAFLOW_MYSQL_URL`` (default ``mysql://root@127.0.0.1:3306/test``);
with none there the example says so and exits. It creates its own table, writes the
merged rows of three queries (the three runs at once, through ``flow.map``), prints what
the table holds, and drops the table.

``source`` is written once; ``functools.partial`` binds which endpoint each copy reads
and ``args_mapper(..., output={'data': 'data_a'})`` renames its output so the two
concurrent outputs do not collide. ``merge`` zips them into rows under ``data``, the key
every writer of the pack takes, so the writer follows it with no mapping.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from functools import partial
from typing import Any

import pymysql

from asyncdataflow import DataFlow, args_mapper
from asyncdataflow.plugins import mysql

URL = os.environ.get("ASYNCDATAFLOW_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")

#: The simulated systems: endpoint -> query -> values.
SYSTEMS: dict[str, dict[str, list[int]]] = {
    "endpoint_a": {"query_1": [1, 2, 3], "query_2": [4, 5], "query_3": [6]},
    "endpoint_b": {"query_1": [10, 20, 30], "query_2": [40, 50], "query_3": [60]},
}


async def source(endpoint: str, query: str) -> dict[str, Any]:
    await asyncio.sleep(0.01)  # a request to the endpoint
    return {"data": SYSTEMS[endpoint][query]}


async def merge(query: str, data_a: list[int], data_b: list[int]) -> dict[str, Any]:
    rows = [
        {"query": query, "pos": pos, "a": a, "b": b}
        for pos, (a, b) in enumerate(zip(data_a, data_b, strict=True))
    ]
    return {"data": rows}


async def main() -> None:
    table = f"merged_{uuid.uuid4().hex[:8]}"
    setup = mysql.execute(
        f"CREATE TABLE {table} (query VARCHAR(20), pos INT, a INT, b INT,"
        " PRIMARY KEY (query, pos))",
        url=URL,
    )
    teardown = mysql.execute(f"DROP TABLE IF EXISTS {table}", url=URL)
    try:
        await setup()
    except pymysql.err.OperationalError as error:
        print(f"skipped: no MySQL/MariaDB server answers ({error.args[-1]}).")
        print("Start one, or set ASYNCDATAFLOW_MYSQL_URL=mysql://user:password@host:3306/db")
        await setup.aclose()
        return

    source_a = args_mapper(partial(source, endpoint="endpoint_a"), output={"data": "data_a"})
    source_b = args_mapper(partial(source, endpoint="endpoint_b"), output={"data": "data_b"})
    destination = mysql.writer(table, url=URL)
    read_back = mysql.reader(
        f"SELECT query, pos, a, b FROM {table} WHERE query LIKE %(prefix)s ORDER BY query, pos",
        url=URL,
    )
    try:
        # "initial": the call's query reaches merge too, beside the two sources' data
        async with DataFlow(
            ((source_a, source_b), merge, destination), args_visibility="initial"
        ) as flow:
            queries = [{"query": q} for q in ("query_1", "query_2", "query_3")]
            async for result in flow.map(queries, concurrency=3):
                print(f"{result['query']}: wrote {result['rowcount']} rows")
        print("the table holds:")
        for row in (await read_back(prefix="query_%"))["data"]:
            print(f"  {row['query']} #{row['pos']}: a={row['a']} b={row['b']}")
    finally:
        await teardown()
        for step in (setup, teardown, read_back):
            await step.aclose()
        print("table dropped")


if __name__ == "__main__":
    asyncio.run(main())
