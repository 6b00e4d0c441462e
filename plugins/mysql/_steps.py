"""The three MySQL steps: reader (a query's rows), writer (rows into a table) and
execute (any other statement)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, Literal

# aiomysql comes through _common, which says how to install it when it is missing
from asyncdataflow.durable import Record, RecordCommit, current_record, resume_position
from asyncdataflow.exceptions import DataFlowDefinitionError

from .._errors import StepArgumentError
from .._vocab import DATA, check_key, declare_outputs
from ._common import (
    MySQLStep,
    aiomysql,
    check_identifier,
    placeholders,
    pymysql,
    quote_table,
    short,
)
from ._stream import stream_rows

Mode = Literal["insert", "ignore", "upsert", "replace"]
MODES: tuple[str, ...] = ("insert", "ignore", "upsert", "replace")

_KEY_COLUMNS = (
    "SELECT DISTINCT COLUMN_NAME FROM information_schema.STATISTICS "
    "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s AND NON_UNIQUE = 0"
)


_CONTAINERS = (dict, list, tuple, set, frozenset)
#: Value types PyMySQL turns into one SQL literal. It sends any other type as the text
#: ``str(value)`` would give, which is right for numpy numbers and the like, but stores
#: ``"bytearray(b'..')"`` or ``"<object object at 0x..>"`` for others.
_SCALARS = frozenset(pymysql.converters.encoders) - frozenset(_CONTAINERS)
_SCALAR_BASES = tuple(t for t in _SCALARS if t is not type(None))


def _stored_wrongly(kind: type) -> bool:
    """Whether PyMySQL would store a value of this type as something else than it is: a
    container (a SQL list, or an error), bytes that are not ``bytes``, or an object
    whose text is only its default repr."""
    if issubclass(kind, (*_CONTAINERS, bytearray, memoryview)):
        return True
    if issubclass(kind, _SCALAR_BASES):
        return False
    return kind.__str__ is object.__str__ and kind.__repr__ is object.__repr__


def _signature(names: Iterable[str]) -> inspect.Signature:
    return inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in names]
    )


class _QuietCursor(aiomysql.Cursor):  # type: ignore[misc]
    """A cursor that does not turn server warnings into Python warnings: for
    ``INSERT IGNORE`` every skipped row is a warning, and skipping is what was asked."""

    async def _show_warnings(self, conn: Any) -> None:
        return None


class _StatementStep(MySQLStep):
    """A statement whose named placeholders are the step's parameters."""

    def __init__(self, kind: str, statement: str, url: str | None, pool: Any) -> None:
        name = f"mysql.{kind}({short(statement)})"
        self._names = placeholders(name, statement)
        super().__init__(name, url, pool)
        self._statement = statement
        self.__qualname__ = name
        self.__signature__ = _signature(self._names)

    def _args(self, kwargs: dict[str, Any]) -> dict[str, Any] | None:
        missing = [name for name in self._names if name not in kwargs]
        if missing:
            raise StepArgumentError(f"{self.__qualname__}: missing value for {', '.join(missing)}")
        return {name: kwargs[name] for name in self._names} if self._names else None


class Reader(_StatementStep):
    """The step :func:`reader` returns."""

    def __init__(self, query: str, url: str | None, pool: Any, key: str = DATA) -> None:
        super().__init__("reader", query, url, pool)
        self._key = check_key(self.__qualname__, key)
        if self._key in self._names:
            raise DataFlowDefinitionError(
                f"{self.__qualname__}: key={key!r} is also a placeholder of the query; "
                "rename one of them"
            )
        declare_outputs(self, self._key)

    async def __call__(self, **kwargs: Any) -> dict[str, Any]:
        args = self._args(kwargs)
        async with self.connection() as conn:
            async with conn.cursor(aiomysql.DictCursor) as cur:
                await cur.execute(self._statement, args)
                rows = await cur.fetchall()
            if not conn.get_autocommit():  # end the transaction a read opens, too
                await conn.commit()
        return {self._key: rows if isinstance(rows, list) else list(rows)}


class ChunkedReader(Reader):
    """The step :func:`reader` returns with ``chunk_size=``: a source (an async
    generator) yielding ``{"data": [dict, ...]}`` records of at most ``chunk_size`` rows
    from an unbuffered server-side cursor."""

    def __init__(
        self,
        query: str,
        url: str | None,
        pool: Any,
        key: str,
        chunk_size: Any,
        resume_by: str | None = None,
    ) -> None:
        super().__init__(query, url, pool, key)
        if resume_by is not None and (not isinstance(resume_by, str) or not resume_by):
            raise DataFlowDefinitionError(
                f"{self.__qualname__}: resume_by={resume_by!r} must name a unique column "
                "of the query's result"
            )
        self._resume_by = resume_by
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise DataFlowDefinitionError(
                f"{self.__qualname__}: chunk_size={chunk_size!r} must be an int >= 1 (rows "
                "per record)"
            )
        self._chunk_size = chunk_size

    async def __call__(self, **kwargs: Any) -> AsyncGenerator[dict[str, Any], None]:  # type: ignore[override]
        statement, args = self._statement, self._args(kwargs)
        column = self._resume_by
        if column is not None:
            after = resume_position()
            quoted = "`" + column.replace("`", "``") + "`"
            if args is None:
                statement, args = statement.replace("%", "%%"), {}
            where = ""
            if after is not None:
                where = f" WHERE q.{quoted} > %(asyncdataflow_after)s"
                args = {**args, "asyncdataflow_after": after}
            statement = f"SELECT * FROM ({statement}) q{where} ORDER BY q.{quoted}"
        rows = stream_rows(self, statement, args, self._chunk_size, self._key)
        async with contextlib.aclosing(rows):
            async for record in rows:
                if column is None:
                    yield record
                else:
                    yield Record(record, position=record[self._key][-1][column])


class Execute(_StatementStep):
    """The step :func:`execute` returns."""

    def __init__(self, statement: str, url: str | None, pool: Any) -> None:
        super().__init__("execute", statement, url, pool)
        declare_outputs(self, "rowcount")

    async def __call__(self, **kwargs: Any) -> dict[str, Any]:
        args = self._args(kwargs)
        async with self.connection() as conn:
            async with conn.cursor() as cur:
                rowcount = await cur.execute(self._statement, args)
            if not conn.get_autocommit():  # end the transaction a read opens, too
                await conn.commit()
        return {"rowcount": rowcount}


class Writer(MySQLStep):
    """The step :func:`writer` returns."""

    def __init__(
        self,
        table: str,
        url: str | None,
        pool: Any,
        columns: Sequence[str] | None,
        mode: str,
        batch_size: int,
        key: str = DATA,
    ) -> None:
        name = f"mysql.writer({table if isinstance(table, str) else '?'}, mode={mode})"
        self._key = check_key(name, key)
        self._table = quote_table(name, table)
        self._schema, _, self._table_name = table.rpartition(".")
        if mode not in MODES:
            raise DataFlowDefinitionError(
                f"{name}: mode must be one of {', '.join(repr(m) for m in MODES)}, not {mode!r}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataFlowDefinitionError(f"{name}: batch_size must be an int >= 1")
        self._columns: tuple[str, ...] | None = None
        if columns is not None:
            if isinstance(columns, str) or not isinstance(columns, Iterable):
                raise DataFlowDefinitionError(
                    f"{name}: columns must be a list of column names, e.g. ['id', 'name']"
                )
            self._columns = tuple(columns)
            if not self._columns or len(set(self._columns)) != len(self._columns):
                raise DataFlowDefinitionError(
                    f"{name}: columns must name at least one column, each once"
                )
            try:
                for column in self._columns:
                    check_identifier(name, "column", column)
            except ValueError as error:
                raise DataFlowDefinitionError(str(error)) from None
        super().__init__(name, url, pool)
        self._mode = mode
        self._batch_size = batch_size
        self._statements: dict[tuple[str, ...], str] = {}
        self._key_columns: frozenset[str] | None = None
        self.__qualname__ = name
        self.__signature__ = _signature([self._key])
        declare_outputs(self, "rowcount")

    def _tuples(self, rows: Any) -> tuple[tuple[str, ...], Sequence[Sequence[Any]]]:
        """The column names and the rows as sequences of values; ``ValueError`` for rows
        this step cannot write, before any I/O."""
        name = self.__qualname__
        if isinstance(rows, str | bytes | Mapping) or not isinstance(rows, Iterable):
            raise StepArgumentError(
                f"{name}: {self._key} must be a list of dicts (or of tuples with columns=...), "
                f"not {type(rows).__name__}"
            )
        if not isinstance(rows, list | tuple):
            rows = list(rows)
        if not rows:
            return (), rows
        first = rows[0]
        if isinstance(first, Mapping):
            columns = self._columns or tuple(first)
            if not columns:
                raise StepArgumentError(
                    f"{name}: {self._key}[0] is an empty dict; there is nothing to write"
                )
            if self._columns is None:
                keys = first.keys()
                if not (set(map(type, rows)) == {dict} and all(row.keys() == keys for row in rows)):
                    for index, row in enumerate(rows):
                        if not isinstance(row, Mapping) or row.keys() != keys:
                            raise StepArgumentError(self._differs(index, row, columns))
            else:
                wanted = set(columns)
                for index, row in enumerate(rows):
                    if not isinstance(row, Mapping) or not wanted <= row.keys():
                        raise StepArgumentError(self._differs(index, row, columns))
            for column in columns:
                check_identifier(name, "column", column)
            get = itemgetter(*columns)
            if len(columns) == 1:
                return columns, [(get(row),) for row in rows]
            return columns, [get(row) for row in rows]
        if self._columns is None:
            raise StepArgumentError(
                f"{name}: {self._key}[0] is a {type(first).__name__}, not a dict; for rows of "
                "tuples give the column names: writer(..., columns=['id', 'name'])"
            )
        width = len(self._columns)
        # fast path, at C speed: every row a tuple or list of the right width
        if set(map(type, rows)) <= {tuple, list} and set(map(len, rows)) == {width}:
            return self._columns, rows
        for index, row in enumerate(rows):
            if isinstance(row, str | bytes | Mapping) or not isinstance(row, Sequence):
                raise StepArgumentError(
                    f"{name}: {self._key}[{index}] is a {type(row).__name__}; every row must be a "
                    f"tuple of {width} values (columns={list(self._columns)})"
                )
            if len(row) != width:
                raise StepArgumentError(
                    f"{name}: {self._key}[{index}] has {len(row)} values, columns= names {width}: "
                    f"{list(self._columns)}"
                )
        return self._columns, rows

    def _check_values(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """``ValueError`` for a value the driver would not store as it is (one set of
        types for all values, at C speed; rows are looked at only when one is found)."""
        odd = set(map(type, chain.from_iterable(rows))) - _SCALARS
        bad = {kind for kind in odd if _stored_wrongly(kind)}
        if not bad:
            return
        for index, row in enumerate(rows):
            for column, value in zip(columns, row, strict=True):
                if type(value) in bad:
                    hint = (
                        "bytes(value)"
                        if isinstance(value, bytearray | memoryview)
                        else "json.dumps(value) for a JSON column"
                        if isinstance(value, _CONTAINERS)
                        else "a str, number, bytes, date/time, Decimal or None"
                    )
                    raise StepArgumentError(
                        f"{self.__qualname__}: {self._key}[{index}] column {column!r} is a "
                        f"{type(value).__name__}, which the driver would not store as it "
                        f"is; convert it first ({hint})"
                    )

    def _differs(self, index: int, row: Any, columns: Sequence[str]) -> str:
        if not isinstance(row, Mapping):
            return (
                f"{self.__qualname__}: {self._key}[{index}] is a {type(row).__name__}, but "
                f"{self._key}[0] is a dict; give rows of one kind"
            )
        if self._columns is not None:
            missing = sorted(set(columns) - row.keys())
            return (
                f"{self.__qualname__}: {self._key}[{index}] lacks column(s) {missing} named in "
                f"columns={list(columns)}"
            )
        return (
            f"{self.__qualname__}: {self._key}[{index}] has keys {sorted(row)} but "
            f"{self._key}[0] has {sorted(columns)}; every row must have the same keys "
            "(give missing values as None)"
        )

    async def _keys(self, conn: Any) -> frozenset[str]:
        """The table's columns that belong to a primary or unique key (lower case)."""
        if self._key_columns is not None:
            return self._key_columns
        async with conn.cursor() as cur:
            await cur.execute(_KEY_COLUMNS, (self._schema or None, self._table_name))
            found = frozenset(str(row[0]).lower() for row in await cur.fetchall())
        if found:  # a table without keys is looked up again: it may get one later
            self._key_columns = found
        return found

    def _statement(self, columns: tuple[str, ...], keys: frozenset[str]) -> str:
        statement = self._statements.get(columns)
        if statement is not None:
            return statement
        quoted = [f"`{column}`" for column in columns]
        verb = {
            "insert": "INSERT",
            "ignore": "INSERT IGNORE",
            "upsert": "INSERT",
            "replace": "REPLACE",
        }[self._mode]
        # The shape aiomysql's executemany() rewrites into multi-row INSERTs:
        # "<INSERT|REPLACE> ... VALUES (%s, ...)" optionally followed by "ON DUPLICATE ...".
        statement = (
            f"{verb} INTO {self._table} ({', '.join(quoted)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))})"
        )
        if self._mode == "upsert":
            update = [q for c, q in zip(columns, quoted, strict=True) if c.lower() not in keys]
            # VALUES(col) (no space before the parenthesis, so aiomysql's pattern still
            # finds the one VALUES list) is the row being inserted; MariaDB 10.11 has no
            # "AS new" row alias. With only key columns given, a no-op keeps the old row.
            assignments = [f"{q}=VALUES({q})" for q in update] or [f"{quoted[0]}={quoted[0]}"]
            statement += " ON DUPLICATE KEY UPDATE " + ", ".join(assignments)
            if self._key_columns is None:  # keys not known for sure: do not cache
                return statement
        self._statements[columns] = statement
        return statement

    async def __call__(self, **kwargs: Any) -> dict[str, Any]:
        if self._key not in kwargs:
            raise StepArgumentError(f"{self.__qualname__}: missing value for {self._key}")
        columns, values = self._tuples(kwargs[self._key])
        if not values:
            return {"rowcount": 0}
        self._check_values(columns, values)
        record = current_record()
        if record is not None and record.writer is self:  # exactly once, see docs/durable.md
            written: dict[str, Any] = await self._write_with_position(columns, values, record)
            return written
        rowcount = 0
        async with self.connection() as conn:
            rowcount = await self._insert(conn, columns, values)
            await conn.commit()
        return {"rowcount": rowcount}

    async def _insert(
        self, conn: Any, columns: tuple[str, ...], values: Sequence[Sequence[Any]]
    ) -> int:
        """Begin a transaction on ``conn`` and write the rows in it (not committed)."""
        size = self._batch_size
        cursor = _QuietCursor if self._mode == "ignore" else aiomysql.Cursor
        rowcount = 0
        keys = await self._keys(conn) if self._mode == "upsert" else frozenset()
        statement = self._statement(columns, keys)
        await conn.begin()
        async with conn.cursor(cursor) as cur:
            for start in range(0, len(values), size):
                rowcount += await cur.executemany(statement, values[start : start + size])
        return rowcount

    async def _write_with_position(
        self, columns: tuple[str, ...], values: Sequence[Sequence[Any]], record: RecordCommit
    ) -> dict[str, Any]:
        """Exactly once: the rows and the record's position in one transaction, committed
        in the record's turn. When the COMMIT's outcome is unknown (the connection went
        away after sending it), the committed position tells whether it landed."""
        store = record.store
        if record.unsure:  # an earlier attempt's COMMIT may have landed: the store says
            if await store.holds(record.name, record.path, record.position):
                record.committed()
                return {"rowcount": len(values)}
            record.unsure = False
        pool = await self._pool()
        # records ahead of their turn hold a connection while they wait: leave one free
        # for the oldest, which never waits
        await record.wait_turn(ahead=max(int(getattr(pool, "maxsize", 2)) - 2, 0))
        sent = False
        rowcount = 0
        try:
            async with self.connection() as conn:
                rowcount = await self._insert(conn, columns, values)
                await record.wait_turn()
                await store.commit_in(conn, record.name, record.positions)
                sent = True
                await conn.commit()
        except Exception:
            if not sent:
                raise
            record.unsure = True  # until the store has answered
            if not await store.holds(record.name, record.path, record.position):
                record.unsure = False
                raise
        record.committed()
        return {"rowcount": rowcount}

    def joins_checkpoint(self, store: Any) -> bool:
        """Whether this writer commits its rows with the record's position: ``store`` is
        a ``mysql.checkpoints`` on the same server and database (see docs/durable.md)."""
        from ._durable import MySQLCheckpoints

        return isinstance(store, MySQLCheckpoints) and store.place() == self.place()


def reader(
    query: str,
    *,
    url: str | None = None,
    pool: Any = None,
    key: str = DATA,
    chunk_size: int | None = None,
    resume_by: str | None = None,
) -> Reader:
    """A step that runs ``query`` and returns ``{"data": [dict, ...]}`` (``{key: ...}``
    with ``key=``).

    ``resume_by="column"`` (with ``chunk_size=``): the query's result ordered by that
    unique column; each record's position is its last value of the column, and in a
    flow with ``checkpoint=`` the reader continues after the last committed one
    (``SELECT * FROM (<query>) q WHERE column > <position> ORDER BY column``).

    The query's named placeholders (``%(last_id)s``) are the step's parameters; their
    values are always sent as parameters, never formatted into the text.

    ``chunk_size=N``: the step is a source (an async generator function) that streams
    the rows through an unbuffered server-side cursor and yields ``{"data": [...]}``
    records of at most N rows; its connection is held while the stream runs and goes back
    to the pool clean when the source ends, fails or is closed. See docs/mysql.md.
    """
    if chunk_size is not None:
        return ChunkedReader(query, url, pool, key, chunk_size, resume_by)
    if resume_by is not None:
        raise DataFlowDefinitionError("mysql.reader(): resume_by= needs chunk_size=")
    return Reader(query, url, pool, key)


def writer(
    table: str,
    *,
    url: str | None = None,
    pool: Any = None,
    columns: Sequence[str] | None = None,
    mode: Mode = "insert",
    batch_size: int = 1000,
    key: str = DATA,
) -> Writer:
    """A step taking ``data`` (``key=`` names another parameter): rows as dicts, or
    tuples in the order of ``columns``, written into ``table`` in one transaction; returns
    ``{"rowcount": n}``."""
    return Writer(table, url, pool, columns, mode, batch_size, key)


def execute(statement: str, *, url: str | None = None, pool: Any = None) -> Execute:
    """A step that runs any other statement (DDL, DELETE, UPDATE, ...) and returns
    ``{"rowcount": n}``; its named placeholders are the step's parameters."""
    return Execute(statement, url, pool)
