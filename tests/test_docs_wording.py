"""The docs speak to users (issue 12, items 28-30): no words of the project's own process
("the seed", "the spec"), no paths of a development machine, an install line that works
without PyPI, and docs/plugins.md's overhead prose that agrees with its own table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: "seed" anywhere; "spec" as a word, except Python's "format spec"; a path under a home,
#: /work, /root, /Users or a virtual environment directory of someone's machine.
LEAKS = re.compile(
    r"\bseeds?\b|(?<!format )\bspec(s|'s)?\b"
    r"|(?<![\w.])/(home|work|root|Users|srv/venv|opt/venv)/\w",
    re.IGNORECASE,
)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_the_docs_carry_no_process_words_or_machine_paths(path: Path):
    leaks = [
        f"{path.name}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if LEAKS.search(line)
    ]
    assert leaks == []


def test_the_readme_says_how_to_install_without_pypi():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install asyncdataflow`" not in text  # no such distribution is published
    assert "not published on PyPI" in text
    assert 'pip install ".[http,files]"' in text
    assert "pip wheel --no-deps -w dist ." in text


def test_the_overhead_prose_agrees_with_the_table():
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = text.split("## Overhead", 1)[1]
    rows = dict(re.findall(r"^([a-z][\w ,()-]+?)\s{2,}([\d.]+)\s+[\d.]+$", section, re.M))
    base = float(rows["no plugin"])
    per_step = (float(rows["one step hook"]) - base) / 10
    per_record = (float(rows["log (DEBUG, discarded)"]) - base) / 22
    per_span = (float(rows["tracing (SDK, dropped)"]) - base) / 11
    per_run = float(rows["one flow hook"]) - base
    flat = " ".join(section.split())
    for value, words in [
        (per_run, r"per run: about (\d+) µs"),
        (per_step, r"about (\d+) µs per step"),
        (per_record, r"LogRecord` per event \(22 here: 2 per step, 2 per run; about (\d+) µs"),
        (per_span, r"11 spans \(about (\d+) µs each"),
    ]:
        found = re.search(words, flat)
        assert found, words
        assert abs(int(found.group(1)) - value) <= max(1.0, 0.15 * value), (words, value)


def test_the_tracing_example_says_it_needs_the_sdk():
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    tracing = text.split("### `asyncdataflow.plugins.tracing`", 1)[1].split("```python", 1)[0]
    assert "pip install opentelemetry-sdk" in tracing


def test_the_mysql_retry_note_says_what_a_lost_commit_acknowledgement_does():
    text = " ".join((ROOT / "docs" / "mysql.md").read_text(encoding="utf-8").split())
    assert "which is every write here) each row ends up written once" not in text
    assert "after the server committed and before its acknowledgement arrived" in text
    assert 'With `mode="insert"` it is not' in text
