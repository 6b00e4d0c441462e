"""docs/files.md: the runnable example runs and prints what the page says; every public
name of the pack is documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asyncdataflow.plugins import files

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "files.md").read_text(encoding="utf-8")


def test_the_docs_example_runs_and_prints_what_the_docs_say(tmp_path: Path) -> None:
    section = DOC.split("## A runnable example", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    expected = section.split("It prints:\n\n```\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "docs_example.py"
    script.write_text(code, encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=True,
    )
    assert out.stdout == expected


@pytest.mark.parametrize("name", files.__all__)
def test_every_public_name_is_documented(name: str) -> None:
    assert f"`{name}" in DOC or f"files.{name}" in DOC


@pytest.mark.parametrize(
    "option", ["path", "format", "encoding", "base_dir", "mode", "atomic", "makedirs"]
)
def test_every_option_is_documented(option: str) -> None:
    assert f"`{option}`" in DOC or f"`{option}=" in DOC


@pytest.mark.parametrize("value", [*files.FORMATS, *files.MODES])
def test_every_format_and_mode_is_documented(value: str) -> None:
    assert f'`"{value}"`' in DOC or f'`mode="{value}"' in DOC
