"""Issue 12, item 10: a MySQL step that times out or is cancelled while its statement
waits on the server (here: for a row lock) ends that statement and its transaction on the
server before its connection slot is given back. Against the real MariaDB."""

from __future__ import annotations

import asyncio
from typing import Any

import pymysql  # type: ignore[import-untyped]
import pytest

from asyncdataflow.plugins import mysql

try:
    from _mysql_server import Tables, connect_kwargs, connections_of, sql, until_no_connections
except ImportError:  # tests/ imported as a package
    from tests._mysql_server import (  # type: ignore[no-redef]
        Tables,
        connect_kwargs,
        connections_of,
        sql,
        until_no_connections,
    )


# InnoDB refreshes information_schema.INNODB_TRX only when it has not been read for 0.1 s:
# polled faster, it never changes. Poll a little slower than that.
POLL = 0.15


def lock_waits(user: str) -> list[int]:
    """The ids of ``user``'s connections whose transaction waits for a lock."""
    waiting = sql(
        "SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX "
        "WHERE trx_state = 'LOCK WAIT'"
    )
    return sorted({row[0] for row in waiting} & set(connections_of(user)))


async def until_lock_wait(
    user: str, runs: list[asyncio.Future[Any]], timeout: float = 60.0
) -> None:
    """Wait until each of ``runs`` waits for the row lock on the server."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(lock_waits(user)) < len(runs):
        for run in runs:
            if run.done():
                run.result()  # a call that failed before it could wait: its error
        assert loop.time() < deadline, "the statements never waited for the lock"
        await asyncio.sleep(POLL)


async def until_no_lock_waits(user: str, timeout: float = 5.0) -> list[Any]:
    """Wait (information_schema.INNODB_TRX is a snapshot, see POLL) until
    nothing of ``user`` waits for a lock, or ``timeout`` passes; what still waits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (waits := lock_waits(user)) and loop.time() < deadline:
        await asyncio.sleep(POLL)
    return waits


@pytest.fixture
def locked(tables: Tables) -> Any:
    """A table whose row id=1 another connection holds locked (FOR UPDATE)."""
    table = tables.create("id INT PRIMARY KEY, v VARCHAR(10)")
    sql(f"INSERT INTO `{table}` VALUES (1, 'old')")
    holder = pymysql.connect(**{**connect_kwargs(), "autocommit": False})
    with holder.cursor() as cur:
        cur.execute(f"SELECT * FROM `{table}` WHERE id = 1 FOR UPDATE")
    try:
        yield table
    finally:
        holder.rollback()
        holder.close()


async def test_a_writer_that_times_out_ends_its_transaction_on_the_server(
    tables: Tables, locked: str
):
    user, url = tables.user()
    writer = mysql.writer(locked, url=url)  # id 1 exists: the insert waits for its lock
    timeouts: list[asyncio.Timeout] = []

    async def call() -> None:
        async with asyncio.timeout(None) as timeout:  # set to fire once it waits
            timeouts.append(timeout)
            await writer(data=[{"id": 1, "v": "new"}])

    run = asyncio.ensure_future(call())
    await until_lock_wait(user, [run])
    timeouts[0].reschedule(asyncio.get_running_loop().time())
    with pytest.raises(TimeoutError):
        await run
    # nothing of it waits on the server any more (without the KILL: for
    # innodb_lock_wait_timeout, 50 s by default)
    assert await until_no_lock_waits(user) == []
    await writer.aclose()
    assert await until_no_connections(user) == []


async def test_cancelled_writers_end_their_transactions_on_the_server(tables: Tables, locked: str):
    user, url = tables.user()
    writer = mysql.writer(locked, url=url)
    runs = [asyncio.ensure_future(writer(data=[{"id": 1, "v": f"n{n}"}])) for n in range(2)]
    await until_lock_wait(user, runs)
    for run in runs:
        run.cancel()
    results = await asyncio.gather(*runs, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results), results
    assert await until_no_lock_waits(user) == []
    await writer.aclose()
    assert await until_no_connections(user) == []


async def test_a_reader_given_up_on_ends_its_statement(tables: Tables, locked: str):
    user, url = tables.user()
    reader = mysql.reader(f"SELECT * FROM `{locked}` WHERE id = 1 FOR UPDATE", url=url)
    run = asyncio.ensure_future(reader())
    await until_lock_wait(user, [run])
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert await until_no_lock_waits(user) == []
    await reader.aclose()
    assert connections_of(user) == [] or await until_no_connections(user) == []
