"""http.reader(stream=True) (a source yielding a record per page) and max_size= on the
HTTP steps, against a real aiohttp.web server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import inspect
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from asyncdataflow import DataFlow, step
from asyncdataflow.exceptions import DataFlowDefinitionError
from asyncdataflow.plugins import http

PAGES = 200


@dataclass
class Server:
    base: str
    requested: list[int] = field(default_factory=list)  # page numbers, in request order
    # the test sets gates[k] to let the server answer page k (None: answer at once)
    gates: dict[int, asyncio.Event] | None = None
    request_seen: dict[int, asyncio.Event] = field(default_factory=dict)
    written: int = 0  # bytes the endless handler wrote

    def seen(self, page: int) -> asyncio.Event:
        return self.request_seen.setdefault(page, asyncio.Event())


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server("")

    async def pages(request: web.Request) -> web.Response:
        page = int(request.query.get("page", "0"))
        state.requested.append(page)
        state.seen(page).set()
        if state.gates is not None:
            await state.gates.setdefault(page, asyncio.Event()).wait()
        body: dict[str, object] = {"items": [page * 10, page * 10 + 1], "page": page}
        if page + 1 < PAGES:
            body["next"] = f"/pages?page={page + 1}"
        return web.json_response(body)

    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.query["n"]), content_type="text/plain")

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "text/plain"
        await response.prepare(request)  # chunked: no Content-Length
        block = b"y" * 65536
        with contextlib.suppress(ConnectionError):
            while state.written < 64 * 2**20:  # stops on its own if the client never does
                await response.write(block)
                state.written += len(block)
        return response

    async def bomb(request: web.Request) -> web.Response:
        packed = gzip.compress(b"z" * (4 * 2**20))
        return web.Response(
            body=packed, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"}
        )

    async def echo_big(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"r" * 5000, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/pages", pages)
    app.router.add_get("/sized", sized)
    app.router.add_get("/endless", endless)
    app.router.add_get("/bomb", bomb)
    app.router.add_post("/echo_big", echo_big)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.base = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        for gate in (state.gates or {}).values():
            gate.set()  # no handler left waiting
        await runner.cleanup()


def next_page(body, response):
    return body.get("next")


# -- stream=True ---------------------------------------------------------------------------


async def test_stream_true_makes_a_source_that_yields_a_record_per_page(server: Server):
    step = http.reader(f"{server.base}/pages", paginate=next_page, stream=True, select="items")
    assert isinstance(step, http.StreamReader)
    assert inspect.isasyncgenfunction(type(step).__call__)
    try:
        records = [r async for r in step()]
    finally:
        await step.aclose()
    assert records == [{"data": [p * 10, p * 10 + 1]} for p in range(PAGES)]
    assert server.requested == list(range(PAGES))


async def test_the_next_page_is_requested_only_when_the_next_record_is_asked_for(
    server: Server,
):
    step = http.reader(f"{server.base}/pages", paginate=next_page, stream=True, key="page")
    try:
        async with contextlib.aclosing(step()) as agen:
            first = await anext(agen)
            assert first["page"]["page"] == 0
            assert server.requested == [0]
            second = await anext(agen)
            assert second["page"]["page"] == 1
            assert server.requested == [0, 1]
        # closed early: no page past the ones asked for
        assert server.requested == [0, 1]
    finally:
        await step.aclose()


async def test_stream_true_without_paginate_yields_the_one_body(server: Server):
    step = http.reader(f"{server.base}/pages?page={PAGES - 1}", stream=True)
    try:
        assert [r["data"]["page"] async for r in step()] == [PAGES - 1]
    finally:
        await step.aclose()


async def test_stream_true_stops_at_max_pages(server: Server):
    step = http.reader(f"{server.base}/pages", paginate=next_page, stream=True, max_pages=3)
    try:
        assert [r["data"]["page"] async for r in step()] == [0, 1, 2]
    finally:
        await step.aclose()


async def test_cancelling_a_stream_waiting_for_a_page_leaves_the_step_usable(server: Server):
    server.gates = {0: asyncio.Event()}
    server.gates[0].set()
    step = http.reader(f"{server.base}/pages", paginate=next_page, stream=True)

    async def consume():
        async with contextlib.aclosing(step()) as agen:
            async for _ in agen:
                pass

    try:
        task = asyncio.ensure_future(consume())
        await server.seen(1).wait()  # page 1 requested, its answer held back
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.gates[1].set()
        # the same step object (its session) streams again
        async with contextlib.aclosing(step()) as agen:
            assert (await anext(agen))["data"]["page"] == 0
            assert (await anext(agen))["data"]["page"] == 1
    finally:
        await step.aclose()


# -- max_size ------------------------------------------------------------------------------


async def test_a_body_over_max_size_by_its_content_length_raises_naming_url_and_limit(
    server: Server,
):
    step = http.reader(f"{server.base}/sized", max_size=1000)
    try:
        assert (await step(params={"n": "1000"}))["data"] == "x" * 1000
        with pytest.raises(http.ResponseTooLargeError) as caught:
            await step(params={"n": "1001"})
    finally:
        await step.aclose()
    error = caught.value
    assert f"{server.base}/sized?n=1001" in str(error)
    assert "max_size=1000 bytes" in str(error)
    assert "Content-Length: 1001" in str(error)
    assert (error.max_size, error.size) == (1000, 1001)


async def test_an_endless_body_raises_once_past_max_size_not_at_its_end(server: Server):
    step = http.reader(f"{server.base}/endless", max_size=2**20)
    try:
        with pytest.raises(http.ResponseTooLargeError, match="read so far") as caught:
            await step()
    finally:
        await step.aclose()
    assert 2**20 < caught.value.size <= 2**20 + 65536
    assert f"{server.base}/endless" in str(caught.value)


async def test_max_size_counts_the_decompressed_body(server: Server):
    step = http.reader(f"{server.base}/bomb", max_size=2**20)
    unlimited = http.reader(f"{server.base}/bomb", max_size=None)
    try:
        with pytest.raises(http.ResponseTooLargeError):
            await step()
        assert len((await unlimited())["data"]) == 4 * 2**20
    finally:
        await step.aclose()
        await unlimited.aclose()


async def test_max_size_applies_to_each_page_of_a_stream(server: Server):
    # page bodies grow with the page number; from page 100 on they pass 60 bytes
    step = http.reader(f"{server.base}/pages", paginate=next_page, stream=True, max_size=60)
    got = []
    try:
        with pytest.raises(http.ResponseTooLargeError, match=r"pages\?page=100 "):
            async for record in step():
                got.append(record["data"]["page"])
    finally:
        await step.aclose()
    assert got == list(range(100))


async def test_the_writer_limits_the_response_body_too(server: Server):
    step = http.writer(f"{server.base}/echo_big", max_size=4096)
    try:
        with pytest.raises(http.ResponseTooLargeError, match="max_size=4096"):
            await step(data={"a": 1})
    finally:
        await step.aclose()


def test_the_default_max_size_is_64_mib():
    assert http.DEFAULT_MAX_SIZE == 64 * 2**20
    for factory in (http.reader, http.writer):
        assert inspect.signature(factory).parameters["max_size"].default == 64 * 2**20


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1MB"])
def test_a_bad_max_size_is_refused_when_the_step_is_built(bad):
    with pytest.raises(DataFlowDefinitionError, match=r"max_size=.* must be a number of bytes"):
        http.reader("http://127.0.0.1/x", max_size=bad)
    with pytest.raises(DataFlowDefinitionError, match="max_size"):
        http.writer("http://127.0.0.1/x", max_size=bad)


def test_max_pages_defaults_to_100_and_to_no_limit_with_stream():
    assert http.reader("http://127.0.0.1/x", paginate="link")._max_pages == 100
    assert http.reader("http://127.0.0.1/x", paginate="link", stream=True)._max_pages > 10**9
    assert http.reader("http://127.0.0.1/x", stream=True, max_pages=5)._max_pages == 5


# -- in a flow: pages pipelined through the window ---------------------------------------


async def test_with_window_4_the_next_page_is_requested_while_earlier_ones_are_written(
    server: Server,
):
    window = 4
    server.gates = {0: asyncio.Event()}
    server.gates[0].set()
    written: list[int] = []
    writing = 0  # writes started and not finished
    held_peak = 0

    def held() -> int:
        # pages requested (or answered, or being written) whose write has not finished
        return len(server.requested) - len(written)

    async def write(page: dict) -> dict:
        nonlocal writing, held_peak
        k = page["page"]
        writing += 1
        held_peak = max(held_peak, held())
        if k + 1 < PAGES:
            server.gates.setdefault(k + 1, asyncio.Event()).set()  # let page k+1 answer
            await server.seen(k + 1).wait()  # its request comes before this write ends
        held_peak = max(held_peak, held())
        written.append(k)
        writing -= 1
        return {"written": k}

    reader = http.reader(f"{server.base}/pages", paginate=next_page, stream=True, key="page")
    flow = DataFlow((step(reader, window=window), write))
    try:
        async with asyncio.timeout(120):  # a hang guard: without pipelining, write(0) waits forever
            result = await flow()
    finally:
        await flow.aclose()
    assert result == {"written": PAGES - 1}
    assert written == list(range(PAGES))  # in order
    assert server.requested == list(range(PAGES))
    assert 1 < held_peak <= window  # pipelined, and never more than the window held
