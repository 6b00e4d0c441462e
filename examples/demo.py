"""asyncdataflow end to end: HTTP in, reshape, JSON Lines (and MySQL) out.

Runs with nothing but the package installed (``pip install ".[all]"``):

    python examples/demo.py [--out DIR]

1. starts a small aiohttp server on 127.0.0.1 (a free port) serving three JSON
   endpoints: /users, /products and /orders;
2. one DataFlow reads the three concurrently (``http.reader``), joins the orders with
   their user and product, and writes the result concurrently
   - as JSON Lines with ``files.writer`` into ``DIR/orders.jsonl`` (``--out``, kept; by
     default a new temporary directory, removed when the demo ends), and
   - into MySQL/MariaDB with ``mysql.writer`` when ``ASYNCDATAFLOW_MYSQL_URL`` (default
     ``mysql://root@127.0.0.1:3306/test``) answers: a uniquely named table is created,
     filled, counted and dropped. Otherwise that part is skipped, with a line saying so;
3. prints what it did.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
from typing import Any

from aiohttp import web

from asyncdataflow import DataFlow
from asyncdataflow.plugins import files, http

try:
    from asyncdataflow.plugins import mysql
except ImportError:  # the pack or its extra is missing: the demo skips MySQL
    mysql = None  # type: ignore[assignment]
if not all(hasattr(mysql, name) for name in ("execute", "reader", "writer")):
    mysql = None  # type: ignore[assignment]

DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/test"
LATENCY = 0.05  # seconds each endpoint takes to answer

USERS = [
    {"id": 1, "name": "Ann", "city": "Lyon"},
    {"id": 2, "name": "Bob", "city": "Zürich"},
    {"id": 3, "name": "Chloé", "city": "Kraków"},
]
PRODUCTS = [
    {"sku": "A-1", "title": "Tea", "price": 4.5},
    {"sku": "B-2", "title": "Coffee", "price": 7.25},
    {"sku": "C-3", "title": "Crêpe pan", "price": 31.0},
]
ORDERS = [
    {"id": 100 + n, "user_id": n % 3 + 1, "sku": ("A-1", "B-2", "C-3")[n % 3], "qty": n % 4 + 1}
    for n in range(12)
]


# --- the server --------------------------------------------------------------------------


class Stats:
    """What the server saw: requests answered, and the most in flight at once."""

    def __init__(self) -> None:
        self.answered = 0
        self.in_flight = 0
        self.most_at_once = 0


async def serve(stats: Stats) -> tuple[web.AppRunner, str]:
    """Start the JSON server on 127.0.0.1, a free port; return it and its base URL."""

    def endpoint(body: list[dict[str, Any]]) -> Any:
        async def handler(request: web.Request) -> web.Response:
            stats.in_flight += 1
            stats.most_at_once = max(stats.most_at_once, stats.in_flight)
            try:
                await asyncio.sleep(LATENCY)  # a slow API: reading at once pays off
            finally:
                stats.in_flight -= 1
            stats.answered += 1
            return web.json_response(body)

        return handler

    app = web.Application()
    app.router.add_get("/users", endpoint(USERS))
    app.router.add_get("/products", endpoint(PRODUCTS))
    app.router.add_get("/orders", endpoint(ORDERS))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


# --- the steps ---------------------------------------------------------------------------


def join(users: list[dict], products: list[dict], orders: list[dict]) -> dict:
    """Each order with its user's name and city and its product's title and total."""
    user_by_id = {u["id"]: u for u in users}
    product_by_sku = {p["sku"]: p for p in products}
    records = []
    for order in orders:
        user = user_by_id[order["user_id"]]
        product = product_by_sku[order["sku"]]
        records.append(
            {
                "order_id": order["id"],
                "customer": user["name"],
                "city": user["city"],
                "product": product["title"],
                "qty": order["qty"],
                "total": round(order["qty"] * product["price"], 2),
            }
        )
    return {"data": records}


def build_flow(base: str, out_dir: str, table: str | None, mysql_url: str) -> DataFlow:
    """The flow: three reads at once, a join, then the writes at once."""
    read = (
        (http.reader(f"{base}/users", key="users"),),
        (http.reader(f"{base}/products", key="products"),),
        (http.reader(f"{base}/orders", key="orders"),),
    )
    writes: list[Any] = [files.writer("orders.jsonl", format="jsonl", base_dir=out_dir)]
    if table is not None:
        writes.append(mysql.writer(table, url=mysql_url))
    write = tuple((w,) for w in writes)
    return DataFlow((read, join, write))


# --- MySQL, when it answers --------------------------------------------------------------


async def mysql_table(url: str) -> tuple[str | None, str]:
    """Create a uniquely named table; return its name (or None) and a line to print."""
    if mysql is None:
        return None, "MySQL: skipped (asyncdataflow.plugins.mysql is not available)"
    table = f"demo_orders_{os.getpid()}_{secrets.token_hex(4)}"
    create = mysql.execute(
        f"CREATE TABLE {table} (order_id INT PRIMARY KEY, customer VARCHAR(64), "
        "city VARCHAR(64), product VARCHAR(64), qty INT, total DECIMAL(10, 2)) "
        "CHARACTER SET utf8mb4",
        url=url,
    )
    try:
        async with asyncio.timeout(5):
            await create()
    except Exception as error:  # not reachable, refused, no such database...
        return None, f"MySQL: skipped ({url_without_password(url)} does not answer: {error!r})"
    finally:
        await create.aclose()
    return table, f"MySQL: created table {table}"


async def mysql_check_and_drop(url: str, table: str) -> str:
    count = mysql.reader(f"SELECT COUNT(*) AS n, SUM(total) AS total FROM {table}", url=url)
    drop = mysql.execute(f"DROP TABLE {table}", url=url)
    try:
        row = (await count())["data"][0]
    finally:
        await drop()
        await count.aclose()
        await drop.aclose()
    return f"MySQL: {row['n']} rows in {table} (sum of totals {row['total']}), table dropped"


def url_without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{credentials}{at}{host}"


# --- main --------------------------------------------------------------------------------


async def main(out_dir: str) -> None:
    mysql_url = os.environ.get("ASYNCDATAFLOW_MYSQL_URL", DEFAULT_MYSQL_URL)
    stats = Stats()
    runner, base = await serve(stats)
    print(f"server: {base} serving /users /products /orders")
    table = None
    try:
        table, line = await mysql_table(mysql_url)
        print(line)
        async with build_flow(base, out_dir, table, mysql_url) as flow:
            start = time.perf_counter()
            result = await flow()
            elapsed = time.perf_counter() - start
        records = (await files.reader(result["path"], format="jsonl")())["data"]
        print(
            f"flow: read {stats.answered} endpoints, {stats.most_at_once} at once (each takes "
            f"{LATENCY * 1000:.0f} ms), joined {len(records)} orders, in {elapsed * 1000:.0f} ms"
        )
        print(f"files: wrote {len(records)} records to {result['path']}")
        print(f"first record: {records[0]}")
        if table is not None:
            print(f"MySQL: wrote {result['rowcount']} rows")
    finally:
        try:
            if table is not None:
                print(await mysql_check_and_drop(mysql_url, table))
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="asyncdataflow demo: HTTP -> JSONL/MySQL")
    parser.add_argument(
        "--out", help="directory for orders.jsonl, kept (default: a temporary one, removed)"
    )
    args = parser.parse_args()
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        asyncio.run(main(args.out))
    else:
        with tempfile.TemporaryDirectory(prefix="asyncdataflow-demo-") as out:
            asyncio.run(main(out))
        print("files: the temporary directory was removed; give --out DIR to keep the file")
