"""The MySQL/MariaDB server the mysql tests talk to, and helpers for them.

The server is named by ``ASYNCDATAFLOW_MYSQL_URL`` (default
``mysql://root@127.0.0.1:3306/test``). With no server there, the tests that need one are
skipped with a reason saying how to get one, except under ``CI=true``, where they fail.
Each test makes uniquely named tables (and users) and drops them afterwards.

The fixtures ``mysql_url`` and ``tables`` live in ``conftest.py``; test modules import
only the helpers they call.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pymysql  # type: ignore[import-untyped]
import pytest

DEFAULT_URL = "mysql://root@127.0.0.1:3306/test"
URL = os.environ.get("ASYNCDATAFLOW_MYSQL_URL", DEFAULT_URL)
#: Where nothing listens: a step pointed here proves it did no I/O when it raises a
#: ValueError instead of a connection error.
NOWHERE = "mysql://nobody:never@127.0.0.1:1/none"

_reason: list[str | None] = []


def connect_kwargs(url: str = URL) -> dict[str, Any]:
    """pymysql.connect() keyword arguments for ``url``."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.lstrip("/")) or None,
        "charset": "utf8mb4",
        "autocommit": True,
    }


def unreachable() -> str | None:
    """Why the server cannot be used, or None when it answers (asked once per session)."""
    if not _reason:
        try:
            pymysql.connect(connect_timeout=3, **connect_kwargs()).close()
            _reason.append(None)
        except Exception as error:
            _reason.append(
                f"no MySQL/MariaDB server at ASYNCDATAFLOW_MYSQL_URL={URL!r} ({error}). "
                "Start one (e.g. `start-stop-daemon --start --oknodo --background "
                "--exec /usr/sbin/mariadbd`, or `docker run -e MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1 "
                "-e MARIADB_DATABASE=test -p 3306:3306 mariadb:10.11`) or point "
                "ASYNCDATAFLOW_MYSQL_URL at one: mysql://user:password@host:3306/db"
            )
    return _reason[0]


def require_server() -> str:
    """The server URL; skips the test when there is none (fails it when CI=true)."""
    reason = unreachable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return URL


def sql(statement: str, args: Any = None, url: str = URL) -> list[tuple[Any, ...]]:
    """Run one statement on a fresh autocommit connection; its rows."""
    conn = pymysql.connect(**connect_kwargs(url))
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def unique(prefix: str) -> str:
    return f"adf_{prefix}_{uuid.uuid4().hex[:10]}"


@dataclass
class Tables:
    """Creates uniquely named tables; drops them (and users made here) at teardown."""

    url: str
    made: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)

    def create(self, columns: str, prefix: str = "t") -> str:
        name = unique(prefix)
        sql(f"CREATE TABLE `{name}` ({columns}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
        self.made.append(name)
        return name

    def name(self, prefix: str = "t") -> str:
        """A fresh name for a table the test creates itself; dropped at teardown."""
        name = unique(prefix)
        self.made.append(name)
        return name

    def user(self) -> tuple[str, str]:
        """A new user with all rights on the test database: (its name, a URL with a
        password full of URL-special characters)."""
        name = unique("u")[:32]
        password = f"p@ss:w/rd%?#{uuid.uuid4().hex[:6]}"
        parts = urlsplit(self.url)
        db = parts.path.lstrip("/") or "test"
        for host in ("%", "localhost", "127.0.0.1"):
            quoted = host.replace("%", "%%")  # the statement goes through % formatting
            sql(f"CREATE USER '{name}'@'{quoted}' IDENTIFIED BY %s", (password,))
            sql(f"GRANT ALL ON `{db}`.* TO '{name}'@'{host}'")
        self.users.append(name)
        url = (
            f"mysql://{name}:{quote(password, safe='')}@{parts.hostname}:{parts.port or 3306}/{db}"
        )
        return name, url

    def drop(self) -> None:
        for name in self.made:
            sql(f"DROP TABLE IF EXISTS `{name}`")
        for name in self.users:
            for host in ("%", "localhost", "127.0.0.1"):
                sql(f"DROP USER IF EXISTS '{name}'@'{host}'")


def connections_of(user: str) -> list[int]:
    """Ids of the server connections open for ``user``, seen from a separate session."""
    rows = sql("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (user,))
    return sorted(row[0] for row in rows)


async def until_no_connections(user: str, timeout: float = 5.0) -> list[int]:
    """Wait (the server notices a closed connection a moment later) until ``user`` has no
    connection open, or ``timeout`` passes; the ids still open."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (ids := connections_of(user)) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return ids


async def one_connection_pool(url: str = URL) -> Any:
    """An aiomysql pool of exactly one (autocommit) connection to ``url``."""
    import aiomysql  # type: ignore[import-untyped]

    parts = urlsplit(url)
    return await aiomysql.create_pool(
        minsize=1,
        maxsize=1,
        host=parts.hostname,
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        db=parts.path.lstrip("/"),
        charset="utf8mb4",
        autocommit=True,
    )
