"""docs/mysql.md: the runnable example runs against the server and prints what the page
says; every public name and option of the pack is documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asyncdataflow.plugins import mysql

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "mysql.md").read_text(encoding="utf-8")


def test_the_docs_example_runs_and_prints_what_the_docs_say(mysql_url: str, tmp_path: Path):
    section = DOC.split("## A runnable example", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    expected = section.split("It prints:\n\n```\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "docs_example.py"
    script.write_text(code, encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        env={**os.environ, "ASYNCDATAFLOW_MYSQL_URL": mysql_url},
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert out.stdout == expected


@pytest.mark.parametrize("name", mysql.__all__)
def test_every_public_name_is_documented(name: str):
    assert f"`{name}" in DOC or f"mysql.{name}" in DOC


@pytest.mark.parametrize(
    "option",
    [
        "url",
        "pool",
        "columns",
        "mode",
        "batch_size",
        "charset",
        "minsize",
        "maxsize",
        "pool_recycle",
        "connect_timeout",
    ],
)
def test_every_option_is_documented(option: str):
    assert f"`{option}`" in DOC or f"`{option}=" in DOC


@pytest.mark.parametrize("mode", mysql.MODES)
def test_every_mode_is_documented(mode: str):
    assert f'`"{mode}"`' in DOC
