"""``asyncdataflow replay``: run a flow's dead letters again (``flow.replay``), remove the
ones that now succeed, and say how many still fail."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..exceptions import DataFlowDefinitionError
from ..flow import DataFlow
from .commands import Commands, add_command
from .errors import PROG, UsageError
from .output import error_record, to_json
from .signals import stop_on_signals
from .target import close_flow, load_flow

__all__ = ["register"]

#: the URL schemes of ``asyncdataflow.plugins.mysql`` (anything else with ``://`` is
#: refused; without ``://`` the argument is a file path)
MYSQL_SCHEMES = ("mysql", "mariadb", "mysql+aiomysql")


def register(commands: Commands) -> None:
    replay = add_command(
        commands,
        "replay",
        handle,
        target_help="the flow that wrote the letters (its name= picks them), or a function "
        "with no arguments that returns it",
    )
    replay.add_argument(
        "--dead-letters",
        required=True,
        metavar="FILE.jsonl | mysql://...",
        help="the sink: a JSON Lines file (files.dead_letters) or a MySQL URL "
        "mysql://user:password@host:3306/db (mysql.dead_letters)",
    )
    replay.add_argument(
        "--table",
        metavar="NAME",
        help="with a mysql:// URL: the table of letters (default asyncdataflow_dead_letters)",
    )


def handle(args: argparse.Namespace) -> int:
    """run a flow's dead letters again; remove the ones that now succeed

    Run the dead letters of MODULE:ATTR (those written under its name=) through the flow
    again, remove the ones that now succeed, print how many did and how many still fail
    (each on stderr as a JSON line). Exit 0 when none still fails, 1 when some do (they
    stay in the sink).
    """
    return asyncio.run(_replay(args))


@dataclass
class _Sink:
    """The opened sink and how to name it in messages (no password)."""

    sink: Any
    label: str
    table: tuple[str | None, str] | None = None  # MySQL: (schema, table), checked to exist


def _pack(name: str, given: str) -> Any:
    """``asyncdataflow.plugins.<name>``; a missing extra is a usage error naming it."""
    try:
        return importlib.import_module(f"asyncdataflow.plugins.{name}")
    except ImportError as error:
        raise UsageError(f"--dead-letters {given}: {error}") from None


def _open_sink(where: str, table: str | None) -> _Sink:
    scheme, is_url, _ = where.partition("://")
    if is_url:
        if scheme.lower() not in MYSQL_SCHEMES:
            raise UsageError(
                f"--dead-letters: a {scheme}:// URL is not a sink this command opens; give "
                f"a JSON Lines file or a MySQL URL, mysql://user:password@host:3306/db"
            )
        mysql = _pack("mysql", f"{scheme}://...")
        options = {} if table is None else {"table": table}
        try:
            sink = mysql.dead_letters(url=where, **options)
        except DataFlowDefinitionError as error:
            raise UsageError(f"--dead-letters: {error}") from None
        parts = [part.strip("`") for part in sink.table.split(".")]
        schema, name = (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
        where = getattr(sink, "_where", "the server")  # the URL without its password
        return _Sink(sink, f"table {sink.table} on {where}", (schema, name))
    if table is not None:
        raise UsageError(
            f"--table {table}: names a MySQL table; it goes with a mysql:// URL, not with "
            f"the file {where!r}"
        )
    if not os.path.exists(where):
        raise UsageError(
            f"--dead-letters {where!r}: no such file (a sink's file is created with its "
            f"first letter; give the path the flow's files.dead_letters(...) writes)"
        )
    if not os.path.isfile(where):
        raise UsageError(f"--dead-letters {where!r}: not a file; give a JSON Lines file")
    return _Sink(_pack("files", where).dead_letters(where), where)


async def _check_table(opened: _Sink) -> None:
    """A MySQL sink creates its table when it is missing: a mistyped --table would
    replay nothing and leave an empty table behind. Refuse it instead."""
    assert opened.table is not None
    schema, name = opened.table
    async with opened.sink.connection() as conn:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT COUNT(*) FROM information_schema.tables "
                "WHERE table_schema = COALESCE(%s, DATABASE()) AND table_name = %s",
                (schema, name),
            )
            (found,) = await cur.fetchone()
        await conn.commit()
    if not found:
        raise UsageError(
            f"--dead-letters: there is no {opened.label} (no letter was ever written "
            f"there); give the table the flow's mysql.dead_letters(table=...) writes with "
            f"--table"
        )


def _check_flow(flow: DataFlow, target: str) -> None:
    if flow.infinity_loop:
        raise UsageError(
            f"{target} is an infinity loop; replay runs the flow once per letter: point at "
            f"a flow (or factory) without infinity_loop=True"
        )
    if flow.name == f"DataFlow@{id(flow):x}":
        raise UsageError(
            f"{target} has no name=: letters are kept under the name of the flow that "
            f"wrote them; give the flow DataFlow(..., name='...')"
        )


async def _replay(args: argparse.Namespace) -> int:
    flow = load_flow(args.target)
    try:
        _check_flow(flow, args.target)
        opened = _open_sink(args.dead_letters, args.table)
    except UsageError:
        await close_flow(flow)
        raise
    try:
        if opened.table is not None:
            await _check_table(opened)
        code = await _run(flow, opened)
    except UsageError:
        raise
    except Exception as error:
        print(
            f"{PROG} replay: replaying the dead letters in {opened.label} failed: "
            f"{_one_line(error)}",
            file=sys.stderr,
        )
        code = 1
    finally:
        closed = await close_flow(flow)
        closed = await _close_sink(opened) and closed
    return code or (0 if closed else 1)


def _one_line(error: BaseException) -> str:
    record = error_record(error)
    return f"{record['type']}: {record['message']}"


async def _close_sink(opened: _Sink) -> bool:
    try:
        await opened.sink.aclose()
    except Exception as error:
        print(f"{PROG}: closing {opened.label} failed: {_one_line(error)}", file=sys.stderr)
        return False
    return True


async def _run(flow: DataFlow, opened: _Sink) -> int:
    """Replay; print the summary and the letters that still fail; the exit code."""
    task = asyncio.get_running_loop().create_task(flow.replay(opened.sink))
    with stop_on_signals(task, None) as received:
        try:
            result = await task
        except asyncio.CancelledError:
            if not received:
                raise
            print(
                f"{PROG} replay: {signal.Signals(received[-1]).name}: replay cancelled; no "
                f"letter was removed (the ones already replayed run again next time)",
                file=sys.stderr,
            )
            return 128 + received[-1]
    for letter, error in result.failed:
        failure = {
            "letter": letter.id,
            "step": letter.step,
            "path": letter.path,
            "input": letter.input,
            "error": error_record(error),
        }
        print(to_json(failure, ensure_ascii=True), file=sys.stderr)
    print(
        f"{PROG} replay: flow {flow.name!r}: replayed {result.succeeded}, still failing "
        f"{len(result.failed)} ({opened.label})",
        flush=True,
    )
    if not result.succeeded and not result.failed:
        await _say_whose_letters(flow, opened)
    return 1 if result.failed else 0


async def _say_whose_letters(flow: DataFlow, opened: _Sink) -> None:
    """Nothing was replayed: say which flows the sink holds letters of, if any."""
    others = Counter([letter.flow async for letter in opened.sink.letters()])
    if others:
        listing = ", ".join(f"{name!r} ({count})" for name, count in others.most_common(5))
        print(
            f"{PROG} replay: no letter of flow {flow.name!r}; the sink holds letters of "
            f"{listing}: replay them with the flow of that name",
            file=sys.stderr,
        )
