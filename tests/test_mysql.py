"""asyncdataflow.plugins.mysql against a real MariaDB/MySQL server: what each step sends,
what comes back, the four writer modes, batching, all-or-nothing, injection attempts,
and the checks made before any connection is taken."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
from decimal import Decimal
from typing import Any

import aiomysql  # type: ignore[import-untyped]
import pymysql  # type: ignore[import-untyped]
import pytest

from asyncdataflow.exceptions import DataFlowDefinitionError
from asyncdataflow.plugins import mysql

try:
    from _mysql_server import (
        NOWHERE,
        Tables,
        connections_of,
        one_connection_pool,
        sql,
        until_no_connections,
    )
except ImportError:  # tests/ imported as a package
    from tests._mysql_server import (  # type: ignore[no-redef]
        NOWHERE,
        Tables,
        connections_of,
        one_connection_pool,
        sql,
        until_no_connections,
    )


async def session_counter(pool: Any, name: str) -> int:
    """A session status counter (e.g. Com_insert) of the pool's only connection."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SHOW SESSION STATUS LIKE %s", (name,))
        ((_, value),) = await cur.fetchall()
    return int(value)


# -- checks made when the step is built, or before any I/O ---------------------------------


def test_the_reader_takes_the_query_s_named_placeholders_as_parameters():
    step = mysql.reader(
        "SELECT * FROM orders WHERE id > %(last_id)s AND shop = %(shop)s AND id <> %(last_id)s"
        " AND name LIKE 'a%%'",
        url=NOWHERE,
    )
    params = inspect.signature(step).parameters
    assert list(params) == ["last_id", "shop"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert all(p.default is inspect.Parameter.empty for p in params.values())
    assert inspect.iscoroutinefunction(type(step).__call__)
    assert step.__qualname__.startswith("mysql.reader(SELECT * FROM orders WHERE id > ")


def test_writer_and_execute_signatures():
    assert list(inspect.signature(mysql.writer("t", url=NOWHERE)).parameters) == ["data"]
    step = mysql.execute("DELETE FROM t WHERE id < %(before)s", url=NOWHERE)
    assert list(inspect.signature(step).parameters) == ["before"]
    assert list(inspect.signature(mysql.execute("DROP TABLE t", url=NOWHERE)).parameters) == []


@pytest.mark.parametrize(
    "query", ["SELECT * FROM t WHERE id = %s", "SELECT %(1x)s", "SELECT %(class)s", "  "]
)
def test_statements_the_flow_cannot_feed_are_refused_when_built(query):
    with pytest.raises(DataFlowDefinitionError, match=r"mysql\.reader"):
        mysql.reader(query, url=NOWHERE)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"url": NOWHERE, "pool": object()},
        {"url": "postgres://h/db"},
        {"url": "mysql:///db"},
        {"url": "mysql://h:notaport/db"},
        {"url": "mysql://h/db?sslmode=on"},
        {"url": "mysql://h/db?maxsize=ten"},
    ],
)
def test_bad_connection_arguments_are_refused_when_built(kwargs):
    with pytest.raises(DataFlowDefinitionError, match=r"mysql\.execute\(SELECT 1\)"):
        mysql.execute("SELECT 1", **kwargs)


def test_the_password_is_in_no_name():
    step = mysql.writer("orders", url="mysql://app:s3cr%40t-pw@db.example:3307/shop?maxsize=3")
    assert step._pool_kwargs == {
        "host": "db.example",
        "port": 3307,
        "user": "app",
        "password": "s3cr@t-pw",
        "db": "shop",
        "charset": "utf8mb4",
        "autocommit": False,
        "maxsize": 3,
    }
    for text in (step.__qualname__, repr(step), str(step)):
        assert "s3cr" not in text
    assert repr(step) == "<mysql.writer(orders, mode=insert) on mysql://app@db.example:3307/shop>"


@pytest.mark.parametrize(
    "table",
    ["orders; DROP TABLE x", "a.b.c", "`x`", "1abc", "x" * 65, "or ders", "t-1", "", "s.", 7],
)
def test_table_names_that_are_not_plain_identifiers_are_refused(table):
    with pytest.raises(DataFlowDefinitionError, match=r"mysql\.writer"):
        mysql.writer(table, url=NOWHERE)


def test_schema_dot_table_is_accepted_and_quoted():
    step = mysql.writer("shop.orders", url=NOWHERE, columns=["id", "name$2"])
    assert step._table == "`shop`.`orders`"


@pytest.mark.parametrize(
    "columns", [["id", "name`; DROP TABLE t; --"], ["id", "id"], [], "id", ["a b"], [None]]
)
def test_bad_columns_are_refused_when_built(columns):
    with pytest.raises(DataFlowDefinitionError, match="column"):
        mysql.writer("t", url=NOWHERE, columns=columns)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "merge"}, "mode must be one of"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
    ],
)
def test_bad_writer_options_are_refused_when_built(kwargs, match):
    with pytest.raises(DataFlowDefinitionError, match=match):
        mysql.writer("t", url=NOWHERE, **kwargs)


@pytest.mark.parametrize(
    ("rows", "columns", "match"),
    [
        ([{"id": 1, "a": 2}, {"id": 2, "b": 3}], None, r"data\[1\] has keys \['b', 'id'\]"),
        ([{"id": 1}, {"id": 2, "a": 3}], None, r"data\[1\] has keys"),
        ([{"id": 1}, (2,)], None, r"data\[1\] is a tuple"),
        ([(1, 2)], None, "give the column names"),
        ([(1, 2), (3,)], ["id", "a"], r"data\[1\] has 1 values"),
        ([(1, 2), "ab"], ["id", "a"], r"data\[1\] is a str"),
        ([{"id": 1}], ["id", "a"], r"lacks column\(s\) \['a'\]"),
        ([{"id": 1, "x`) VALUES (1); DROP TABLE t; --": 2}], None, "not an identifier"),
        ({"id": 1}, None, "data must be a list"),
        ("id", None, "data must be a list"),
        ([{}], None, "empty dict"),
        # values the driver would store as something else, or send as a SQL list
        ([{"id": 1, "doc": {"a": 1}}], None, r"data\[0\] column 'doc' is a dict.*json\.dumps"),
        ([{"id": 1}, {"id": [2]}], None, r"data\[1\] column 'id' is a list"),
        ([(1, bytearray(b"x"))], ["id", "a"], r"data\[0\] column 'a' is a bytearray.*bytes\("),
        ([(1, memoryview(b"x"))], ["id", "a"], r"is a memoryview"),
        ([(1, object())], ["id", "a"], r"data\[0\] column 'a' is a object"),
    ],
)
async def test_rows_the_writer_cannot_write_are_refused_before_any_io(rows, columns, match):
    # NOWHERE has no server: reaching the network would raise OperationalError instead
    step = mysql.writer("t", url=NOWHERE, columns=columns)
    with pytest.raises(ValueError, match=match) as caught:
        await step(data=rows)
    assert "mysql.writer(t, mode=insert)" in str(caught.value)
    assert step._pools == {}


async def test_no_rows_is_no_io():
    step = mysql.writer("t", url=NOWHERE)
    assert await step(data=[]) == {"rowcount": 0}
    assert await step(data=iter([])) == {"rowcount": 0}
    assert step._pools == {}


def test_every_writer_statement_has_the_shape_aiomysql_batches():
    # aiomysql's executemany() turns one statement into multi-row INSERTs only when it
    # matches this pattern; otherwise it sends one statement per row.
    for mode in mysql.MODES:
        step = mysql.writer("s.t", url=NOWHERE, mode=mode)
        for keys in (frozenset(), frozenset({"id"}), frozenset({"id", "values", "v"})):
            statement = step._statement(("id", "values", "v"), keys)
            match = aiomysql.cursors.RE_INSERT_VALUES.match(statement)
            assert match, statement
            assert match.group(2) == "(%s, %s, %s)", statement
    step = mysql.writer("t", url=NOWHERE, mode="upsert")
    assert step._statement(("id", "v"), frozenset({"id"})).endswith(
        "ON DUPLICATE KEY UPDATE `v`=VALUES(`v`)"
    )
    assert step._statement(("id",), frozenset({"id"})).endswith("ON DUPLICATE KEY UPDATE `id`=`id`")


# -- against the server ------------------------------------------------------------------

ALL_TYPES = """
    id BIGINT PRIMARY KEY, n INT NULL, big BIGINT NULL, price DECIMAL(20,6) NULL,
    ratio DOUBLE NULL, name VARCHAR(200) NULL, note TEXT NULL, raw BLOB NULL,
    day DATE NULL, at DATETIME(6) NULL
"""

TYPED_ROWS = [
    {
        "id": 1,
        "n": -2147483648,
        "big": 9223372036854775807,
        "price": Decimal("12345678.901234"),
        "ratio": 0.1 + 0.2,
        "name": "Zoë 😀🚀 中文",
        "note": "line\nbreak\ttab 'quote' \"dq\" \\",
        "raw": bytes(range(256)),
        "day": dt.date(1999, 12, 31),
        "at": dt.datetime(2024, 2, 29, 23, 59, 58, 123456),
    },
    {
        "id": 2,
        "n": None,
        "big": None,
        "price": None,
        "ratio": None,
        "name": None,
        "note": None,
        "raw": None,
        "day": None,
        "at": None,
    },
    {
        "id": 3,
        "n": 0,
        "big": -1,
        "price": Decimal("-0.000001"),
        "ratio": -1e300,
        "name": "",
        "note": "",
        "raw": b"",
        "day": dt.date(1, 1, 1),
        "at": dt.datetime(9999, 12, 31, 23, 59, 59),
    },
]


async def test_values_of_every_kind_round_trip(tables: Tables):
    table = tables.create(ALL_TYPES)
    write = mysql.writer(table, url=tables.url)
    read = mysql.reader(
        f"SELECT * FROM `{table}` WHERE id >= %(first)s ORDER BY id", url=tables.url
    )
    try:
        assert await write(data=TYPED_ROWS) == {"rowcount": 3}
        assert await read(first=1) == {"data": TYPED_ROWS}
        got = (await read(first=3))["data"][0]
        assert {k: type(v) for k, v in got.items()} == {
            k: type(v) for k, v in TYPED_ROWS[2].items()
        }
    finally:
        await write.aclose()
        await read.aclose()


async def test_bytes_round_trip_as_row_values_and_as_query_parameters(tables: Tables):
    # aiomysql 0.3.2 with PyMySQL 1.2 breaks every bytes parameter (hence the pin)
    table = tables.create("id INT PRIMARY KEY, raw VARBINARY(300)")
    blobs = [bytes(range(256)), b"\x00", b"'\\\x00\x1a\"", "é😀".encode()]
    write = mysql.writer(table, url=tables.url, columns=["id", "raw"])
    find = mysql.reader(f"SELECT id, raw FROM `{table}` WHERE raw = %(raw)s", url=tables.url)
    update = mysql.execute(
        f"UPDATE `{table}` SET raw = %(new)s WHERE raw = %(old)s", url=tables.url
    )
    try:
        await write(data=list(enumerate(blobs)))
        for i, blob in enumerate(blobs):
            assert await find(raw=blob) == {"data": [{"id": i, "raw": blob}]}
        assert await update(old=blobs[1], new=b"\xff\xfe") == {"rowcount": 1}
        assert sql(f"SELECT raw FROM `{table}` WHERE id = 1") == [(b"\xff\xfe",)]
    finally:
        for step in (write, find, update):
            await step.aclose()


async def test_insert_adds_rows_and_a_duplicate_raises_integrity_error(tables: Tables):
    table = tables.create("id INT PRIMARY KEY, v VARCHAR(20)")
    step = mysql.writer(table, url=tables.url)
    try:
        assert await step(data=[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]) == {"rowcount": 2}
        with pytest.raises(pymysql.err.IntegrityError) as caught:
            await step(data=[{"id": 3, "v": "c"}, {"id": 1, "v": "again"}])
        assert caught.value.args[0] == 1062
        assert sql(f"SELECT id, v FROM `{table}` ORDER BY id") == [(1, "a"), (2, "b")]
    finally:
        await step.aclose()


async def test_ignore_skips_rows_whose_key_exists(tables: Tables):
    table = tables.create("id INT PRIMARY KEY, v VARCHAR(20)")
    sql(f"INSERT INTO `{table}` VALUES (1, 'old'), (2, 'old')")
    step = mysql.writer(table, url=tables.url, mode="ignore")
    try:
        # the server warns about every skipped row; the step does not turn that into
        # Python warnings (pytest runs with warnings as errors)
        result = await step(
            data=[{"id": 2, "v": "new"}, {"id": 3, "v": "new"}, {"id": 3, "v": "dup"}]
        )
        assert result == {"rowcount": 1}
        assert sql(f"SELECT id, v FROM `{table}` ORDER BY id") == [
            (1, "old"),
            (2, "old"),
            (3, "new"),
        ]
    finally:
        await step.aclose()


async def test_upsert_updates_existing_rows_and_inserts_new_ones(tables: Tables):
    table = tables.create("id INT PRIMARY KEY, v VARCHAR(20), n INT")
    sql(f"INSERT INTO `{table}` VALUES (1, 'old', 1), (2, 'old', 2), (3, 'same', 3)")
    step = mysql.writer(table, url=tables.url, mode="upsert")
    try:
        result = await step(
            data=[
                {"id": 2, "v": "new", "n": 20},
                {"id": 3, "v": "same", "n": 3},
                {"id": 4, "v": "new", "n": 40},
            ]
        )
        # the server's affected rows: 2 per updated row, 0 per unchanged, 1 per inserted
        assert result == {"rowcount": 3}
        assert sql(f"SELECT id, v, n FROM `{table}` ORDER BY id") == [
            (1, "old", 1),
            (2, "new", 20),
            (3, "same", 3),
            (4, "new", 40),
        ]
        # rows given as tuples, fewer columns: only those are updated
        tuples = mysql.writer(table, url=tables.url, mode="upsert", columns=["n", "id"])
        await tuples(data=[(200, 2), (500, 5)])
        await tuples.aclose()
        assert sql(f"SELECT id, v, n FROM `{table}` ORDER BY id") == [
            (1, "old", 1),
            (2, "new", 200),
            (3, "same", 3),
            (4, "new", 40),
            (5, None, 500),
        ]
    finally:
        await step.aclose()


async def test_upsert_on_a_unique_key_leaves_the_primary_key_alone(tables: Tables):
    table = tables.create(
        "id INT AUTO_INCREMENT PRIMARY KEY, code VARCHAR(10) NOT NULL, shop INT NOT NULL,"
        " price INT, UNIQUE KEY code_shop (code, shop)"
    )
    sql(f"INSERT INTO `{table}` (id, code, shop, price) VALUES (7, 'A', 1, 10)")
    step = mysql.writer(f"{tables.url.rsplit('/', 1)[1]}.{table}", url=tables.url, mode="upsert")
    try:
        # id, code and shop belong to keys: only price is updated, id 7 is kept
        await step(
            data=[
                {"id": 99, "code": "A", "shop": 1, "price": 11},
                {"id": 100, "code": "A", "shop": 2, "price": 12},
            ]
        )
        assert sql(f"SELECT id, code, shop, price FROM `{table}` ORDER BY id") == [
            (7, "A", 1, 11),
            (100, "A", 2, 12),
        ]
        # only key columns given: an existing row is kept as it is
        keys_only = mysql.writer(table, url=tables.url, mode="upsert")
        assert await keys_only(data=[{"code": "A", "shop": 1}]) == {"rowcount": 0}
        await keys_only.aclose()
        assert sql(f"SELECT COUNT(*) FROM `{table}`") == [(2,)]
    finally:
        await step.aclose()


async def test_replace_deletes_the_old_row_and_inserts_the_new_one(tables: Tables):
    table = tables.create("id INT PRIMARY KEY, v VARCHAR(20), n INT DEFAULT 5")
    sql(f"INSERT INTO `{table}` VALUES (1, 'old', 1), (2, 'old', 2)")
    step = mysql.writer(table, url=tables.url, mode="replace", columns=["id", "v"])
    try:
        # REPLACE counts the deleted row and the inserted one
        assert await step(data=[(2, "new"), (3, "new")]) == {"rowcount": 3}
        assert sql(f"SELECT id, v, n FROM `{table}` ORDER BY id") == [
            (1, "old", 1),
            (2, "new", 5),
            (3, "new", 5),
        ]
    finally:
        await step.aclose()


@pytest.mark.parametrize(
    ("mode", "counter"),
    [
        ("insert", "Com_insert"),
        ("ignore", "Com_insert"),
        ("upsert", "Com_insert"),
        ("replace", "Com_replace"),
    ],
)
async def test_ten_thousand_rows_go_as_ten_multi_row_statements(tables: Tables, mode, counter):
    table = tables.create("id INT PRIMARY KEY, name VARCHAR(40), qty INT, price DOUBLE")
    pool = await one_connection_pool(tables.url)  # so the session counters are the step's
    step = mysql.writer(table, pool=pool, mode=mode, batch_size=1000)
    rows = [{"id": i, "name": f"item {i}", "qty": i % 7, "price": i / 4} for i in range(10_000)]
    try:
        before = await session_counter(pool, counter)
        assert await step(data=rows) == {"rowcount": 10_000}
        assert await session_counter(pool, counter) - before == 10
        assert sql(f"SELECT COUNT(*), SUM(id), SUM(qty) FROM `{table}`") == [
            (10_000, sum(range(10_000)), sum(i % 7 for i in range(10_000)))
        ]
    finally:
        await step.aclose()  # the user's pool is not closed by the step
        assert not pool.closed
        pool.close()
        await pool.wait_closed()


async def test_a_duplicate_in_the_third_batch_leaves_the_table_exactly_as_before(tables: Tables):
    table = tables.create("id INT PRIMARY KEY, v VARCHAR(20)")
    sql(f"INSERT INTO `{table}` VALUES (-1, 'kept'), (-2, 'kept')")
    before = sql(f"SELECT id, v FROM `{table}` ORDER BY id")
    rows = [{"id": i, "v": "new"} for i in range(5000)]
    rows[2500] = {"id": 17, "v": "dup of batch 1"}
    pool = await one_connection_pool(tables.url)  # autocommit on: the step still commits once
    step = mysql.writer(table, pool=pool, batch_size=1000)
    try:
        before_inserts = await session_counter(pool, "Com_insert")
        with pytest.raises(pymysql.err.IntegrityError, match="Duplicate entry '17'"):
            await step(data=rows)
        assert await session_counter(pool, "Com_insert") - before_inserts == 3
        assert sql(f"SELECT id, v FROM `{table}` ORDER BY id") == before
        # the connection was rolled back and is fine: the next call works on it
        rows[2500] = {"id": 2500, "v": "new"}
        assert await step(data=rows) == {"rowcount": 5000}
        assert sql(f"SELECT COUNT(*) FROM `{table}`") == [(5002,)]
    finally:
        pool.close()
        await pool.wait_closed()


INJECTIONS = [
    "'); DROP TABLE x; --",
    "\\'; DROP TABLE x; --",
    "%(v)s %s %% {0} {v}",
    '" OR "1"="1',
    "' OR '1'='1",
    "nul\x00byte\x1a",
    "`backtick`",
    "\\",
]


async def test_values_are_sent_as_parameters_and_stored_verbatim(tables: Tables):
    table = tables.create("id INT PRIMARY KEY, v VARCHAR(100)")
    write = mysql.writer(table, url=tables.url)
    find = mysql.reader(f"SELECT id FROM `{table}` WHERE v = %(v)s", url=tables.url)
    delete = mysql.execute(f"DELETE FROM `{table}` WHERE v = %(v)s", url=tables.url)
    try:
        await write(data=[{"id": i, "v": v} for i, v in enumerate(INJECTIONS)])
        assert sql(f"SELECT v FROM `{table}` ORDER BY id") == [(v,) for v in INJECTIONS]
        assert await find(v="' OR '1'='1") == {"data": [{"id": 4}]}
        assert await find(v="x' OR '1'='1") == {"data": []}
        assert await delete(v="x' OR '1'='1") == {"rowcount": 0}
        assert await delete(v=INJECTIONS[0]) == {"rowcount": 1}
        assert sql(f"SELECT COUNT(*) FROM `{table}`") == [(len(INJECTIONS) - 1,)]
    finally:
        for step in (write, find, delete):
            await step.aclose()


async def test_injection_through_names_is_refused_and_the_table_survives(tables: Tables):
    table = tables.create("id INT PRIMARY KEY, v VARCHAR(100)")
    with pytest.raises(DataFlowDefinitionError):
        mysql.writer(f"{table}` (id) VALUES (1); DROP TABLE `{table}", url=tables.url)
    with pytest.raises(DataFlowDefinitionError):
        mysql.writer(table, url=tables.url, columns=["id", "v) VALUES (1, 2); DROP TABLE x; --"])
    step = mysql.writer(table, url=tables.url)
    try:
        with pytest.raises(ValueError, match="not an identifier"):
            await step(data=[{"id": 1, f"v`) VALUES (1, 'x'); DROP TABLE `{table}`; --": "x"}])
        assert step._pools == {}  # refused before a connection was taken
    finally:
        await step.aclose()
    assert sql(f"SELECT COUNT(*) FROM `{table}`") == [(0,)]


async def test_execute_runs_ddl_updates_and_deletes(tables: Tables):
    table = tables.name("ddl")
    create = mysql.execute(f"CREATE TABLE `{table}` (id INT PRIMARY KEY, v INT)", url=tables.url)
    fill = mysql.execute(f"INSERT INTO `{table}` VALUES (1, 1), (2, 2), (3, 3)", url=tables.url)
    bump = mysql.execute(
        f"UPDATE `{table}` SET v = v + %(by)s WHERE id >= %(from_id)s", url=tables.url
    )
    prune = mysql.execute(f"DELETE FROM `{table}` WHERE v > %(limit)s", url=tables.url)
    try:
        assert await create() == {"rowcount": 0}
        assert await fill() == {"rowcount": 3}
        assert await bump(by=10, from_id=2) == {"rowcount": 2}
        assert await prune(limit=12) == {"rowcount": 1}
        assert sql(f"SELECT id, v FROM `{table}` ORDER BY id") == [(1, 1), (2, 12)]
    finally:
        for step in (create, fill, bump, prune):
            await step.aclose()


async def test_a_query_without_placeholders_is_sent_as_written(tables: Tables):
    table = tables.create("id INT PRIMARY KEY, v VARCHAR(20)")
    sql(f"INSERT INTO `{table}` VALUES (1, 'a%b'), (2, 'ab')")
    step = mysql.reader(f"SELECT id FROM `{table}` WHERE v LIKE 'a%b'", url=tables.url)
    # LIKE 'a%%' and LIKE 'a%' match the same rows, so the literal shows what was sent
    escaped = mysql.reader(
        f"SELECT id, '100%%' AS pct FROM `{table}` WHERE v LIKE %(p)s AND v LIKE 'a%%'",
        url=tables.url,
    )
    as_written = mysql.reader("SELECT '100%%' AS pct", url=tables.url)
    try:
        assert await step() == {"data": [{"id": 1}, {"id": 2}]}
        assert await escaped(p="a\\%b") == {"data": [{"id": 1, "pct": "100%"}]}
        assert await as_written() == {"data": [{"pct": "100%%"}]}
    finally:
        await step.aclose()
        await escaped.aclose()
        await as_written.aclose()


async def test_the_step_s_own_pool_has_autocommit_off_and_reads_see_new_commits(tables: Tables):
    table = tables.create("id INT PRIMARY KEY")
    read = mysql.reader(f"SELECT @@autocommit AS ac, COUNT(*) AS n FROM `{table}`", url=tables.url)
    try:
        assert await read() == {"data": [{"ac": 0, "n": 0}]}
        sql(f"INSERT INTO `{table}` VALUES (1)")
        # each read ends its transaction, so the next one sees what others committed
        assert await read() == {"data": [{"ac": 0, "n": 1}]}
    finally:
        await read.aclose()


async def test_many_concurrent_first_calls_make_one_pool(tables: Tables):
    user, url = tables.user()
    step = mysql.reader("SELECT SLEEP(0.05) AS s, %(i)s AS i", url=url + "?maxsize=5")
    try:
        results = await asyncio.gather(*(step(i=i) for i in range(200)))
        assert [r["data"] for r in results] == [[{"s": 0, "i": i}] for i in range(200)]
        assert len(step._pools) == 1
        assert 1 <= len(connections_of(user)) <= 5
    finally:
        await step.aclose()
    assert await until_no_connections(user) == []
    assert step._pools == {}


async def test_a_user_pool_is_used_and_never_closed(tables: Tables):
    pool = await one_connection_pool(tables.url)
    step = mysql.reader("SELECT CONNECTION_ID() AS id", pool=pool)
    try:
        async with pool.acquire() as conn:
            own = conn.thread_id()
        assert await step() == {"data": [{"id": own}]}
        await step.aclose()
        assert not pool.closed
        assert await step() == {"data": [{"id": own}]}
    finally:
        pool.close()
        await pool.wait_closed()


async def test_after_aclose_the_step_opens_a_new_pool(tables: Tables):
    step = mysql.reader("SELECT CONNECTION_ID() AS id", url=tables.url)
    first = (await step())["data"][0]["id"]
    await step.aclose()
    assert step._pools == {}
    second = (await step())["data"][0]["id"]
    await step.aclose()
    assert second != first


def test_a_step_used_in_two_event_loops_has_a_pool_in_each(tables: Tables):
    step = mysql.reader("SELECT CONNECTION_ID() AS id", url=tables.url)

    async def use() -> int:
        try:
            return int((await step())["data"][0]["id"])
        finally:
            await step.aclose()

    assert asyncio.run(use()) != asyncio.run(use())


async def test_a_wrong_password_propagates_the_server_error_without_the_password(tables: Tables):
    step = mysql.reader(
        "SELECT 1",
        url=tables.url.replace("://", "://nobody_x:s3cr3t-pw@", 1)
        if "@" not in tables.url
        else "mysql://nobody_x:s3cr3t-pw@" + tables.url.split("@", 1)[1],
    )
    with pytest.raises(pymysql.err.OperationalError) as caught:
        await step()
    await step.aclose()
    assert caught.value.args[0] == 1045
    text = "\n".join(
        [str(caught.value), repr(caught.value), *getattr(caught.value, "__notes__", [])]
    )
    assert "s3cr3t-pw" not in text


async def test_a_reader_commits_so_insert_returning_works(tables: Tables):
    table = tables.create("id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20)")
    step = mysql.reader(f"INSERT INTO `{table}` (v) VALUES (%(v)s) RETURNING id, v", url=tables.url)
    try:
        assert await step(v="x") == {"data": [{"id": 1, "v": "x"}]}
        assert sql(f"SELECT id, v FROM `{table}`") == [(1, "x")]
    finally:
        await step.aclose()


async def test_number_like_values_of_other_types_are_written_as_their_text(tables: Tables):
    import enum
    from fractions import Fraction

    class Level(enum.IntEnum):
        HIGH = 3

    table = tables.create("id INT PRIMARY KEY, n INT, q VARCHAR(10)")
    step = mysql.writer(table, url=tables.url)
    try:
        assert await step(data=[{"id": 1, "n": Level.HIGH, "q": Fraction(1, 3)}]) == {"rowcount": 1}
    finally:
        await step.aclose()
    assert sql(f"SELECT id, n, q FROM `{table}`") == [(1, 3, "1/3")]


def test_an_aiomysql_without_the_private_names_the_pack_uses_fails_loudly():
    from asyncdataflow.plugins.mysql import _common

    _common.check_aiomysql(aiomysql)  # the installed release has them

    class Pool:
        pass

    class Cursor:
        async def _show_warnings(self, conn):
            return None

    changed = type("aiomysql", (), {"Pool": Pool, "Cursor": Cursor, "__version__": "9.0"})
    with pytest.raises(ImportError, match=r"relies on aiomysql\.Pool\._wakeup") as caught:
        _common.check_aiomysql(changed)
    assert "aiomysql 9.0 does not have" in str(caught.value)
    assert 'pip install "aiomysql>=0.2,<0.4"' in str(caught.value)
