"""Checkpoints and dead letters in MySQL tables.

``checkpoints(url=..., table=...)`` keeps one row per flow name; a ``mysql.writer`` in a
flow whose store is on the same server and database can write its rows and the record's
position in one transaction (:meth:`MySQLCheckpoints.commit_in`), which is what makes a
restarted flow write every record exactly once. ``dead_letters(url=..., table=...)`` keeps
one row per letter. Both create their table when it is missing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from asyncdataflow.durable import DeadLetter, check_name, check_position

from ._common import MySQLStep, quote_table
from ._steps import _QuietCursor

__all__ = ["MySQLCheckpoints", "MySQLDeadLetters", "checkpoints", "dead_letters"]


class _TableStore(MySQLStep):
    """A MySQL step that owns one table, created on first use in each event loop."""

    _ddl = ""
    _step = ""  # how a user built it, e.g. "mysql.checkpoints()"

    def __init__(self, url: str | None, table: str, pool: Any) -> None:
        super().__init__(self._step, url, pool)
        self.table = quote_table(self._step, table)
        self._ready: set[asyncio.AbstractEventLoop] = set()

    async def _ensure(self, conn: Any) -> None:
        loop = asyncio.get_running_loop()
        if loop in self._ready:
            return
        # "IF NOT EXISTS" on an existing table is a server warning, not news
        async with conn.cursor(_QuietCursor) as cur:
            await cur.execute(self._ddl.format(table=self.table))
        await conn.commit()
        self._ready = {lp for lp in self._ready if not lp.is_closed()} | {loop}


class MySQLCheckpoints(_TableStore):
    """A checkpoint store in a MySQL table: one row per flow name."""

    _ddl = (
        "CREATE TABLE IF NOT EXISTS {table} ("
        " name VARCHAR(191) NOT NULL PRIMARY KEY,"
        " positions LONGTEXT NOT NULL,"
        " updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
        "  ON UPDATE CURRENT_TIMESTAMP(6)"
        ") CHARACTER SET utf8mb4"
    )
    _step = "mysql.checkpoints()"

    async def load(self, name: str) -> dict[str, Any]:
        check_name(self.__qualname__, name)
        return await self._read(name)

    async def _read(self, name: str, lock: bool = False) -> dict[str, Any]:
        """The positions stored under ``name``; ``lock``: a locking read, which waits for
        a transaction that wrote them and has not ended yet."""
        query = f"SELECT positions FROM {self.table} WHERE name = %s"
        async with self.connection() as conn:
            await self._ensure(conn)
            async with conn.cursor() as cur:
                await cur.execute(query + " FOR UPDATE" if lock else query, (name,))
                row = await cur.fetchone()
            await conn.commit()  # end the read's transaction: later reads see new commits
        if row is None:
            return {}
        value = json.loads(row[0])
        return dict(value) if isinstance(value, dict) else {}

    def _upsert(self, name: str, positions: Mapping[str, Any]) -> tuple[str, tuple[str, str]]:
        check_name(self.__qualname__, name)
        value = {k: check_position(self.__qualname__, k, v) for k, v in positions.items()}
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        statement = (
            f"INSERT INTO {self.table} (name, positions) VALUES (%s, %s) "
            f"ON DUPLICATE KEY UPDATE positions = VALUES(positions)"
        )
        return statement, (name, text)

    async def commit(self, name: str, positions: Mapping[str, Any]) -> None:
        statement, args = self._upsert(name, positions)
        async with self.connection() as conn:
            await self._ensure(conn)
            async with conn.cursor() as cur:
                await cur.execute(statement, args)
            await conn.commit()

    async def holds(self, name: str, path: str, position: Any) -> bool:
        """Whether the position committed for ``path`` under ``name`` is ``position``.

        A locking read on a fresh connection: a transaction that wrote the positions and
        whose COMMIT is still under way (its connection lost, its outcome unknown) holds
        the row until it has committed or rolled back, so the answer is final.
        """
        stored = await self._read(name, lock=True)
        return path in stored and _same(stored[path], position)

    async def commit_in(self, conn: Any, name: str, positions: Mapping[str, Any]) -> None:
        """Write the positions in the caller's open transaction on ``conn`` (a connection
        to the same database); the caller commits. The table must exist: call
        :meth:`load` first (a flow does, when a run starts)."""
        statement, args = self._upsert(name, positions)
        async with conn.cursor() as cur:
            await cur.execute(statement, args)


class MySQLDeadLetters(_TableStore):
    """A dead-letter sink in a MySQL table: one row per letter."""

    _ddl = (
        "CREATE TABLE IF NOT EXISTS {table} ("
        " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
        " flow VARCHAR(191) NOT NULL,"
        " step VARCHAR(255) NOT NULL,"
        " letter LONGTEXT NOT NULL,"
        " created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
        " KEY flow (flow)"
        ") CHARACTER SET utf8mb4"
    )
    _step = "mysql.dead_letters()"

    async def put(self, letter: DeadLetter) -> None:
        async with self.connection() as conn:
            await self._ensure(conn)
            async with conn.cursor() as cur:
                await cur.execute(
                    f"INSERT INTO {self.table} (flow, step, letter) VALUES (%s, %s, %s)",
                    (letter.flow[:191], letter.step[:255], letter.to_json()),
                )
            await conn.commit()

    async def letters(self) -> AsyncIterator[DeadLetter]:
        last = 0
        while True:  # in pages by id: no result set stays open between letters
            async with self.connection() as conn:
                await self._ensure(conn)
                async with conn.cursor() as cur:
                    await cur.execute(
                        f"SELECT id, letter FROM {self.table} WHERE id > %s ORDER BY id LIMIT 500",
                        (last,),
                    )
                    rows = await cur.fetchall()
                await conn.commit()
            if not rows:
                return
            for row_id, text in rows:
                last = row_id
                yield DeadLetter.from_json(text, id=str(row_id))

    async def remove(self, ids: Iterable[str]) -> None:
        numbers = sorted({int(i) for i in ids})
        if not numbers:
            return
        async with self.connection() as conn:
            await self._ensure(conn)
            async with conn.cursor() as cur:
                for start in range(0, len(numbers), 1000):
                    chunk = numbers[start : start + 1000]
                    marks = ", ".join(["%s"] * len(chunk))
                    await cur.execute(f"DELETE FROM {self.table} WHERE id IN ({marks})", chunk)
            await conn.commit()


def _same(stored: Any, position: Any) -> bool:
    """JSON's view of a position: a tuple is stored as a list."""
    dump = json.dumps
    return bool(dump(stored, sort_keys=True) == dump(position, sort_keys=True))


def checkpoints(
    *, url: str | None = None, table: str = "asyncdataflow_checkpoints", pool: Any = None
) -> MySQLCheckpoints:
    """A checkpoint store in the MySQL table ``table`` (created if missing). With a
    ``mysql.writer`` on the same server and database, records are written exactly once
    across restarts. See docs/durable.md."""
    return MySQLCheckpoints(url, table, pool)


def dead_letters(
    *, url: str | None = None, table: str = "asyncdataflow_dead_letters", pool: Any = None
) -> MySQLDeadLetters:
    """A dead-letter sink in the MySQL table ``table`` (created if missing). See
    docs/durable.md."""
    return MySQLDeadLetters(url, table, pool)
