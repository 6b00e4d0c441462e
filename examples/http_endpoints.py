"""The seed's first example with real HTTP: three endpoints at once.

The seed's flow is ``(source, destination)``: ``source(endpoint)`` fetches an endpoint's
data, ``destination(source, data)`` stores it, and the flow runs once per endpoint,
concurrently. Here both are HTTP steps from the pack:

- ``http.reader(BASE + "/sources/{endpoint}")`` takes ``endpoint`` (the URL template's
  field) and returns ``{"data": body}``;
- ``http.writer(BASE + "/store/{endpoint}")`` takes ``endpoint`` and ``data`` and POSTs
  the data as JSON, returning ``{"status": ..., "response": ...}``.

``args_visibility="initial"`` keeps the call's ``endpoint`` visible to the writer (the
reader returns only ``data``). ``flow.map`` runs the three endpoints at once and yields the
results in input order; ``async with`` closes the HTTP session the steps opened.

The example starts its own aiohttp server on 127.0.0.1 (a free port), so it runs anywhere:

    python examples/http_endpoints.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from asyncdataflow import DataFlow
from asyncdataflow.plugins import http

SOURCES: dict[str, list[dict[str, Any]]] = {
    "sales": [{"id": 1, "total": 9.5}, {"id": 2, "total": 12.0}, {"id": 3, "total": 3.25}],
    "stock": [{"sku": "A", "qty": 4}, {"sku": "B", "qty": 0}],
    "users": [{"name": n} for n in ("ann", "bob", "cy", "dee")],
}

STORE = web.AppKey("store", dict)


async def get_source(request: web.Request) -> web.Response:
    return web.json_response(SOURCES[request.match_info["endpoint"]])


async def post_store(request: web.Request) -> web.Response:
    records = await request.json()
    request.app[STORE][request.match_info["endpoint"]] = records
    return web.json_response({"stored": len(records)}, status=201)


async def start_server() -> tuple[web.AppRunner, str]:
    app = web.Application()
    app[STORE] = {}
    app.router.add_get("/sources/{endpoint}", get_source)
    app.router.add_post("/store/{endpoint}", post_store)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def main() -> None:
    runner, base = await start_server()
    try:
        source = http.reader(base + "/sources/{endpoint}")
        destination = http.writer(base + "/store/{endpoint}")
        async with DataFlow((source, destination), args_visibility="initial") as flow:
            inputs = [{"endpoint": e} for e in ("sales", "stock", "users")]
            async for result in flow.map(inputs, concurrency=3):
                print(
                    f"{result['endpoint']}: stored {result['response']['stored']} records "
                    f"(HTTP {result['status']})"
                )
        print("destination now holds:", ", ".join(sorted(runner.app[STORE])))
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
