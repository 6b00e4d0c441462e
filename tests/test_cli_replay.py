"""`asyncdataflow replay MODULE:ATTR --dead-letters PATH_OR_URL [--table NAME]`
(docs/cli.md): the flow's dead letters in a JSON Lines file or a MySQL table run again;
those that succeed are removed, the others stay and the exit code says so. Run in this
process through the `cli` fixture, against real files and the real MariaDB."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cli_flows
import pytest
from _mysql_server import Tables, sql
from cli_harness import Cli

from asyncdataflow.durable import DeadLetter
from asyncdataflow.plugins import files, mysql

TEXTS = ["1", "three", "4", "seven", "5"]
CLI_DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


@pytest.fixture(autouse=True)
def broken() -> Iterator[None]:
    """Every test starts with the parse step knowing no word and nothing saved."""
    cli_flows.KNOWN_WORDS.clear()
    cli_flows.KEPT.clear()
    yield
    cli_flows.KNOWN_WORDS.clear()
    cli_flows.KEPT.clear()


def fix(*words: str) -> None:
    cli_flows.KNOWN_WORDS.update({w: {"three": 3, "seven": 7}[w] for w in words})


def write_letters(sink: Any) -> None:
    """Run the numbers flow with ``sink``: "three" and "seven" become letters."""

    async def go() -> None:
        async with cli_flows.make_numbers(sink) as flow:
            await flow(items=TEXTS)

    asyncio.run(go())
    assert cli_flows.KEPT == [1, 4, 5]
    cli_flows.KEPT.clear()


def letters(sink: Any) -> list[DeadLetter]:
    async def go() -> list[DeadLetter]:
        try:
            return [letter async for letter in sink.letters()]
        finally:
            await sink.aclose()

    return asyncio.run(go())


def sink_of(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Any, list[str]]:
    """A sink of ``kind`` and the command-line options that name it."""
    if kind == "file":
        path = tmp_path / "dead.jsonl"
        return files.dead_letters(path), ["--dead-letters", str(path)]
    tables: Tables = request.getfixturevalue("tables")
    table = tables.name("dead")
    return mysql.dead_letters(url=tables.url, table=table), [
        "--dead-letters",
        tables.url,
        "--table",
        table,
    ]


@pytest.mark.parametrize("kind", ["file", "mysql"])
def test_letters_stay_while_the_step_fails_and_go_once_it_is_fixed(
    cli: Cli, tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    sink, options = sink_of(kind, tmp_path, request)
    write_letters(sink)
    before = letters(sink)
    assert [x.input for x in before] == [{"text": "three"}, {"text": "seven"}]

    still = cli("replay", "cli_flows:numbers", *options)
    assert still.returncode == 1
    assert still.stdout.startswith(
        "asyncdataflow replay: flow 'numbers': replayed 0, still failing 2 ("
    )
    failures = [json.loads(line) for line in still.stderr.splitlines()]
    assert [(f["letter"], f["path"], f["input"]) for f in failures] == [
        (x.id, "definition[1]", x.input) for x in before
    ]
    assert [f["error"]["type"] for f in failures] == ["ValueError", "ValueError"]
    assert failures[0]["error"]["message"] == "not a number: 'three'"
    assert letters(sink) == before  # the same letters, none added, none removed
    assert cli_flows.KEPT == []

    fix("three", "seven")
    done = cli("replay", "cli_flows:numbers", *options)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "asyncdataflow replay: flow 'numbers': replayed 2, still failing 0 ("
    )
    assert done.stderr == ""
    assert letters(sink) == []
    assert cli_flows.KEPT == [3, 7]


def test_the_summary_names_the_file_or_the_table_without_the_password(
    cli: Cli, tmp_path: Path, tables: Tables
) -> None:
    path = tmp_path / "dead.jsonl"
    write_letters(files.dead_letters(path))
    fix("three", "seven")
    done = cli("replay", "cli_flows:numbers", "--dead-letters", str(path))
    assert done.stdout == (
        f"asyncdataflow replay: flow 'numbers': replayed 2, still failing 0 ({path})\n"
    )
    name, url = tables.user()
    table = tables.name("dead")
    cli_flows.KNOWN_WORDS.clear()
    cli_flows.KEPT.clear()
    write_letters(mysql.dead_letters(url=url, table=table))
    fix("three", "seven")
    done = cli("replay", "cli_flows:numbers", "--dead-letters", url, "--table", table)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"asyncdataflow replay: flow 'numbers': replayed 2, still failing 0 (table `{table}` "
        f"on mysql://{name}@127.0.0.1:3306/test)\n"
    )


def test_the_default_table_is_mysql_dead_letters_own(cli: Cli) -> None:
    default = inspect.signature(mysql.dead_letters).parameters["table"].default
    done = cli("replay", "--help")
    assert f"(default {default})" in " ".join(done.stdout.split())


def test_letters_of_other_flows_are_left_and_named(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    write_letters(files.dead_letters(path))
    before = letters(files.dead_letters(path))
    done = cli("replay", "cli_flows:greet", "--dead-letters", str(path))
    assert done.returncode == 0
    assert "flow 'greet': replayed 0, still failing 0" in done.stdout
    assert done.stderr == (
        "asyncdataflow replay: no letter of flow 'greet'; the sink holds letters of "
        "'numbers' (2): replay them with the flow of that name\n"
    )
    assert letters(files.dead_letters(path)) == before


def shown_replays() -> list[tuple[list[str], int]]:
    """Each `$ asyncdataflow replay` of docs/cli.md: the lines it shows, and the exit code
    the `$ echo $?` after it shows."""
    shown = []
    for block in re.findall(r"```console\n(.*?)```", CLI_DOC.read_text(), flags=re.S):
        if "$ asyncdataflow replay " not in block:
            continue
        lines = block.splitlines()
        echo = lines.index("$ echo $?")
        shown.append((lines[1:echo], int(lines[echo + 1])))
    return shown


def test_the_page_shows_what_the_command_prints(cli: Cli, tmp_path: Path) -> None:
    write_letters(files.dead_letters(tmp_path / "dead.jsonl"))
    shown = shown_replays()
    assert len(shown) == 2
    for word, (lines, code) in zip(["three", "seven"], shown, strict=True):
        fix(word)  # learnt before the first command shown, then before the second
        done = cli("replay", "cli_flows:numbers", "--dead-letters", "dead.jsonl", cwd=tmp_path)
        assert done.returncode == code
        assert done.stdout.splitlines() == [line for line in lines if not line.startswith("{")]
        got = [json.loads(line) for line in done.stderr.splitlines()]
        want = [json.loads(line) for line in lines if line.startswith("{")]
        assert [{**x, "letter": None} for x in got] == [{**x, "letter": None} for x in want]


# -- what is refused, and why --------------------------------------------------------------


def usage_error(cli: Cli, *argv: str) -> str:
    done = cli("replay", *argv)
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.startswith("asyncdataflow: error: ")
    return done.stderr


def test_a_missing_file_or_a_directory_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    assert "no such file" in usage_error(cli, "cli_flows:numbers", "--dead-letters", str(missing))
    assert not missing.exists()
    assert "not a file" in usage_error(cli, "cli_flows:numbers", "--dead-letters", str(tmp_path))


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("postgres://bob:s3cret@db/x", "a postgres:// URL is not a sink this command opens"),
        ("mysql://bob:s3cret@127.0.0.1:notaport/x", "not of the form mysql://"),
        ("mysql://bob:s3cret@127.0.0.1/x?colour=red", "unknown url option 'colour'"),
    ],
)
def test_a_bad_url_is_a_usage_error_that_does_not_show_the_password(
    cli: Cli, where: str, says: str
) -> None:
    error = usage_error(cli, "cli_flows:numbers", "--dead-letters", where)
    assert says in error
    assert "s3cret" not in error


def test_table_goes_with_a_mysql_url_only(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    path.touch()
    error = usage_error(cli, "cli_flows:numbers", "--dead-letters", str(path), "--table", "t")
    assert "goes with a mysql:// URL" in error


def test_a_table_that_does_not_exist_is_refused_and_not_created(cli: Cli, tables: Tables) -> None:
    table = tables.name("missing")
    error = usage_error(cli, "cli_flows:numbers", "--dead-letters", tables.url, "--table", table)
    assert f"there is no table `{table}` on mysql://root@127.0.0.1:3306/test" in error
    assert sql("SHOW TABLES LIKE %s", (table,)) == []


def test_without_the_mysql_extra_the_error_says_what_to_install(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m.startswith("asyncdataflow.plugins.mysql")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "aiomysql", None)  # as if it were not installed
    error = usage_error(cli, "cli_flows:numbers", "--dead-letters", "mysql://root@h/db")
    assert 'needs aiomysql and PyMySQL: pip install "asyncdataflow[mysql]"' in error


def test_a_server_that_does_not_answer_is_exit_1_in_one_line(cli: Cli) -> None:
    done = cli("replay", "cli_flows:numbers", "--dead-letters", "mysql://root@127.0.0.1:1/test")
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        "asyncdataflow replay: replaying the dead letters in table "
        "`asyncdataflow_dead_letters` on mysql://root@127.0.0.1:1/test failed: "
    )
    assert "Can't connect" in line


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("cli_flows:unnamed_numbers", "has no name=: letters are kept under the name"),
        ("cli_flows:looping", "is an infinity loop"),
    ],
)
def test_a_flow_replay_cannot_match_or_run_is_a_usage_error(
    cli: Cli, tmp_path: Path, target: str, says: str
) -> None:
    path = tmp_path / "dead.jsonl"
    path.touch()
    assert says in usage_error(cli, target, "--dead-letters", str(path))
