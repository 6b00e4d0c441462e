"""flow.map(..., journal=path): a map that resumes where it stopped."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from asyncdataflow import DataFlow
from asyncdataflow._journal import Journal, fingerprint, read_journal
from asyncdataflow.exceptions import DataFlowCallError

RUNS: list[int] = []


async def double(n: int) -> dict[str, Any]:
    RUNS.append(n)
    if n < 0:
        raise ValueError(f"negative: {n}")
    return {"n": n * 2}


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    RUNS.clear()


def inputs(count: int) -> list[dict[str, int]]:
    return [{"n": i} for i in range(count)]


async def test_a_rerun_with_the_same_journal_runs_only_the_inputs_not_taken(
    tmp_path: Path,
) -> None:
    flow = DataFlow((double,))
    journal = tmp_path / "map.journal"
    taken = []
    async with contextlib.aclosing(flow.map(inputs(10), concurrency=3, journal=journal)) as rs:
        async for r in rs:
            taken.append(r["n"] // 2)
            if len(taken) == 4:
                break  # leaves with result 3 in hand: it is not recorded
    assert taken == [0, 1, 2, 3]
    recorded = [json.loads(x)["i"] for x in journal.read_text().splitlines()]
    assert recorded == [0, 1, 2]

    RUNS.clear()
    rest = [r["n"] // 2 async for r in flow.map(inputs(10), concurrency=3, journal=journal)]
    assert rest == [3, 4, 5, 6, 7, 8, 9]
    assert sorted(RUNS) == [3, 4, 5, 6, 7, 8, 9]  # done inputs never ran again
    RUNS.clear()
    assert [r async for r in flow.map(inputs(10), concurrency=3, journal=journal)] == []
    assert RUNS == []


async def test_a_failed_run_is_not_recorded_and_runs_again(tmp_path: Path) -> None:
    flow = DataFlow((double,))
    journal = tmp_path / "map.journal"
    data = [{"n": 1}, {"n": -1}, {"n": 2}]
    out = [r async for r in flow.map(data, concurrency=2, return_exceptions=True, journal=journal)]
    assert isinstance(out[1], ValueError)
    RUNS.clear()
    again = [
        r async for r in flow.map(data, concurrency=2, return_exceptions=True, journal=journal)
    ]
    assert RUNS == [-1]
    assert isinstance(again[0], ValueError)


async def test_a_journal_refuses_other_inputs(tmp_path: Path) -> None:
    flow = DataFlow((double,))
    journal = tmp_path / "map.journal"
    assert len([r async for r in flow.map(inputs(3), concurrency=1, journal=journal)]) == 3
    other = [{"n": 5}, {"n": 6}]
    with pytest.raises(DataFlowCallError, match="not the input the journal recorded"):
        async for _ in flow.map(other, concurrency=1, journal=journal):
            pass


async def test_a_last_line_cut_short_by_a_crash_is_ignored(tmp_path: Path) -> None:
    flow = DataFlow((double,))
    journal = tmp_path / "map.journal"
    assert len([r async for r in flow.map(inputs(2), concurrency=1, journal=journal)]) == 2
    with journal.open("ab") as file:
        file.write(b'{"i": 2, "h"')  # killed in the middle of a write
    out = [r["n"] async for r in flow.map(inputs(4), concurrency=1, journal=journal)]
    assert out == [4, 6]
    assert [json.loads(x)["i"] for x in journal.read_text().splitlines() if x.endswith("}")] == [
        0,
        1,
        2,
        3,
    ]


async def test_a_journal_written_by_something_else_is_refused(tmp_path: Path) -> None:
    journal = tmp_path / "map.journal"
    journal.write_text("hello\nworld\n")
    with pytest.raises(DataFlowCallError, match="not a journal entry"):
        async for _ in DataFlow((double,)).map(inputs(1), concurrency=1, journal=journal):
            pass


CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from asyncdataflow import DataFlow

    async def work(n):
        await asyncio.sleep(0.001)
        return {"n": n}

    async def main(journal, out):
        flow = DataFlow((work,))
        fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        data = ({"n": i} for i in range(3000))
        async for r in flow.map(data, concurrency=8, journal=journal):
            os.write(fd, b"%d\\n" % r["n"])

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.mark.slow
def test_killed_and_restarted_every_input_is_taken_at_least_once_and_none_lost(
    tmp_path: Path,
) -> None:
    journal, out = tmp_path / "map.journal", tmp_path / "out.txt"
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    for kill_after in (300, 1200, 2500):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(journal), str(out)], env=env, cwd=tmp_path
        )
        try:
            while proc.poll() is None:  # a condition, not a timer: the output's progress
                if out.exists() and out.read_bytes().count(b"\n") >= kill_after:
                    proc.send_signal(signal.SIGKILL)
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(0.01)  # or until it ends
        finally:
            proc.wait(60)
    done = subprocess.run([sys.executable, "-c", CHILD, str(journal), str(out)], env=env)
    assert done.returncode == 0
    lines = [int(x) for x in out.read_text().split()]
    assert set(lines) == set(range(3000))  # nothing lost
    # at most the result in the consumer's hands at each kill is taken again
    assert len(lines) - 3000 <= 3


def test_journal_lines_and_fingerprints_keep_their_format(tmp_path: Path) -> None:
    """Journals written by earlier versions stay readable and resumable: each line is
    json.dumps of the entry, the fingerprint the SHA-1 of the sorted JSON of the input."""
    for kw in ({"n": 1}, {"b": [1, {"z": 2, "a": "é"}], "a": None}, {"f": fingerprint}):
        text = json.dumps(kw, sort_keys=True, default=repr, ensure_ascii=False)
        assert fingerprint(kw) == hashlib.sha1(text.encode()).hexdigest()[:16]
    path = tmp_path / "j"
    journal = Journal(str(path))
    journal.record(3, "00ff00ff00ff00ff")
    journal.record(4, "0123456789abcdef", out=12, note='é"x')
    journal.close()
    assert path.read_bytes().splitlines() == [
        json.dumps({"i": 3, "h": "00ff00ff00ff00ff"}).encode(),
        json.dumps({"i": 4, "h": "0123456789abcdef", "out": 12, "note": 'é"x'}).encode(),
    ]
    assert read_journal(str(path))[0] == {3: "00ff00ff00ff00ff", 4: "0123456789abcdef"}
