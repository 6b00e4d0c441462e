"""What every MySQL step shares: the connection URL, identifier checks, named
placeholders, and one aiomysql pool per step object and event loop."""

from __future__ import annotations

import asyncio
import contextlib
import keyword
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

try:
    import aiomysql as aiomysql  # type: ignore[import-untyped]  # re-exported to _steps
    import pymysql as pymysql  # type: ignore[import-untyped]
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'asyncdataflow.plugins.mysql needs aiomysql and PyMySQL: pip install "asyncdataflow[mysql]"'
    ) from error

from asyncdataflow._pickling import PicklesAsConfig
from asyncdataflow.exceptions import DataFlowDefinitionError

from .._errors import PackDefinitionError, StepArgumentError
from .._vocab import USERINFO_HINT, unencoded_userinfo, without_userinfo

#: aiomysql internals the pack relies on (pyproject bounds aiomysql to the series that
#: has them): Pool._wakeup, to wake a task waiting for a slot after a broken connection
#: is released; Cursor._show_warnings, overridden so INSERT IGNORE does not warn per row
PRIVATE_NAMES = (("Pool", "_wakeup"), ("Cursor", "_show_warnings"))


def check_aiomysql(module: Any = aiomysql) -> None:
    """Fail loudly, at import, when this aiomysql lacks a private name the pack uses."""
    missing = [
        f"aiomysql.{owner}.{name}"
        for owner, name in PRIVATE_NAMES
        if not hasattr(getattr(module, owner, None), name)
    ]
    if missing:
        version = getattr(module, "__version__", "?")
        raise ImportError(
            f"asyncdataflow.plugins.mysql relies on {', '.join(missing)}, which aiomysql "
            f"{version} does not have; install a release it supports: "
            f'pip install "aiomysql>=0.2,<0.4"'
        )


check_aiomysql()


#: A name MySQL could take unquoted, and nothing else: it is then backtick-quoted.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,63}")

# ``%%`` (a literal percent), ``%(name)s`` (a named placeholder) or a bare ``%s``.
_PLACEHOLDER = re.compile(r"%%|%\(([^)]*)\)s|%s")

_SCHEMES = ("mysql", "mariadb", "mysql+aiomysql")
# URL query options: name -> converter. Anything else is refused.
_URL_OPTIONS: dict[str, type] = {
    "charset": str,
    "minsize": int,
    "maxsize": int,
    "pool_recycle": float,
    "connect_timeout": float,
}


def check_identifier(step: str, what: str, name: object) -> str:
    """``name`` quoted with backticks, or ``ValueError`` if it is not a plain name."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise StepArgumentError(
            f"{step}: {what} {name!r} is not an identifier this step accepts; use letters, "
            "digits, '_' or '$' (not starting with a digit, at most 64 characters)"
        )
    return f"`{name}`"


def quote_table(step: str, table: object) -> str:
    """``table`` or ``schema.table`` checked and quoted; raises ``DataFlowDefinitionError``."""
    if not isinstance(table, str):
        raise DataFlowDefinitionError(f"{step}: table must be a str, not {type(table).__name__}")
    parts = table.split(".")
    if len(parts) > 2:
        raise DataFlowDefinitionError(
            f"{step}: table {table!r} has more than one '.'; write 'table' or 'schema.table'"
        )
    try:
        return ".".join(check_identifier(step, "table name part", part) for part in parts)
    except ValueError as error:
        raise DataFlowDefinitionError(str(error)) from None


def placeholders(step: str, statement: object) -> tuple[str, ...]:
    """The named placeholders of ``statement`` in first-seen order.

    Raises ``DataFlowDefinitionError`` for a statement that is not a str, a positional
    ``%s`` (a flow passes values by name) or a name that cannot be a parameter.
    """
    if not isinstance(statement, str) or not statement.strip():
        raise DataFlowDefinitionError(f"{step}: the statement must be a non-empty str")
    names: dict[str, None] = {}
    for match in _PLACEHOLDER.finditer(statement):
        token = match.group(0)
        if token == "%%":
            continue
        if token == "%s":
            raise DataFlowDefinitionError(
                f"{step}: positional placeholder %s in {statement!r}; name every value, "
                "e.g. %(last_id)s, so the flow can pass it by name (write %% for a literal %)"
            )
        name = match.group(1)
        if not name.isidentifier() or keyword.iskeyword(name):
            raise DataFlowDefinitionError(
                f"{step}: placeholder %({name})s is not a Python identifier; rename it"
            )
        names[name] = None
    return tuple(names)


def short(text: str, limit: int = 80) -> str:
    """One line, at most ``limit`` characters, for display names."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_url(step: str, url: str) -> tuple[dict[str, Any], str]:
    """aiomysql ``create_pool`` keyword arguments from ``url``, and the URL without its
    password for display. Raises ``DataFlowDefinitionError``; never shows the password."""
    if not isinstance(url, str):
        raise DataFlowDefinitionError(f"{step}: url must be a str, not {type(url).__name__}")
    if unencoded_userinfo(url):
        raise PackDefinitionError(
            f"{step}: the url {without_userinfo(url)!r} is refused: {USERINFO_HINT}"
        )
    try:
        parts = urlsplit(url)
        port = parts.port or 3306
    except ValueError:
        raise DataFlowDefinitionError(
            f"{step}: url is not of the form mysql://user:password@host:3306/db"
        ) from None
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise DataFlowDefinitionError(
            f"{step}: url must look like mysql://user:password@host:3306/db?charset=utf8mb4 "
            f"(scheme one of {', '.join(_SCHEMES)})"
        )
    kwargs: dict[str, Any] = {
        "host": parts.hostname,
        "port": port,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else "",
        "db": unquote(parts.path.lstrip("/")) or None,
        "charset": "utf8mb4",
        "autocommit": False,
    }
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        convert = _URL_OPTIONS.get(name)
        if convert is None:
            raise DataFlowDefinitionError(
                f"{step}: unknown url option {name!r}; known: {', '.join(_URL_OPTIONS)} "
                "(for anything else create an aiomysql pool yourself and pass pool=)"
            )
        try:
            kwargs[name] = convert(value)
        except ValueError:
            raise DataFlowDefinitionError(
                f"{step}: url option {name}={value!r} is not a valid {convert.__name__}"
            ) from None
    user = f"{kwargs['user']}@" if kwargs["user"] else ""
    db = f"/{kwargs['db']}" if kwargs["db"] else ""
    return kwargs, f"{parts.scheme}://{user}{parts.hostname}:{port}{db}"


# Server errors after which the server closes the connection: shutdown in progress,
# connection killed (MariaDB), client idle too long (MySQL 8).
_CONNECTION_ENDED = frozenset({1053, 1927, 4031})


def is_server_error(error: BaseException) -> bool:
    """An error the server reported with an error packet: the connection is still in
    step with the server and can be rolled back and reused. Client errors (2000-2999:
    lost connection, server gone away) and anything else mean it cannot."""
    if not isinstance(error, pymysql.err.MySQLError) or not error.args:
        return False
    code = error.args[0]
    if not isinstance(code, int) or code <= 0 or 2000 <= code < 3000:
        return False
    return code not in _CONNECTION_ENDED


#: Seconds the clean-up after a cancelled call may take to reach the server.
KILL_TIMEOUT = 5.0
_UNKNOWN_THREAD = 1094


def _thread_id(conn: Any) -> int | None:
    try:
        return int(conn.thread_id())
    except Exception:
        return None


async def _end_on_server(pool: Any, thread_id: int) -> None:
    """End what the server still runs for a connection this side gave up on (a call
    cancelled or timed out while a statement waited for a row lock, say): closing the
    socket is not enough, since the server does not read it while the statement waits.
    ``KILL <id>`` from another connection ends the statement and the connection, which
    rolls back its transaction and releases its locks."""
    kwargs = getattr(pool, "_conn_kwargs", None)
    if not kwargs:
        return
    try:
        async with asyncio.timeout(KILL_TIMEOUT):
            killer = await aiomysql.connect(**{**kwargs, "autocommit": True})
            try:
                async with killer.cursor() as cur:
                    await cur.execute(f"KILL {int(thread_id)}")
            finally:
                await killer.ensure_closed()
    except pymysql.err.MySQLError as error:
        if error.args and error.args[0] == _UNKNOWN_THREAD:
            return  # the server had ended it already
    except (OSError, TimeoutError):
        return  # the server cannot be reached: it ends the connection on its own


async def _shielded(coro: Any) -> None:
    """Run ``coro`` to its end even if the caller is cancelled again meanwhile."""
    task = asyncio.ensure_future(coro)
    _cleanups.add(task)
    task.add_done_callback(_cleanups.discard)
    with contextlib.suppress(BaseException):
        await asyncio.shield(task)


_cleanups: set[asyncio.Future[None]] = set()


async def give_back(pool: Any, conn: Any) -> None:
    """Return ``conn`` to ``pool`` (a closed one frees its slot)."""
    closed = conn.closed
    await pool.release(conn)
    if closed:
        # aiomysql's release() of a closed connection frees its slot without
        # waking a task waiting for one (maxsize reached); wake it here.
        await pool._wakeup()  # checked at import (check_aiomysql)


class MySQLStep(PicklesAsConfig):
    """Base of the MySQL steps: owns one pool per event loop unless given a pool."""

    _kind = "mysql"

    def __init__(self, step: str, url: str | None, pool: Any) -> None:
        if (url is None) == (pool is None):
            raise DataFlowDefinitionError(
                f"{step}: give exactly one of url='mysql://user:password@host:3306/db' "
                "or pool=<an aiomysql pool>"
            )
        self.__qualname__ = step
        self._pool_kwargs: dict[str, Any] | None = None
        self._where = "pool"
        if url is not None:
            self._pool_kwargs, self._where = parse_url(step, url)
        self._user_pool = pool
        self._pools: dict[asyncio.AbstractEventLoop, Any] = {}
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"<{self.__qualname__} on {self._where}>"

    async def _pool(self) -> Any:
        if self._user_pool is not None:
            return self._user_pool
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is not None:
            return pool
        lock = self._locks.setdefault(loop, asyncio.Lock())
        async with lock:
            pool = self._pools.get(loop)
            if pool is None:
                for other in [other for other in self._pools if other.is_closed()]:
                    del self._pools[other]
                    self._locks.pop(other, None)
                pool = await aiomysql.create_pool(**(self._pool_kwargs or {}))
                self._pools[loop] = pool
        return pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A connection from the pool, given back healthy or not at all.

        On a server error the transaction is rolled back and the connection reused; on
        anything else (lost connection, cancellation, a failed rollback) it is closed
        before it goes back, so the pool never hands out a broken connection.
        """
        pool = await self._pool()
        conn = await pool.acquire()
        try:
            yield conn
        except BaseException as error:
            healthy = False
            if isinstance(error, Exception) and is_server_error(error) and not conn.closed:
                try:
                    await conn.rollback()
                    healthy = True
                except Exception:
                    healthy = False
            if not healthy:
                thread_id = _thread_id(conn)
                conn.close()
                if thread_id is not None:
                    await _shielded(_end_on_server(pool, thread_id))
            raise
        finally:
            await give_back(pool, conn)

    def place(self) -> tuple[Any, ...]:
        """Where the step's statements run: (host, port, database), or the pool object.
        Two steps with the same place can share a transaction."""
        kw = self._pool_kwargs
        if kw is None:
            return (id(self._user_pool),)
        return (kw.get("host"), kw.get("port"), kw.get("db"))

    async def aclose(self) -> None:
        """Close the pool this step created in the running loop (a pool given with
        ``pool=`` is left open). The step may be used again afterwards."""
        if self._user_pool is not None:
            return
        loop = asyncio.get_running_loop()
        pool = self._pools.pop(loop, None)
        self._locks.pop(loop, None)
        for other in [other for other in self._pools if other.is_closed()]:
            del self._pools[other]
            self._locks.pop(other, None)
        if pool is not None:
            await pool.clear()  # free connections say goodbye (COM_QUIT) before closing
            pool.close()
            await pool.wait_closed()
