"""Kill and restart (real processes, real files, the real MariaDB): a copy killed with
SIGKILL at moments picked from the destination's progress, and started again, leaves the
destination exact (docs/durable.md). The copies run in tests/durable_copy.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _mysql_server import Tables, sql

HERE = Path(__file__).parent


def count(table: str) -> int:
    return int(sql(f"SELECT COUNT(*) FROM `{table}`")[0][0])


def start(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    return subprocess.Popen([sys.executable, str(HERE / "durable_copy.py"), *args], env=env)


def poll(proc: subprocess.Popen[bytes], reached: Callable[[], bool], timeout: float = 300) -> bool:
    """Wait until ``reached()`` holds, asking again after each short wait on ``proc``;
    whether it did (False: ``proc`` ended first). After ``timeout`` seconds ``proc``
    prints its threads' stacks and the test fails."""
    deadline = time.monotonic() + timeout
    while not reached():
        try:
            proc.wait(timeout=0.02)  # the pause between polls; ends early if it exits
            return False
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                proc.send_signal(signal.SIGUSR1)  # its threads' stacks, on stderr
                pytest.fail(f"waited {timeout} s for {reached.__doc__ or 'progress'}")
    return True


def kill_when(proc: subprocess.Popen[bytes], reached: Callable[[], bool]) -> bool:
    """SIGKILL ``proc`` once ``reached()`` holds; whether it was killed (False: it ended
    first)."""
    try:
        poll(proc, reached)
    finally:
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    return killed


def finish(proc: subprocess.Popen[bytes], timeout: float = 900) -> None:
    """Wait for ``proc`` to end well; a hung one prints its threads' stacks first."""
    try:
        assert proc.wait(timeout=timeout) == 0
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # its threads' stacks, on stderr
        proc.kill()
        proc.wait()
        raise


@pytest.mark.slow  # kill-and-restart
@pytest.mark.parametrize("mode", ["upsert", "insert"])
def test_a_killed_jsonl_to_mysql_copy_with_a_file_store(
    tmp_path: Path, tables: Tables, mode: str
) -> None:
    """At least once with the file store: with upsert the destination ends exact; with a
    plain insert nothing is lost and each kill writes at most a window of records again."""
    rows, window, chunk = 12_000, 4, 50  # as durable_copy.py's jsonl copy
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": n, "name": f"ü-{n}", "v": n * 7 % 1000}) + "\n" for n in range(rows)
        )
    )
    state = tmp_path / "state.json"
    key = "PRIMARY KEY" if mode == "upsert" else "NOT NULL"
    table = tables.create(f"id INT {key}, name VARCHAR(50) NOT NULL, v INT NOT NULL")
    args = ("jsonl", str(source), str(state), tables.url, table, mode)
    kills, positions = 0, []
    for moment in (1_000, 3_000, 5_000, 7_000, 9_000):
        kills += kill_when(start(*args), lambda m=moment: count(table) >= m)
        if state.exists():
            positions.append(json.loads(state.read_text())["copy"]["definition[0]"])
    assert kills >= 3, f"the copy finished before it could be killed ({kills} kills)"
    assert positions == sorted(positions)  # later runs resumed
    assert positions[-1] > 0
    finish(start(*args))
    got = sql(
        "SELECT COUNT(*), SUM(id), SUM(v), SUM(CHAR_LENGTH(name)) "
        f"FROM (SELECT DISTINCT id, name, v FROM `{table}`) d"
    )
    want = (rows, sum(range(rows)), sum(n * 7 % 1000 for n in range(rows)),
            sum(len(f"ü-{n}") for n in range(rows)))  # fmt: skip
    assert tuple(int(x) for x in got[0]) == want  # every row, none lost
    again = count(table) - rows
    if mode == "upsert":
        assert again == 0
    else:
        assert 0 <= again <= kills * window * chunk, f"{again} rows again after {kills} kills"
    assert json.loads(state.read_text())["copy"]["definition[0]"] == source.stat().st_size


def seed(table: str, first: int, rows: int) -> None:
    """Rows ``first`` .. ``first + rows - 1`` (``rows`` a multiple of 1,000) into
    ``table`` (id, payload, v), made by the server in one statement."""
    sql(
        f"INSERT INTO `{table}` (id, payload, v)"
        " WITH RECURSIVE d (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM d WHERE n < 999)"
        " SELECT %(first)s + a.n * 1000 + b.n, CONCAT('row ', a.n * 1000 + b.n, ' ü'),"
        "  (a.n * 1000 + b.n) * 7 %% 1000"
        " FROM d a, d b WHERE a.n < %(thousands)s",
        {"first": first, "thousands": rows // 1000},
    )


ROWS = "id INT PRIMARY KEY, payload VARCHAR(64) NOT NULL, v INT NOT NULL"
NO_KEY = "id INT NOT NULL, payload VARCHAR(64) NOT NULL, v INT NOT NULL"  # twice stays twice


def committed(destination: str, checkpoints: str, name: str = "copy") -> tuple[int, int, int]:
    """(the committed position, the destination's rows, its distinct ids), read by one
    statement: one snapshot, so a commit landing meanwhile is seen whole or not at all."""
    row = sql(
        f"SELECT (SELECT positions FROM `{checkpoints}` WHERE name = %s),"
        f" COUNT(*), COUNT(DISTINCT id) FROM `{destination}`",
        (name,),
    )[0]
    position = 0 if row[0] is None else int(json.loads(row[0])["definition[0]"])
    return position, int(row[1]), int(row[2])


def fingerprint(table: str) -> tuple[int, ...]:
    """Rows, and checksums of the keys and of the payload."""
    got = sql(
        f"SELECT COUNT(*), SUM(id), BIT_XOR(CRC32(id)), SUM(CRC32(payload)), SUM(v) FROM `{table}`"
    )
    return tuple(int(x) for x in got[0])


def assert_same_rows(destination: str, source: str) -> None:
    twice = sql(f"SELECT id FROM `{destination}` GROUP BY id HAVING COUNT(*) > 1 LIMIT 5")
    assert twice == []
    assert fingerprint(destination) == fingerprint(source)


@pytest.mark.slow  # kill-and-restart, 200,000 rows
def test_a_killed_mysql_to_mysql_insert_copy_writes_every_row_exactly_once(
    tables: Tables,
) -> None:
    rows = 200_000
    source = tables.create(ROWS)
    seed(source, 1, rows)
    destination = tables.create(NO_KEY)
    checkpoints = tables.name("ckpt")
    args = ("mysql", source, destination, tables.url, checkpoints)
    kills, positions = 0, []
    for moment in (20_000, 60_000, 100_000, 140_000, 180_000):
        kills += kill_when(start(*args), lambda m=moment: count(destination) >= m)
        position, written, distinct = committed(destination, checkpoints)
        # ids are 1..rows: what is committed is exactly the rows up to the position
        assert (written, distinct) == (position, position), f"killed at {moment:,} rows"
        positions.append(position)
    assert kills >= 3, f"the copy finished before it could be killed ({kills} kills)"
    assert positions == sorted(positions)  # later runs resumed
    finish(start(*args))
    assert committed(destination, checkpoints) == (rows, rows, rows)
    assert_same_rows(destination, source)


EXAMPLE = HERE.parent / "examples" / "mysql_sync.py"


@pytest.mark.slow  # kill-and-restart
def test_the_sync_example_killed_and_restarted_copies_every_row_once_new_ones_too(
    tables: Tables, tmp_path: Path
) -> None:
    source, destination = tables.create(ROWS), tables.create(NO_KEY)
    checkpoints = tables.name("ckpt")
    name = f"sync {source} to {destination}"
    runs: list[Path] = []

    def sync() -> subprocess.Popen[bytes]:
        runs.append(tmp_path / f"run{len(runs)}.txt")
        with runs[-1].open("wb") as out:  # the child has its own copy
            return subprocess.Popen(
                [sys.executable, "-W", "error", str(EXAMPLE), source, destination, checkpoints],
                cwd=tmp_path,
                env={**os.environ, "ASYNCDATAFLOW_MYSQL_URL": tables.url},
                stdout=out,
            )

    def at(position: int) -> Callable[[], bool]:
        def reached() -> bool:
            return committed(destination, checkpoints, name)[0] >= position

        reached.__doc__ = f"the sync to commit id {position:,}"
        return reached

    seed(source, 1, 30_000)
    for moment, more in ((10_000, 20_000), (40_000, 0)):
        assert kill_when(sync(), lambda m=moment: count(destination) >= m)
        position, written, distinct = committed(destination, checkpoints, name)
        assert (written, distinct) == (position, position), f"killed at {moment:,} rows"
        if more:
            seed(source, 30_001, more)  # new rows while it is down
    last = sync()
    try:
        assert poll(last, at(50_000))
        seed(source, 50_001, 10_000)  # and new rows while it runs
        assert poll(last, at(60_000))
        last.send_signal(signal.SIGTERM)
        assert last.wait(timeout=60) == 0
    finally:
        if last.poll() is None:
            last.kill()
            last.wait()
    assert committed(destination, checkpoints, name) == (60_000, 60_000, 60_000)
    assert_same_rows(destination, source)
    printed = [run.read_text().splitlines() for run in runs]
    assert printed[0][0] == f"syncing {source} to {destination} after id None"
    assert printed[-1][0].startswith(f"syncing {source} to {destination} after id ")
    assert printed[-1][-2:] == ["copied up to id 60000", "stopped after id 60000"]
