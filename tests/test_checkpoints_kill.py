"""Kill and restart (real processes, real files, the real MariaDB): a copy killed with
SIGKILL at moments picked from the destination's progress, and started again, leaves the
destination exact (docs/durable.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _mysql_server import Tables, sql

HERE = Path(__file__).parent


def count(table: str) -> int:
    return int(sql(f"SELECT COUNT(*) FROM `{table}`")[0][0])


def start(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    return subprocess.Popen([sys.executable, str(HERE / "durable_copy.py"), *args], env=env)


@pytest.mark.slow  # kill-and-restart
def test_a_killed_jsonl_to_mysql_upsert_copy_ends_exact(tmp_path: Path, tables: Tables) -> None:
    rows = 12_000
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": n, "name": f"ü-{n}", "v": n * 7 % 1000}) + "\n" for n in range(rows)
        )
    )
    state = tmp_path / "state.json"
    table = tables.create("id INT PRIMARY KEY, name VARCHAR(50) NOT NULL, v INT NOT NULL")
    args = (str(source), str(state), tables.url, table)
    kills, positions = 0, []
    for moment in (1_000, 3_000, 5_000, 7_000, 9_000):
        proc = start(*args)
        try:
            while count(table) < moment:
                try:
                    proc.wait(timeout=0.02)  # the pause between polls; ends early if it exits
                    break
                except subprocess.TimeoutExpired:
                    continue
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
        if state.exists():
            positions.append(json.loads(state.read_text())["copy"]["definition[0]"])
    assert kills >= 3, f"the copy finished before it could be killed ({kills} kills)"
    assert positions == sorted(positions)  # later runs resumed
    assert positions[-1] > 0
    final = start(*args)
    try:
        assert final.wait(timeout=900) == 0
    except subprocess.TimeoutExpired:
        final.send_signal(signal.SIGUSR1)  # its threads' stacks, on stderr
        final.kill()
        final.wait()
        raise
    assert count(table) == rows
    got = sql(f"SELECT COUNT(DISTINCT id), SUM(id), SUM(v), SUM(CHAR_LENGTH(name)) FROM `{table}`")
    want = (rows, sum(range(rows)), sum(n * 7 % 1000 for n in range(rows)),
            sum(len(f"ü-{n}") for n in range(rows)))  # fmt: skip
    assert tuple(int(x) for x in got[0]) == want
    assert json.loads(state.read_text())["copy"]["definition[0]"] == source.stat().st_size
