"""What the other docs tests leave out: every ```python block of README.md and docs/*.md
is a program that runs, prints what its comments say, and the console examples of
docs/cli.md show what the command prints (run in this process through the `cli` fixture,
but for the plugin table).

Already run elsewhere, so not here: the README's blocks (tests/test_docs.py, which checks
only that they print something: the printed values are checked here), docs/plugins.md
(tests/test_hooks.py) and the block under "## A runnable example" of docs/http.md,
docs/mysql.md and docs/files.md (tests/test_http.py, tests/test_mysql_docs.py,
tests/test_files_docs.py) and docs/durable.md (examples/mysql_sync.py, which
tests/test_checkpoints_kill.py kills and restarts; checked here to be that file)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_harness import Cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^( *)```python\n(.*?)^\1```", flags=re.S | re.M)


def blocks(path: Path) -> list[tuple[int, str]]:
    """(line number, dedented code) of each ```python block, also those in list items."""
    text = path.read_text(encoding="utf-8")
    return [
        (text[: m.start()].count("\n") + 1, textwrap.dedent(m.group(2)))
        for m in FENCE.finditer(text)
    ]


def runnable_example(path: Path) -> str | None:
    text = path.read_text(encoding="utf-8")
    if "## A runnable example" not in text:
        return None
    section = text.split("## A runnable example", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


ALL = [(p, line, code) for p in DOCS for line, code in blocks(p)]
NOT_RUN_ELSEWHERE = [
    (p, line, code)
    for p, line, code in ALL
    if p.name not in ("README.md", "plugins.md") and code != runnable_example(p)
]


def ident(case: tuple[Path, int, str]) -> str:
    return f"{case[0].name}:{case[1]}"


def expected_prints(code: str) -> list[str]:
    """The output a block's comments promise: a comment on a line of a `print(...)` call
    (or on the line after one, alone). "e.g." comments are examples, not checked; a
    trailing "..." means "starts with"; a comment in words ("the text above") is prose."""
    lines = code.splitlines()
    wanted = []
    for i, line in enumerate(lines):
        if "#" not in line:
            continue
        near_print = "print(" in line or (i > 0 and "print(" in lines[i - 1])
        comment = (
            line.split("#", 1)[1].strip()
            if line.lstrip().startswith("#")
            else (line.split("  # ", 1)[1].strip() if "  # " in line else "")
        )
        if near_print and comment and not comment.startswith(("e.g.", "the ")):
            wanted.append(comment)
    return wanted


def run(code: str, tmp_path: Path) -> str:
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(ROOT)])},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def check_prints(code: str, out: str) -> None:
    got = out.splitlines()
    position = 0
    for want in expected_prints(code):
        prefix = want.endswith("...")
        want = want.removesuffix("...").rstrip()
        for index in range(position, len(got)):
            if got[index] == want or (prefix and got[index].startswith(want)):
                position = index + 1
                break
        else:
            raise AssertionError(f"the comment promises {want!r}; printed:\n{out}")


@pytest.mark.parametrize("case", ALL, ids=ident)
def test_every_python_block_is_a_whole_program(case: tuple[Path, int, str]) -> None:
    """Signatures and fragments belong in plain ``` blocks: a ```python block is code a
    reader can paste into a file and run."""
    path, line, code = case
    ast.parse(code, filename=f"{path.name}:{line}")


@pytest.mark.parametrize("case", NOT_RUN_ELSEWHERE, ids=ident)
def test_docs_example_not_run_elsewhere_runs_and_prints_its_comments(
    case: tuple[Path, int, str], tmp_path: Path
) -> None:
    check_prints(case[2], run(case[2], tmp_path))


def test_the_durable_runnable_example_is_the_sync_example_as_it_is() -> None:
    shown = runnable_example(ROOT / "docs" / "durable.md")
    assert shown == (EXAMPLES / "mysql_sync.py").read_text(encoding="utf-8")


README_BLOCKS = [case for case in ALL if case[0].name == "README.md"]


@pytest.mark.parametrize("case", README_BLOCKS, ids=ident)
def test_readme_example_prints_what_its_comments_say(
    case: tuple[Path, int, str], tmp_path: Path
) -> None:
    check_prints(case[2], run(case[2], tmp_path))


def test_the_comment_checker_sees_the_readme_comments() -> None:
    promised = [want for case in README_BLOCKS for want in expected_prints(case[2])]
    assert "{'x': 4}" in promised
    assert "{'result': 20, 'ran_in_thread': True}" in promised
    assert "{'user_id': 7, 'orders': [3, 4], 'total': 7}" in promised
    assert len(promised) >= 10


# -- docs/cli.md: what the console examples show ------------------------------------------

CLI_DOC = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def subprocess_cli(*args: str, cwd: Path = EXAMPLES) -> subprocess.CompletedProcess[str]:
    """For the plugin table, which depends on the process (entry points loaded in it)."""
    return subprocess.run(
        [sys.executable, "-m", "asyncdataflow", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ASYNCDATAFLOW_LOAD_PLUGINS": "http"},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def console_blocks() -> list[str]:
    return re.findall(r"```console\n(.*?)```", CLI_DOC, flags=re.S)


def shown(command: str) -> str:
    """What the page shows after `$ asyncdataflow <command>`, up to the next `$`."""
    for block in console_blocks():
        if f"$ asyncdataflow {command}\n" in block:
            after = block.split(f"$ asyncdataflow {command}\n", 1)[1]
            return after.split("\n$ ", 1)[0].rstrip("\n") + "\n"
    raise AssertionError(f"docs/cli.md shows no `asyncdataflow {command}`")


@pytest.mark.parametrize(
    "command", ["run brokr:broker", "run broker_graph:brokr", "run broker_graph:main"]
)
def test_cli_usage_errors_are_as_shown(cli: Cli, command: str) -> None:
    done = cli(*command.split(), cwd=EXAMPLES)
    assert done.returncode == 2
    assert done.stdout == ""
    want = shown(command).replace("/src/examples", str(EXAMPLES))
    assert done.stderr == want


def test_cli_run_prints_what_the_page_shows(cli: Cli) -> None:
    command = (
        'run broker_graph:broker \'request:={"query": "books", "systems": ["a", "b"]}\' --indent 2'
    )
    done = cli(
        "run",
        "broker_graph:broker",
        'request:={"query": "books", "systems": ["a", "b"]}',
        "--indent",
        "2",
        cwd=EXAMPLES,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == shown(command)


def test_cli_failing_run_shows_the_exception_and_the_note(cli: Cli) -> None:
    done = cli("run", "broker_graph:broker", 'request:={"systems": ["a"]}', cwd=EXAMPLES)
    assert done.returncode == 1
    assert done.stdout == ""
    page = shown('run broker_graph:broker \'request:={"systems": ["a"]}\'')
    for line in page.splitlines()[2:]:  # past "Traceback" and "  ..."
        assert line in done.stderr.splitlines()


def test_cli_missing_argument_is_a_usage_error_naming_it(cli: Cli) -> None:
    done = cli("run", "broker_graph:broker", "requst=1", cwd=EXAMPLES)
    assert done.returncode == 2
    assert done.stdout == ""
    page = shown("run broker_graph:broker requst=1").splitlines()
    assert done.stderr.splitlines() == page[:1]


def test_cli_map_writes_what_the_page_shows(cli: Cli, tmp_path: Path) -> None:
    block = next(b for b in console_blocks() if "$ cat requests.jsonl" in b)
    inputs = block.split("$ cat requests.jsonl\n", 1)[1].split("\n$ ", 1)[0] + "\n"
    (tmp_path / "requests.jsonl").write_text(inputs, encoding="utf-8")
    done = cli(
        "map",
        "broker_graph:broker",
        "--input",
        str(tmp_path / "requests.jsonl"),
        "--output",
        str(tmp_path / "responses.jsonl"),
        "--errors",
        str(tmp_path / "failed.jsonl"),
        cwd=EXAMPLES,
    )
    assert done.returncode == 1
    summary = shown(
        "map broker_graph:broker --input requests.jsonl --output responses.jsonl "
        "--errors failed.jsonl"
    ).splitlines()[0]
    assert re.sub(r"in [0-9.]+s \([0-9.]+/s\)", "", done.stderr.strip()) == re.sub(
        r"in [0-9.]+s \([0-9.]+/s\)", "", summary
    )
    responses = block.split("$ cat responses.jsonl\n", 1)[1].split("\n$ ", 1)[0] + "\n"
    failed = block.split("$ cat failed.jsonl\n", 1)[1]
    assert (tmp_path / "responses.jsonl").read_text() == responses
    got = [json.loads(x) for x in (tmp_path / "failed.jsonl").read_text().splitlines()]
    assert got == [json.loads(x) for x in failed.splitlines()]


def test_cli_graph_prints_the_mermaid_block_of_the_page(cli: Cli) -> None:
    mermaid = re.search(r"```mermaid\n(.*?)```", CLI_DOC, flags=re.S)
    assert mermaid
    done = cli("graph", "broker_graph:broker", cwd=EXAMPLES)
    assert done.returncode == 0, done.stderr
    assert done.stdout == mermaid.group(1)


def test_cli_plugins_lists_what_the_page_shows() -> None:
    done = subprocess_cli("plugins")
    assert done.returncode == 0, done.stderr
    page = shown("plugins").splitlines()
    got = done.stdout.splitlines()
    assert got[0].split() == page[0].split()
    assert got[1].split() == page[1].split()  # asyncdataflow.retry  built-in  step_retry_delay
    http = next(line for line in got if line.startswith("http "))
    assert http.split()[-2:] == page[2].split()[-2:]
    assert "entry point" in http
