"""mysql.reader(..., chunk_size=N): a source streaming rows through an unbuffered
server-side cursor, against the real MySQL/MariaDB server. The connection is held while
the stream runs and goes back to the pool clean however it ends."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import subprocess
import sys
import textwrap
from typing import Any

import aiomysql
import pytest
from _mysql_server import NOWHERE, Tables, one_connection_pool, sql
from _peak_rss import PEAK_RSS

from asyncdataflow import DataFlow, step
from asyncdataflow.exceptions import DataFlowDefinitionError
from asyncdataflow.plugins import mysql


def filled(tables: Tables, rows: int) -> str:
    name = tables.create("id INT PRIMARY KEY, v VARCHAR(40) NOT NULL")
    sql(f"INSERT INTO `{name}` (id, v) SELECT seq, CONCAT('value ', seq) FROM seq_0_to_{rows - 1}")
    return name


async def thread_state(pool: Any) -> tuple[int, str, Any]:
    """The pool's only connection: its server thread id, and what the server says that
    thread is doing (from another session)."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT 1")
        assert await cur.fetchall() == ((1,),)  # the connection answers
        thread = conn.thread_id()
    ((command, info),) = sql(
        "SELECT COMMAND, INFO FROM information_schema.PROCESSLIST WHERE ID = %s", (thread,)
    )
    return thread, command, info


def test_a_chunked_reader_is_a_source():
    step = mysql.reader("SELECT * FROM t WHERE id > %(after)s", url=NOWHERE, chunk_size=10)
    assert isinstance(step, mysql.ChunkedReader)
    assert inspect.isasyncgenfunction(type(step).__call__)
    assert list(inspect.signature(step).parameters) == ["after"]
    assert not inspect.isasyncgenfunction(type(mysql.reader("SELECT 1", url=NOWHERE)).__call__)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "100"])
def test_a_bad_chunk_size_is_refused_when_the_step_is_built(bad):
    with pytest.raises(DataFlowDefinitionError, match="chunk_size"):
        mysql.reader("SELECT 1", url=NOWHERE, chunk_size=bad)


async def test_rows_come_in_records_of_at_most_chunk_size(mysql_url: str, tables: Tables):
    name = filled(tables, 2500)
    step = mysql.reader(
        f"SELECT id, v FROM `{name}` WHERE id >= %(first)s ORDER BY id",
        url=mysql_url,
        chunk_size=1000,
        key="rows",
    )
    try:
        records = [r async for r in step(first=0)]
        assert [len(r["rows"]) for r in records] == [1000, 1000, 500]
        rows = [row for r in records for row in r["rows"]]
        assert rows == [{"id": n, "v": f"value {n}"} for n in range(2500)]
        assert [r async for r in step(first=10_000)] == []
    finally:
        await step.aclose()


async def test_the_connection_is_held_while_the_stream_runs(mysql_url: str, tables: Tables):
    name = filled(tables, 100)
    pool = await one_connection_pool(mysql_url)
    step = mysql.reader(f"SELECT id FROM `{name}` ORDER BY id", pool=pool, chunk_size=10)
    try:
        async with contextlib.aclosing(step()) as agen:
            await anext(agen)
            assert pool.freesize == 0  # the stream holds the only connection
        assert pool.freesize == 1
    finally:
        pool.close()
        await pool.wait_closed()


@pytest.mark.slow  # fills a 300,000-row table for each of the three ways
@pytest.mark.parametrize("how", ["aclose", "cancel", "failure"])
async def test_stopping_mid_stream_gives_the_connection_back_clean(
    mysql_url: str, tables: Tables, how: str
):
    name = filled(tables, 300_000)  # far more than the socket buffers hold
    pool = await one_connection_pool(mysql_url)
    thread_before = (await thread_state(pool))[0]
    step = mysql.reader(f"SELECT id, v FROM `{name}` ORDER BY id", pool=pool, chunk_size=1000)
    got: list[int] = []
    second = asyncio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(step()) as agen:
            async for record in agen:
                got.append(len(record["data"]))
                if len(got) == 2:
                    if how == "failure":
                        raise RuntimeError("record 1 failed")
                    second.set()
                    await asyncio.Event().wait()

    try:
        if how == "aclose":
            agen = step()
            for _ in range(2):
                got.append(len((await anext(agen))["data"]))
            await agen.aclose()
        elif how == "cancel":
            task = asyncio.ensure_future(consume())
            await second.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            with pytest.raises(RuntimeError, match="record 1 failed"):
                await consume()
        assert got == [1000, 1000]
        thread, command, info = await thread_state(pool)
        assert thread == thread_before  # the same connection, reused, not a new one
        assert (command, info) == ("Sleep", None)
    finally:
        pool.close()
        await pool.wait_closed()


async def test_a_failing_query_raises_and_leaves_the_connection_usable(
    mysql_url: str, tables: Tables
):
    name = filled(tables, 10)
    pool = await one_connection_pool(mysql_url)
    step = mysql.reader(f"SELECT nope FROM `{name}`", pool=pool, chunk_size=5)
    try:
        with pytest.raises(aiomysql.OperationalError, match="nope"):
            await anext(step())
        _, command, info = await thread_state(pool)
        assert (command, info) == ("Sleep", None)
    finally:
        pool.close()
        await pool.wait_closed()


CHILD = PEAK_RSS + textwrap.dedent(
    """
    import asyncio, sys
    from asyncdataflow import DataFlow, step
    from asyncdataflow.plugins import mysql

    count = 0

    def counted(rowcount):
        global count
        count += rowcount

    async def main(url, src, dst):
        reader = mysql.reader(f"SELECT id, v FROM `{src}`", url=url, chunk_size=5000)
        writer = mysql.writer(dst, url=url, batch_size=5000)
        async with DataFlow((step(reader, window=2), writer, counted)) as flow:
            await flow()
        print(count, peak_rss())

    asyncio.run(main(*sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_a_million_rows_are_copied_table_to_table_in_bounded_memory(mysql_url: str, tables: Tables):
    src = filled(tables, 1_000_000)
    dst = tables.create("id INT PRIMARY KEY, v VARCHAR(40) NOT NULL")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mysql_url, src, dst],
        capture_output=True,
        text=True,
        check=True,
    )
    count, peak = map(int, out.stdout.split())
    assert count == 1_000_000
    assert sql(f"SELECT COUNT(*), SUM(id) FROM `{dst}`") == [(1_000_000, 499_999_500_000)]
    # a million rows as dicts take several hundred MiB; the stream holds one chunk
    assert peak < 150 * 2**20, f"peak RSS {peak / 2**20:.0f} MiB"


async def test_in_a_flow_a_table_is_copied_record_by_record(mysql_url: str, tables: Tables):
    src = filled(tables, 1234)
    dst = tables.create("id INT PRIMARY KEY, v VARCHAR(40) NOT NULL")
    reader = mysql.reader(f"SELECT id, v FROM `{src}` ORDER BY id", url=mysql_url, chunk_size=100)
    writer = mysql.writer(dst, url=mysql_url)
    async with DataFlow((step(reader, window=3), writer)) as flow:
        counts = [r["rowcount"] async for r in flow.stream()]
    assert counts == [100] * 12 + [34]
    assert sql(f"SELECT COUNT(*), SUM(id) FROM `{dst}`") == [(1234, 1234 * 1233 // 2)]
