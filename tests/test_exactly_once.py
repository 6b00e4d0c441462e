"""Exactly once into MySQL (docs/durable.md): a ``mysql.writer`` that is the last step of
a flow whose checkpoint store is ``mysql.checkpoints`` on the same server and database
commits each record's rows and position in one transaction, in the records' order, and
after a COMMIT whose outcome it did not hear, asks the store whether it landed.

The lost acknowledgement is real: a TCP proxy in front of the server forwards a COMMIT
and cuts the connection (after the server's answer, or before the server got it)."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pymysql
import pytest
from _mysql_server import Tables, sql

from asyncdataflow import DataFlow, Record, Retry, resume_position, step
from asyncdataflow.durable import AtLeastOnceWarning
from asyncdataflow.plugins import files, mysql

ROWS = 50  # rows per record

# InnoDB refreshes information_schema.INNODB_TRX only when it has not been read for 0.1 s
POLL = 0.15


def records(count: int) -> Any:
    """A source of ``count`` records of ROWS rows (ids from 0), resumable by index."""

    async def source() -> AsyncIterator[Record]:
        after = resume_position()
        for i in range(0 if after is None else after + 1, count):
            yield Record({"data": [{"id": i * ROWS + k, "v": i} for k in range(ROWS)]}, i)

    return source


def dest(tables: Tables) -> str:
    return tables.create("id INT NOT NULL, v INT NOT NULL", "dst")  # no key at all


def counts(table: str) -> tuple[int, int]:
    """(rows, distinct ids) in ``table``."""
    ((rows, ids),) = sql(f"SELECT COUNT(*), COUNT(DISTINCT id) FROM `{table}`")
    return rows, ids


def committed(store_table: str, name: str) -> Any:
    rows = sql(f"SELECT positions FROM `{store_table}` WHERE name = %s", (name,))
    return rows[0][0] if rows else None


# -- which writer joins the checkpoint ---------------------------------------------------


def test_the_last_writer_on_the_stores_database_joins_it(mysql_url: str) -> None:
    store = mysql.checkpoints(url=mysql_url, table="ckpt")
    writer = mysql.writer("dst", url=mysql_url)
    flow = DataFlow((records(1), step(writer, retry=Retry())), name="f", checkpoint=store)
    assert flow._checkpoint is not None
    assert flow._checkpoint.writer is writer

    parts = urlsplit(mysql_url)
    elsewhere = urlunsplit(parts._replace(path="/otherdb"))
    other = mysql.writer("dst", url=elsewhere)  # another database: no shared transaction
    flow = DataFlow((records(1), other), name="f", checkpoint=store)
    assert flow._checkpoint is not None
    assert flow._checkpoint.writer is None

    on_file = DataFlow((records(1), writer), name="f", checkpoint=files.checkpoints("x"))
    assert on_file._checkpoint is not None
    assert on_file._checkpoint.writer is None


def test_a_joining_writer_that_is_not_last_is_warned_of(mysql_url: str) -> None:
    store = mysql.checkpoints(url=mysql_url, table="ckpt")
    writer = mysql.writer("dst", url=mysql_url)

    def after(rowcount: int) -> None:
        return None

    with pytest.warns(AtLeastOnceWarning, match=r"definition\[1\].*at least once"):
        DataFlow((records(1), writer, after), name="f", checkpoint=store)
    with pytest.warns(AtLeastOnceWarning, match="not the record's last step"):
        DataFlow((records(1), (writer, after)), name="f", checkpoint=store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DataFlow((records(1), after, (writer,)), name="f", checkpoint=store)


# -- rows and position together, in order -----------------------------------------------


async def uncommitted_writes(user: str, expected: int, run: asyncio.Future[Any]) -> None:
    """Until ``expected`` transactions of ``user`` hold written, uncommitted rows."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    query = (
        "SELECT COUNT(*) FROM information_schema.INNODB_TRX t "
        "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
        "WHERE t.trx_rows_modified >= %s AND p.USER = %s"
    )
    while (await asyncio.to_thread(sql, query, (ROWS, user)))[0][0] < expected:
        if run.done():
            run.result()
        assert loop.time() < deadline, "the later records never waited with their rows"
        await asyncio.sleep(POLL)


async def test_later_records_wait_for_the_earlier_ones_with_their_rows(
    mysql_url: str, tables: Tables
) -> None:
    """Window 4: records 1-3 write their rows and wait for record 0; record 0 fails: none
    of their rows and no position is committed. Run again: every row once."""
    table, ckpt = dest(tables), tables.name("ckpt")
    user, url = tables.user()  # its transactions are the ones watched
    store = mysql.checkpoints(url=url, table=ckpt)
    writer = mysql.writer(table, url=url)
    release = asyncio.Event()
    broken = True

    async def slow_first(data: list[dict[str, Any]]) -> dict[str, Any]:
        if data[0]["v"] == 0:
            await release.wait()
            if broken:
                raise RuntimeError("record 0 fails")
        return {"data": data}

    flow = DataFlow(
        (step(records(10), window=4), slow_first, writer), name="in-order", checkpoint=store
    )
    try:
        run = asyncio.ensure_future(flow())
        await uncommitted_writes(user, 3, run)
        release.set()
        with pytest.raises(RuntimeError, match="record 0 fails"):
            await run
        assert counts(table) == (0, 0)
        assert committed(ckpt, "in-order") is None

        broken = False
        await flow()
        assert counts(table) == (10 * ROWS, 10 * ROWS)
        assert committed(ckpt, "in-order") == '{"definition[0]": 9}'
    finally:
        await flow.aclose()
        await writer.aclose()


async def test_records_without_a_writer_call_still_commit_in_order(
    mysql_url: str, tables: Tables
) -> None:
    """Records routed away from the writer (no data) are committed by the flow itself."""
    table, ckpt = dest(tables), tables.name("ckpt")
    store = mysql.checkpoints(url=mysql_url, table=ckpt)
    writer = mysql.writer(table, url=mysql_url)

    def odd_only(data: list[dict[str, Any]]) -> dict[str, Any]:
        return {"data": data} if data[0]["v"] % 2 else {"skipped": True}

    flow = DataFlow(
        (step(records(12), window=3), odd_only, writer), name="routed", checkpoint=store
    )
    try:
        await flow()
    finally:
        await flow.aclose()
        await writer.aclose()
    assert counts(table) == (6 * ROWS, 6 * ROWS)
    assert committed(ckpt, "routed") == '{"definition[0]": 11}'


# -- the lost COMMIT acknowledgement -------------------------------------------------------


@dataclass
class Proxy:
    """A TCP proxy to the MySQL server that cuts the connection at a writer's COMMIT:
    ``after`` (the server committed, its answer is dropped) or ``before`` (the COMMIT is
    not forwarded). Only connections that inserted into ``table`` are cut, every other
    COMMIT of theirs, ``cuts`` times in all."""

    target: tuple[str, int]
    table: str
    when: str
    cuts: int
    checks: int = 0  # how many of the store's locking reads to cut too (before the server)
    done: int = 0
    seen: int = 0
    closers: list[Any] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        drop = asyncio.Event()  # the server's next answer is dropped, then both cut
        closed = asyncio.Event()

        def close() -> None:
            closed.set()
            writer.close()
            up_writer.close()

        async def down() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await up_reader.read(65536):
                    if drop.is_set():
                        self.done += 1
                        close()
                        return
                    writer.write(data)
                    await writer.drain()
            close()

        async def up() -> None:
            inserted = False
            with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
                while True:
                    header = await reader.readexactly(4)
                    payload = await reader.readexactly(int.from_bytes(header[:3], "little"))
                    query = payload[1:] if payload[:1] == b"\x03" else b""
                    if self.checks and query.endswith(b"FOR UPDATE"):
                        self.checks -= 1
                        close()
                        return
                    if f"INTO `{self.table}`".encode() in query:
                        inserted = True
                    if inserted and query.strip().upper() == b"COMMIT":
                        inserted = False
                        self.seen += 1
                        if self.done < self.cuts and self.seen % 2:
                            if self.when == "before":
                                self.done += 1
                                close()
                                return
                            drop.set()
                    up_writer.write(header + payload)
                    await up_writer.drain()
            close()

        self.closers.append(close)
        try:
            await asyncio.gather(down(), up())
        finally:
            close()
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    await w.wait_closed()


@contextlib.asynccontextmanager
async def proxy(
    mysql_url: str, table: str, when: str, cuts: int, checks: int = 0
) -> AsyncIterator[Any]:
    parts = urlsplit(mysql_url)
    target = (parts.hostname or "127.0.0.1", parts.port or 3306)
    state = Proxy(target, table, when, cuts, checks)
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    netloc = f"{parts.username or 'root'}{':' + parts.password if parts.password else ''}"
    url = urlunsplit(parts._replace(netloc=f"{netloc}@127.0.0.1:{port}"))
    try:
        yield state, url
    finally:
        server.close()
        for close in state.closers:  # connections a pool still holds
            close()
        await server.wait_closed()


LOST = (pymysql.err.OperationalError, pymysql.err.InterfaceError, ConnectionError)


@pytest.mark.parametrize("when", ["after", "before"])
async def test_a_lost_commit_answer_writes_nothing_twice(
    mysql_url: str, tables: Tables, when: str
) -> None:
    table, ckpt = dest(tables), tables.name("ckpt")
    async with proxy(mysql_url, table, when, cuts=4) as (state, url):
        store = mysql.checkpoints(url=url, table=ckpt)
        writer = mysql.writer(table, url=url)
        retry = Retry(attempts=5, backoff=0.01, jitter=False, on=LOST)
        flow = DataFlow(
            (step(records(12), window=3), step(writer, retry=retry)),
            name="lost",
            checkpoint=store,
        )
        try:
            await flow()  # no error: each cut is found out or retried
        finally:
            await flow.aclose()
            await writer.aclose()
    assert state.done == 4  # the proxy did cut four COMMITs
    assert counts(table) == (12 * ROWS, 12 * ROWS)
    assert committed(ckpt, "lost") == '{"definition[0]": 11}'


async def test_without_the_checkpoint_a_lost_answer_duplicates_rows(
    mysql_url: str, tables: Tables
) -> None:
    """What the checkpoint prevents: the same proxy, a plain retrying writer."""
    table = dest(tables)
    async with proxy(mysql_url, table, "after", cuts=2) as (state, url):
        writer = mysql.writer(table, url=url)
        retry = Retry(attempts=5, backoff=0.01, jitter=False, on=LOST)
        flow = DataFlow((records(6), step(writer, retry=retry)))
        try:
            await flow()
        finally:
            await flow.aclose()
            await writer.aclose()
    assert state.done == 2
    assert counts(table) == (8 * ROWS, 6 * ROWS)  # two records written twice


async def test_when_asking_the_store_fails_too_the_retry_asks_before_writing(
    mysql_url: str, tables: Tables
) -> None:
    """The COMMIT's answer is lost and so is the locking read that would tell whether it
    landed: the step fails, and its retry asks the store first instead of writing again."""
    table, ckpt = dest(tables), tables.name("ckpt")
    async with proxy(mysql_url, table, "after", cuts=2, checks=2) as (state, url):
        store = mysql.checkpoints(url=url, table=ckpt)
        writer = mysql.writer(table, url=url)
        retry = Retry(attempts=5, backoff=0.01, jitter=False, on=LOST)
        flow = DataFlow((records(6), step(writer, retry=retry)), name="unsure", checkpoint=store)
        try:
            await flow()
        finally:
            await flow.aclose()
            await writer.aclose()
    assert (state.done, state.checks) == (2, 0)  # both COMMITs and both reads were cut
    assert counts(table) == (6 * ROWS, 6 * ROWS)
    assert committed(ckpt, "unsure") == '{"definition[0]": 5}'
