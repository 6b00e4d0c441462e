"""``mysql.reader(..., chunk_size=N)``: a source streaming a query's rows through an
unbuffered server-side cursor, ``N`` rows per record.

The connection is held while the stream runs. However the stream ends it goes back to the
pool clean: at the end of the rows there is nothing left to read; when the source is
closed early (a failing record, a cancellation, ``aclose()``) the query is stopped with
``KILL QUERY`` from a second, short-lived connection and what the server had already sent
is read and dropped, so the connection has no open result set and no running query.
Only when that cannot be done (the connection was lost, a second cancellation) is the
connection closed instead of given back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from ._common import aiomysql, give_back, is_server_error, pymysql

#: Server error: the query was interrupted by ``KILL QUERY`` (what stopping a stream ends
#: with).
QUERY_INTERRUPTED = 1317


async def _fetch(cur: Any, size: int) -> list[Any]:
    return list(await cur.fetchmany(size))


async def stream_rows(
    step: Any, statement: str, args: Any, size: int, key: str
) -> AsyncGenerator[dict[str, Any], None]:
    """Yield ``{key: rows}`` records of at most ``size`` rows (dicts) each."""
    pool = await step._pool()
    conn = await pool.acquire()
    reusable = False
    try:
        cur = await conn.cursor(aiomysql.SSDictCursor)
        fetching: asyncio.Task[list[Any]] | None = None
        try:
            await cur.execute(statement, args)
            while True:
                # A cancellation must not cut a packet in half (aiomysql then closes the
                # connection): the fetch goes on in its own task, awaited when stopping.
                fetching = asyncio.ensure_future(_fetch(cur, size))
                rows = await asyncio.shield(fetching)
                fetching = None
                if not rows:
                    break
                yield {key: rows}
                if len(rows) < size:
                    break
            await cur.close()
            if not conn.get_autocommit():
                await conn.commit()
            reusable = True
        except BaseException as error:
            if isinstance(error, Exception) and not is_server_error(error):
                raise  # the connection's state is unknown: it is closed below
            reusable = await _stop(step, pool, conn, cur, fetching)
            raise
    finally:
        if not reusable:
            conn.close()
        await give_back(pool, conn)


async def _stop(
    step: Any, pool: Any, conn: Any, cur: Any, fetching: asyncio.Task[list[Any]] | None
) -> bool:
    """End the query on ``conn`` and read what is left of its result; whether ``conn`` is
    clean (no result set open, no transaction) and can go back to the pool."""
    try:
        if fetching is not None:
            with contextlib.suppress(Exception):
                await fetching  # the packet being read is read whole
            if fetching.cancelled() or fetching.exception() is not None:
                return False
        if conn.closed:
            return False
        result = conn._result
        if result is not None and result.unbuffered_active:
            await _kill_query(step, pool, conn.thread_id())
            try:
                await cur.close()  # reads up to the end of the result (or the kill's error)
            except pymysql.err.MySQLError as error:
                if not error.args or error.args[0] != QUERY_INTERRUPTED:
                    return False
        with contextlib.suppress(Exception):
            await cur.close()
        if not conn.get_autocommit():
            await conn.rollback()
        return not conn.closed
    except BaseException:  # a second cancellation, a lost connection: close it
        return False


async def _kill_query(step: Any, pool: Any, thread_id: int) -> None:
    """``KILL QUERY`` the server thread ``thread_id`` from a connection of its own (never
    from the pool, which may be full)."""
    kwargs = step._pool_kwargs or getattr(pool, "_conn_kwargs", None)
    if not kwargs:
        return  # the rest of the result is read instead
    kwargs = {k: v for k, v in kwargs.items() if k not in ("minsize", "maxsize", "pool_recycle")}
    other = await aiomysql.connect(**kwargs)
    try:
        async with other.cursor() as cur:
            await cur.execute("KILL QUERY %s", (thread_id,))
    finally:
        other.close()
