"""MySQL steps inside flows, against a real server: reading one table and writing another
over flow.map, closing every connection; a connection killed mid-run (the error
propagates; with a retry policy the flow finishes with every row exactly once); and the
examples/mysql_merge.py example."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiomysql  # type: ignore[import-untyped]
import pymysql  # type: ignore[import-untyped]
import pytest

from asyncdataflow import DataFlow, Retry, step
from asyncdataflow.plugins import mysql

try:
    from _mysql_server import (
        Tables,
        connect_kwargs,
        connections_of,
        sql,
        until_no_connections,
    )
except ImportError:  # tests/ imported as a package
    from tests._mysql_server import (  # type: ignore[no-redef]
        Tables,
        connect_kwargs,
        connections_of,
        sql,
        until_no_connections,
    )

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mysql_merge.py"


async def double(data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": [{"id": r["id"], "qty": r["qty"] * 2} for r in data]}


async def test_read_one_table_write_another_over_map_then_aclose_closes_all(tables: Tables):
    source = tables.create("id INT PRIMARY KEY, qty INT", prefix="src")
    target = tables.create("id INT PRIMARY KEY, qty INT", prefix="dst")
    sql(f"INSERT INTO `{source}` VALUES " + ", ".join(f"({i}, {i})" for i in range(100)))
    user, url = tables.user()  # a user of our own, to tell our connections apart
    flow = DataFlow(
        (
            mysql.reader(f"SELECT id, qty FROM `{source}` WHERE id = %(id)s", url=url),
            double,
            mysql.writer(target, url=url),
        )
    )
    results = [r async for r in flow.map(({"id": i} for i in range(100)), concurrency=10)]
    assert results == [{"rowcount": 1}] * 100
    assert sql(f"SELECT id, qty FROM `{target}` ORDER BY id") == [(i, 2 * i) for i in range(100)]
    open_before = connections_of(user)
    assert 2 <= len(open_before) <= 20  # two pools (reader, writer), at most 10 each
    await flow.aclose()
    assert await until_no_connections(user) == []


class Killer:
    """Holds a row lock from another session so the writer waits on it, then KILLs the
    writer's connection while it waits, and lets the lock go."""

    def __init__(self, url: str, table: str, blocked_id: int) -> None:
        self.url, self.table, self.blocked_id = url, table, blocked_id
        self.killed: list[int] = []

    async def __aenter__(self) -> Killer:
        kw = connect_kwargs(self.url)
        kw["db"] = kw.pop("database")
        self.blocker = await aiomysql.connect(**{**kw, "autocommit": False})
        self.admin = await aiomysql.connect(**kw)
        async with self.blocker.cursor() as cur:  # uncommitted: holds the row's lock
            await cur.execute(
                f"INSERT INTO `{self.table}` (id, v) VALUES (%s, 'blocker')", (self.blocked_id,)
            )
        return self

    async def kill_the_waiting_writer(self) -> int:
        while True:
            async with self.admin.cursor() as cur:
                await cur.execute(
                    "SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX"
                    " WHERE trx_state = 'LOCK WAIT' AND trx_query LIKE %s",
                    (f"INSERT INTO `{self.table}`%",),
                )
                waiting = [row[0] for row in await cur.fetchall()]
                if waiting:
                    await cur.execute(f"KILL {int(waiting[0])}")
                    self.killed.append(int(waiting[0]))
                    await self.blocker.rollback()
                    return int(waiting[0])
            # InnoDB refreshes this table only when it was not read for 0.1 s
            await asyncio.sleep(0.15)

    async def __aexit__(self, *exc: object) -> None:
        await self.blocker.rollback()
        await self.blocker.ensure_closed()
        await self.admin.ensure_closed()


def rows_upto(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "v": f"row {i}"} for i in range(n)]


async def test_a_connection_killed_mid_run_propagates_the_error(tables: Tables):
    table = tables.create("id INT PRIMARY KEY, v VARCHAR(20)")
    writer = mysql.writer(table, url=tables.url, mode="upsert", batch_size=1000)
    async with DataFlow((writer,)) as flow, Killer(tables.url, table, 2500) as killer:
        run = asyncio.ensure_future(flow(data=rows_upto(5000)))
        await asyncio.wait_for(killer.kill_the_waiting_writer(), 10)
        with pytest.raises(pymysql.err.OperationalError) as caught:
            await asyncio.wait_for(run, 10)
        assert any("mysql.writer(" in note for note in getattr(caught.value, "__notes__", []))
        assert sql(f"SELECT COUNT(*) FROM `{table}`") == [(0,)]  # the server rolled it back
        # the broken connection did not go back to the pool: the next run works
        assert await flow(data=rows_upto(5000)) == {"rowcount": 5000}
    assert sql(f"SELECT COUNT(*), COUNT(DISTINCT id) FROM `{table}`") == [(5000, 5000)]


async def test_with_a_retry_policy_the_flow_finishes_with_every_row_once(tables: Tables):
    table = tables.create("id INT PRIMARY KEY, v VARCHAR(20)")
    writer = mysql.writer(table, url=tables.url, mode="upsert", batch_size=1000)
    retried = step(
        writer, retry=Retry(attempts=3, backoff=0.01, on=(pymysql.err.OperationalError,))
    )
    async with DataFlow((retried,)) as flow, Killer(tables.url, table, 2500) as killer:
        run = asyncio.ensure_future(flow(data=rows_upto(5000)))
        await asyncio.wait_for(killer.kill_the_waiting_writer(), 10)
        assert await asyncio.wait_for(run, 20) == {"rowcount": 5000}
    assert len(killer.killed) == 1
    assert sql(
        f"SELECT COUNT(*), COUNT(DISTINCT id), SUM(v = CONCAT('row ', id)) FROM `{table}`"
    ) == [(5000, 5000, 5000)]


async def test_a_call_waiting_for_the_only_connection_gets_a_new_one_when_it_is_killed(
    tables: Tables,
):
    table = tables.create("id INT PRIMARY KEY, v VARCHAR(20)")
    writer = mysql.writer(table, url=tables.url + "?maxsize=1", mode="upsert")
    try:
        async with Killer(tables.url, table, 5) as killer:
            first = asyncio.ensure_future(writer(data=rows_upto(10)))
            await asyncio.sleep(0.2)  # first holds the only connection, waiting on the lock
            second = asyncio.ensure_future(writer(data=[{"id": 100, "v": "second"}]))
            await asyncio.wait_for(killer.kill_the_waiting_writer(), 10)
            with pytest.raises(pymysql.err.OperationalError):
                await asyncio.wait_for(first, 10)
            # aiomysql does not wake a waiter when a closed connection is released; the
            # step does, so this does not hang
            assert await asyncio.wait_for(second, 10) == {"rowcount": 1}
    finally:
        await writer.aclose()


def test_the_mysql_merge_example_writes_reads_back_and_drops_its_table(
    mysql_url: str, tmp_path: Path
):
    before = sql("SHOW TABLES LIKE 'merged\\_%'")
    out = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLE)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        env={**os.environ, "ASYNCDATAFLOW_MYSQL_URL": mysql_url},
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert (
        out.stdout
        == """\
query_1: wrote 3 rows
query_2: wrote 2 rows
query_3: wrote 1 rows
the table holds:
  query_1 #0: a=1 b=10
  query_1 #1: a=2 b=20
  query_1 #2: a=3 b=30
  query_2 #0: a=4 b=40
  query_2 #1: a=5 b=50
  query_3 #0: a=6 b=60
table dropped
"""
    )
    assert sql("SHOW TABLES LIKE 'merged\\_%'") == before


def test_the_example_says_how_to_get_a_server_when_there_is_none(tmp_path: Path):
    out = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLE)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        env={**os.environ, "ASYNCDATAFLOW_MYSQL_URL": "mysql://root@127.0.0.1:1/test"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("skipped: no MySQL/MariaDB server answers")
    assert "ASYNCDATAFLOW_MYSQL_URL=" in out.stdout


async def test_a_write_cancelled_by_a_step_timeout_closes_its_connection_and_commits_nothing(
    tables: Tables,
):
    table = tables.create("id INT PRIMARY KEY, v VARCHAR(20)")
    writer = mysql.writer(table, url=tables.url)
    async with DataFlow((step(writer, timeout=0.5),)) as flow, Killer(tables.url, table, 3):
        with pytest.raises(TimeoutError):
            await flow(data=rows_upto(10))
        (own,) = writer._pools.values()
        assert own.size == 0  # closed, not given back to the pool
    assert sql(f"SELECT COUNT(*) FROM `{table}`") == [(0,)]
    assert await flow(data=rows_upto(10)) == {"rowcount": 10}
    await flow.aclose()
