"""examples/demo.py, run as a user would: a subprocess with the venv's python."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import aiomysql
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo.py"
NO_MYSQL = "mysql://root@127.0.0.1:1/test"  # nothing listens on port 1
MYSQL_URL = os.environ.get("ASYNCDATAFLOW_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


def run_demo(*args: str, env: dict[str, str] | None = None) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-W", "error", str(DEMO), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return out.stdout.splitlines()


def check_jsonl(path: Path) -> None:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 12
    assert [r["order_id"] for r in records] == list(range(100, 112))
    assert records[0] == {
        "order_id": 100,
        "customer": "Ann",
        "city": "Lyon",
        "product": "Tea",
        "qty": 1,
        "total": 4.5,
    }
    assert {r["city"] for r in records} == {"Lyon", "Zürich", "Kraków"}


def mysql_answers() -> bool:
    url = urlsplit(MYSQL_URL)
    try:
        socket.create_connection((url.hostname or "127.0.0.1", url.port or 3306), 2).close()
    except OSError:
        return False
    return True


def test_demo_reads_the_endpoints_and_writes_jsonl_without_mysql(tmp_path: Path) -> None:
    lines = run_demo(
        "--out",
        str(tmp_path / "out"),
        env={"ASYNCDATAFLOW_MYSQL_URL": NO_MYSQL},
    )
    assert re.fullmatch(
        r"server: http://127\.0\.0\.1:\d+ serving /users /products /orders", lines[0]
    )
    assert lines[1].startswith(f"MySQL: skipped ({NO_MYSQL} does not answer")
    assert re.fullmatch(
        r"flow: read 3 endpoints, \d at once \(each takes 50 ms\), joined 12 orders, in \d+ ms",
        lines[2],
    )
    assert lines[3] == f"files: wrote 12 records to {tmp_path / 'out' / 'orders.jsonl'}"
    assert lines[4].startswith("first record: {'order_id': 100, 'customer': 'Ann'")
    assert len(lines) == 5
    check_jsonl(tmp_path / "out" / "orders.jsonl")


def test_demo_reads_the_endpoints_concurrently(tmp_path: Path) -> None:
    lines = run_demo("--out", str(tmp_path), env={"ASYNCDATAFLOW_MYSQL_URL": NO_MYSQL})
    # the server counts the requests in flight: a sequential flow would show 1
    assert lines[2].startswith("flow: read 3 endpoints, 3 at once (each takes 50 ms)")


def test_demo_writes_to_a_temporary_directory_it_removes(tmp_path: Path) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    lines = run_demo(env={"ASYNCDATAFLOW_MYSQL_URL": NO_MYSQL, "TMPDIR": str(temp)})
    path = Path(lines[3].removeprefix("files: wrote 12 records to "))
    assert path.name == "orders.jsonl"
    assert path.parent.parent == temp
    assert path.parent.name.startswith("asyncdataflow-demo-")
    assert lines[-1].startswith("files: the temporary directory was removed")
    assert list(temp.iterdir()) == []  # no asyncdataflow-demo-* left behind


async def test_demo_writes_to_mysql_and_drops_its_table(tmp_path: Path) -> None:
    if not mysql_answers():
        if os.environ.get("CI"):
            pytest.fail(f"MySQL does not answer at {MYSQL_URL} in CI")
        pytest.skip(f"MySQL does not answer at {MYSQL_URL}")
    lines = run_demo("--out", str(tmp_path), env={"ASYNCDATAFLOW_MYSQL_URL": MYSQL_URL})
    created = re.fullmatch(r"MySQL: created table (demo_orders_\w+)", lines[1])
    assert created, lines
    table = created.group(1)
    assert "MySQL: wrote 12 rows" in lines
    assert lines[-1] == f"MySQL: 12 rows in {table} (sum of totals 427.50), table dropped"
    check_jsonl(tmp_path / "orders.jsonl")
    url = urlsplit(MYSQL_URL)
    conn = await aiomysql.connect(
        host=url.hostname or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        db=url.path.lstrip("/") or "test",
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = %s", (table,)
            )
            assert await cur.fetchone() == (0,)
    finally:
        conn.close()
