"""asyncdataflow.plugins.http against a real aiohttp.web server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import logging
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from asyncdataflow import DataFlow, Retry, hookimpl, step
from asyncdataflow.exceptions import DataFlowDefinitionError
from asyncdataflow.plugins import http, log
from asyncdataflow.plugins.http._hooks import parse_retry_after

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "Bearer s3cr3t-t0ken-XYZ"
PASSWORD = "pa55-w0rd-QRS"

PEERS = web.AppKey("peers", set)
HITS = web.AppKey("hits", Counter)
REQUESTS = web.AppKey("requests", list)


# --- the server -------------------------------------------------------------------------


@web.middleware
async def _track(request: web.Request, handler):  # type: ignore[no-untyped-def]
    transport = request.transport
    if transport is not None:
        request.app[PEERS].add(transport.get_extra_info("peername"))
    request.app[REQUESTS].append(request)
    return await handler(request)


async def _json(request: web.Request) -> web.Response:
    return web.json_response({"hello": "world", "n": 1})


async def _text(request: web.Request) -> web.Response:
    return web.Response(text='{"looks": "like json"}')


async def _bytes(request: web.Request) -> web.Response:
    return web.Response(body=b"\x00\x01\xff", content_type="application/octet-stream")


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "raw_path": request.raw_path,
            "query": sorted(request.query.items()),
            "headers": dict(request.headers),
            "content_type": request.content_type,
            "body": body.decode("latin-1"),
        },
        status=201 if request.method == "POST" else 200,
    )


async def _orders(request: web.Request) -> web.Response:
    return web.json_response(
        {"user_id": request.match_info["user_id"], "raw_path": request.raw_path}
    )


async def _link(request: web.Request) -> web.Response:
    page = int(request.query.get("page", "1"))
    headers = {}
    if page < 5:
        headers["Link"] = f'</link?page={page + 1}>; rel="next", </link?page=1>; rel="first"'
    return web.json_response([page * 10 + i for i in range(3)], headers=headers)


async def _cursor(request: web.Request) -> web.Response:
    cursor = int(request.query.get("cursor", "0"))
    return web.json_response(
        {
            "items": [f"{request.query.get('kind')}-{cursor}"],
            "next": str(cursor + 1) if cursor < 3 else None,
        }
    )


async def _endless(request: web.Request) -> web.Response:
    page = int(request.query.get("page", "1"))
    request.app[HITS]["endless"] += 1
    return web.json_response({"page": page}, headers={"Link": f'<?page={page + 1}>; rel="next"'})


async def _status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="nope")


async def _flaky(request: web.Request) -> web.Response:
    """Fails ``fails`` times with ``status`` and ``Retry-After: retry_after``, then 200."""
    key = request.match_info["key"]
    request.app[HITS][key] += 1
    if request.app[HITS][key] <= int(request.query.get("fails", "2")):
        retry_after = request.query.get("retry_after", "0.3")
        if retry_after == "date":
            retry_after = formatdate(time.time() + 2, usegmt=True)
        return web.Response(
            status=int(request.query.get("status", "503")),
            headers={"Retry-After": retry_after},
        )
    return web.json_response({"ok": True, "attempts": request.app[HITS][key]})


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(2)
    return web.json_response({"slow": True})


async def _whoami(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "authorization": request.headers.get("Authorization"),
            "host": request.host,
            "next": request.query.get("next"),
        },
        headers={"Link": f'<{request.query["next"]}>; rel="next"'}
        if "next" in request.query
        else {},
    )


async def _redirect(request: web.Request) -> web.Response:
    """Answers ``code`` with ``Location: to`` (``/redirect/302?to=/echo``), or with a
    Location back to itself when ``to`` is not given."""
    location = request.query.get("to", request.path_qs)
    return web.Response(status=int(request.match_info["code"]), headers={"Location": location})


async def _bad_json(request: web.Request) -> web.Response:
    return web.Response(text="{not json", content_type="application/json")


def make_app() -> web.Application:
    app = web.Application(middlewares=[_track])
    app[PEERS] = set()
    app[HITS] = Counter()
    app[REQUESTS] = []
    app.router.add_get("/json", _json)
    app.router.add_get("/text", _text)
    app.router.add_get("/bytes", _bytes)
    app.router.add_route("*", "/echo", _echo)
    app.router.add_route("*", "/echo/{tail:.*}", _echo)
    app.router.add_get("/users/{user_id}/orders", _orders)
    app.router.add_get("/link", _link)
    app.router.add_get("/cursor", _cursor)
    app.router.add_get("/endless", _endless)
    app.router.add_get("/status/{code}", _status)
    app.router.add_get("/flaky/{key}", _flaky)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/whoami", _whoami)
    app.router.add_route("*", "/redirect/{code}", _redirect)
    app.router.add_get("/bad-json", _bad_json)
    return app


class Server:
    def __init__(self, app: web.Application, port: int) -> None:
        self.app = app
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    @property
    def peers(self) -> set[object]:
        return self.app[PEERS]

    @property
    def hits(self) -> Counter[str]:
        return self.app[HITS]

    @property
    def requests(self) -> list[web.Request]:
        return self.app[REQUESTS]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    app = make_app()
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Server(app, port)
    finally:
        await runner.cleanup()


def open_client_sessions() -> list[aiohttp.ClientSession]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed]


# --- reading ----------------------------------------------------------------------------


async def test_reader_decodes_a_json_response(server: Server) -> None:
    step = http.reader(f"{server.base}/json")
    try:
        assert await step() == {"data": {"hello": "world", "n": 1}}
    finally:
        await step.aclose()


async def test_reader_returns_text_for_a_non_json_response(server: Server) -> None:
    step = http.reader(f"{server.base}/text")
    try:
        assert await step() == {"data": '{"looks": "like json"}'}
    finally:
        await step.aclose()


@pytest.mark.parametrize(
    ("path", "fmt", "expected"),
    [
        ("/text", "json", {"looks": "like json"}),
        ("/json", "text", '{"hello": "world", "n": 1}'),
        ("/bytes", "bytes", b"\x00\x01\xff"),
        ("/json", "bytes", b'{"hello": "world", "n": 1}'),
    ],
)
async def test_reader_format_overrides_the_content_type(
    server: Server, path: str, fmt: str, expected: object
) -> None:
    step = http.reader(f"{server.base}{path}", format=fmt)  # type: ignore[arg-type]
    try:
        assert await step() == {"data": expected}
    finally:
        await step.aclose()


async def test_reader_without_url_takes_url_from_the_flow(server: Server) -> None:
    step = http.reader()
    assert list(inspect.signature(step).parameters) == ["url", "params", "headers"]
    assert inspect.signature(step).parameters["url"].default is inspect.Parameter.empty
    try:
        assert await step(url=f"{server.base}/json") == {"data": {"hello": "world", "n": 1}}
    finally:
        await step.aclose()


async def test_url_template_fields_are_required_parameters_filled_in_quoted(
    server: Server,
) -> None:
    step = http.reader(server.base + "/users/{user_id}/orders")
    sig = inspect.signature(step)
    assert list(sig.parameters) == ["user_id", "params", "headers"]
    assert sig.parameters["user_id"].default is inspect.Parameter.empty
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in sig.parameters.values())
    try:
        assert (await step(user_id=42))["data"]["user_id"] == "42"
        got = (await step(user_id="a/b c?d"))["data"]
        assert got["raw_path"] == "/users/a%2Fb%20c%3Fd/orders"
    finally:
        await step.aclose()


async def test_flow_params_are_merged_over_the_factory_params(server: Server) -> None:
    step = http.reader(f"{server.base}/echo", params={"a": "1", "b": "2"})
    try:
        plain = (await step())["data"]
        merged = (await step(params={"b": "20", "c": "3"}))["data"]
    finally:
        await step.aclose()
    assert plain["query"] == [["a", "1"], ["b", "2"]]
    assert merged["query"] == [["a", "1"], ["b", "20"], ["c", "3"]]


async def test_flow_headers_are_merged_over_the_factory_headers(server: Server) -> None:
    step = http.reader(f"{server.base}/echo", headers={"X-One": "1", "X-Two": "2"})
    try:
        got = (await step(headers={"x-two": "22", "X-Three": "3"}))["data"]["headers"]
    finally:
        await step.aclose()
    assert (got["X-One"], got["X-Three"]) == ("1", "3")
    assert [v for k, v in got.items() if k.lower() == "x-two"] == ["22"]


async def test_reader_method_option_sends_that_method(server: Server) -> None:
    step = http.reader(f"{server.base}/echo", method="put")
    try:
        assert (await step())["data"]["method"] == "PUT"
    finally:
        await step.aclose()


# --- writing ----------------------------------------------------------------------------


async def test_writer_posts_json(server: Server) -> None:
    step = http.writer(f"{server.base}/echo")
    assert list(inspect.signature(step).parameters) == ["data", "params", "headers"]
    try:
        out = await step(data={"a": [1, 2]})
    finally:
        await step.aclose()
    assert out["status"] == 201
    assert out["response"]["method"] == "POST"
    assert out["response"]["content_type"] == "application/json"
    assert json.loads(out["response"]["body"]) == {"a": [1, 2]}


async def test_writer_posts_a_form(server: Server) -> None:
    step = http.writer(f"{server.base}/echo", format="form")
    try:
        out = await step(data={"name": "a b", "n": "1"})
    finally:
        await step.aclose()
    assert out["response"]["content_type"] == "application/x-www-form-urlencoded"
    assert out["response"]["body"] == "name=a+b&n=1"


async def test_writer_sends_bytes(server: Server) -> None:
    step = http.writer(f"{server.base}/echo", format="bytes", method="PUT")
    try:
        out = await step(data=b"\x00raw\xff")
    finally:
        await step.aclose()
    assert out == {"status": 200, "response": out["response"]}
    assert out["response"]["method"] == "PUT"
    assert out["response"]["body"].encode("latin-1") == b"\x00raw\xff"


async def test_writer_fills_a_url_template(server: Server) -> None:
    step = http.writer(server.base + "/echo/{table}")
    assert list(inspect.signature(step).parameters) == ["table", "data", "params", "headers"]
    try:
        out = await step(table="t 1", data=[1])
    finally:
        await step.aclose()
    assert out["response"]["raw_path"] == "/echo/t%201"


async def test_writer_rejects_non_bytes_before_any_request(server: Server) -> None:
    step = http.writer(f"{server.base}/echo", format="bytes")
    with pytest.raises(ValueError, match=r"http\.writer\(POST .*format='bytes'"):
        await step(data="text")
    await step.aclose()
    assert server.requests == []


# --- pagination -------------------------------------------------------------------------


async def test_link_pagination_concatenates_five_list_pages(server: Server) -> None:
    step = http.reader(f"{server.base}/link", paginate="link")
    try:
        out = await step()
    finally:
        await step.aclose()
    assert out == {"data": [p * 10 + i for p in range(1, 6) for i in range(3)]}
    assert [r.query.get("page") for r in server.requests] == [None, "2", "3", "4", "5"]


async def test_cursor_paginator_follows_the_url_it_returns(server: Server) -> None:
    def next_page(body: dict[str, object], response: aiohttp.ClientResponse) -> object:
        cursor = body["next"]
        return None if cursor is None else response.url.update_query(cursor=cursor)

    step = http.reader(f"{server.base}/cursor", params={"kind": "k"}, paginate=next_page)
    try:
        out = await step()
    finally:
        await step.aclose()
    # Pages are dicts, not lists: data is the list of page bodies.
    assert [page["items"] for page in out["data"]] == [["k-0"], ["k-1"], ["k-2"], ["k-3"]]


async def test_an_async_paginator_is_awaited(server: Server) -> None:
    async def next_page(body: dict[str, object], response: aiohttp.ClientResponse) -> object:
        await asyncio.sleep(0)
        return None if body["next"] is None else f"/cursor?kind=a&cursor={body['next']}"

    step = http.reader(f"{server.base}/cursor?kind=a", paginate=next_page)
    try:
        out = await step()
    finally:
        await step.aclose()
    assert [i for page in out["data"] for i in page["items"]] == ["a-0", "a-1", "a-2", "a-3"]


async def test_max_pages_stops_an_endless_chain_of_pages(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    step = http.reader(f"{server.base}/endless", paginate="link", max_pages=7)
    caplog.set_level(logging.WARNING, logger="asyncdataflow.plugins.http")
    try:
        out = await step()
    finally:
        await step.aclose()
    assert out == {"data": [{"page": n} for n in range(1, 8)]}
    assert server.hits["endless"] == 7
    assert any("max_pages=7" in r.getMessage() for r in caplog.records)


async def test_a_single_page_when_paginating_is_still_a_list(server: Server) -> None:
    step = http.reader(f"{server.base}/json", paginate="link")
    try:
        assert await step() == {"data": [{"hello": "world", "n": 1}]}
    finally:
        await step.aclose()


async def test_a_next_page_on_another_origin_gets_no_credentials(server: Server) -> None:
    other = f"http://localhost:{server.port}/whoami"
    step = http.reader(
        f"{server.base}/whoami?next={other}",
        headers={"Authorization": TOKEN, "X-Api-Key": "k", "X-Plain": "p"},
        paginate="link",
        max_pages=2,
    )
    try:
        first, second = (await step())["data"]
    finally:
        await step.aclose()
    assert first["authorization"] == TOKEN
    assert second["host"].startswith("localhost")
    assert second["authorization"] is None
    assert "X-Api-Key" not in server.requests[1].headers
    assert server.requests[1].headers["X-Plain"] == "p"


async def test_an_error_on_a_later_page_names_the_page(server: Server) -> None:
    def to_404(body: object, response: aiohttp.ClientResponse) -> str:
        return "/status/404"

    step = http.reader(f"{server.base}/json", paginate=to_404)
    try:
        with pytest.raises(aiohttp.ClientResponseError) as info:
            await step()
    finally:
        await step.aclose()
    assert info.value.status == 404
    assert any("page 2" in n for n in info.value.__notes__)


# --- redirects --------------------------------------------------------------------------


SECRETS = {"Authorization": TOKEN, "X-Api-Key": "k3y", "Cookie": "sid=1", "X-Plain": "p"}


async def test_a_reader_follows_a_redirect_on_its_origin_with_its_headers(server: Server) -> None:
    step = http.reader(f"{server.base}/redirect/301?to=/echo/there", headers=SECRETS)
    try:
        data = (await step())["data"]
    finally:
        await step.aclose()
    assert data["raw_path"] == "/echo/there"
    assert {k: data["headers"].get(k) for k in SECRETS} == SECRETS


async def test_a_redirect_to_another_origin_drops_every_secret_header(server: Server) -> None:
    elsewhere = f"http://localhost:{server.port}/echo/elsewhere"
    step = http.reader(f"{server.base}/redirect/302?to={elsewhere}", headers=SECRETS)
    try:
        data = (await step())["data"]
    finally:
        await step.aclose()
    assert data["raw_path"] == "/echo/elsewhere"
    assert {k: data["headers"].get(k) for k in SECRETS} == {
        "Authorization": None,
        "X-Api-Key": None,
        "Cookie": None,
        "X-Plain": "p",
    }


@pytest.mark.parametrize("code", [301, 302, 303])
async def test_a_writer_refuses_a_redirect_that_would_drop_its_data(
    server: Server, code: int
) -> None:
    step = http.writer(f"{server.base}/redirect/{code}?to=/echo")
    try:
        with pytest.raises(aiohttp.ClientResponseError) as info:
            await step(data={"x": 1})
    finally:
        await step.aclose()
    assert info.value.status == code
    assert any("does not follow" in n and "/echo" in n for n in info.value.__notes__)
    assert [r.path for r in server.requests] == [f"/redirect/{code}"]  # no GET to /echo


@pytest.mark.parametrize("code", [307, 308])
async def test_a_writer_follows_307_and_308_with_its_method_and_body(
    server: Server, code: int
) -> None:
    step = http.writer(f"{server.base}/redirect/{code}?to=/echo", method="PUT")
    try:
        result = await step(data={"x": 1})
    finally:
        await step.aclose()
    assert result["status"] == 200
    assert result["response"]["method"] == "PUT"
    assert json.loads(result["response"]["body"]) == {"x": 1}


async def test_a_redirect_loop_raises_too_many_redirects(server: Server) -> None:
    step = http.reader(f"{server.base}/redirect/302")
    try:
        with pytest.raises(aiohttp.TooManyRedirects):
            await step()
    finally:
        await step.aclose()
    assert len(server.requests) == 11


async def test_invalid_json_names_the_step_the_url_and_what_to_do(server: Server) -> None:
    step = http.reader(f"{server.base}/bad-json")
    try:
        with pytest.raises(json.JSONDecodeError) as info:
            await step()
    finally:
        await step.aclose()
    (note,) = info.value.__notes__
    assert note.startswith("http.reader(GET ")
    assert "/bad-json" in note
    assert "format='text'" in note


# --- errors and timeouts ----------------------------------------------------------------


async def test_a_404_raises_aiohttps_client_response_error(server: Server) -> None:
    step = http.reader(f"{server.base}/status/404")
    try:
        with pytest.raises(aiohttp.ClientResponseError) as info:
            await step()
    finally:
        await step.aclose()
    assert type(info.value) is aiohttp.ClientResponseError
    assert info.value.status == 404
    assert str(info.value.request_info.real_url) == f"{server.base}/status/404"


async def test_a_writer_error_status_raises_client_response_error(server: Server) -> None:
    step = http.writer(server.base + "/status/{code}", method="GET")
    try:
        with pytest.raises(aiohttp.ClientResponseError) as info:
            await step(code=500, data=None)
    finally:
        await step.aclose()
    assert info.value.status == 500


async def test_a_slow_endpoint_hits_the_timeout(server: Server) -> None:
    step = http.reader(f"{server.base}/slow", timeout=0.2)
    start = time.perf_counter()
    try:
        with pytest.raises(TimeoutError) as info:
            await step()
    finally:
        await step.aclose()
    assert time.perf_counter() - start < 1.5
    assert any("timeout=0.2" in n for n in info.value.__notes__)


# --- sessions ---------------------------------------------------------------------------


async def test_500_concurrent_first_calls_make_one_session(server: Server) -> None:
    before = len(open_client_sessions())
    step = http.reader(server.base + "/users/{user_id}/orders")
    results = await asyncio.gather(*(step(user_id=i) for i in range(500)))
    assert [r["data"]["user_id"] for r in results] == [str(i) for i in range(500)]
    assert len(open_client_sessions()) == before + 1
    # aiohttp's default pool: at most 100 connections, reused (keep-alive).
    assert len(server.peers) <= 100
    await step.aclose()
    assert len(open_client_sessions()) == before


async def test_limit_per_host_caps_the_connections(server: Server) -> None:
    step = http.reader(f"{server.base}/json", limit_per_host=2)
    try:
        await asyncio.gather(*(step() for _ in range(40)))
    finally:
        await step.aclose()
    assert len(server.peers) <= 2


async def test_the_step_reopens_a_session_after_aclose(server: Server) -> None:
    step = http.reader(f"{server.base}/json")
    await step()
    await step.aclose()
    assert open_client_sessions() == []
    assert (await step())["data"]["n"] == 1
    await step.aclose()
    assert open_client_sessions() == []


async def test_a_user_session_is_used_and_stays_open_after_aclose(server: Server) -> None:
    sent: list[str] = []

    async def on_request_start(session: object, ctx: object, params: object) -> None:
        sent.append(str(params.url))  # type: ignore[attr-defined]

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        read = http.reader(f"{server.base}/json", session=session)
        write = http.writer(f"{server.base}/echo", session=session)
        await read()
        await write(data=1)
        await read.aclose()
        await write.aclose()
        assert not session.closed
        assert sent == [f"{server.base}/json", f"{server.base}/echo"]
        assert (await read())["data"]["n"] == 1
        assert open_client_sessions() == [session]


# --- secrets ----------------------------------------------------------------------------


async def test_url_credentials_are_sent_as_basic_auth_and_not_in_the_url(
    server: Server,
) -> None:
    step = http.reader(f"http://alice:{PASSWORD}@127.0.0.1:{server.port}/whoami")
    try:
        got = (await step())["data"]
    finally:
        await step.aclose()
    assert got["authorization"] == aiohttp.encode_basic_auth("alice", PASSWORD)
    assert PASSWORD not in step.__qualname__
    assert "***@127.0.0.1" in step.__qualname__


async def test_auth_is_sent_as_a_basic_authorization_header(server: Server) -> None:
    step = http.reader(f"{server.base}/whoami", auth=("alice", PASSWORD))
    try:
        got = (await step())["data"]
    finally:
        await step.aclose()
    assert got["authorization"] == aiohttp.encode_basic_auth("alice", PASSWORD)


async def test_credentials_in_the_url_parameter_never_reach_the_error(server: Server) -> None:
    step = http.reader()
    try:
        with pytest.raises(aiohttp.ClientResponseError) as info:
            await step(url=f"http://bob:{PASSWORD}@127.0.0.1:{server.port}/status/401")
    finally:
        await step.aclose()
    assert server.requests[0].headers["Authorization"].startswith("Basic ")
    assert PASSWORD not in str(info.value)
    assert "bob" not in str(info.value)


def test_display_names_redact_secrets() -> None:
    step = http.reader(
        "https://u:p4ss@api.example/v1/{kind}?api_key=K3Y&page=1",
        headers={"Authorization": TOKEN},
    )
    assert (
        step.__qualname__ == "http.reader(GET https://***@api.example/v1/{kind}?api_key=***&page=1)"
    )
    assert repr(step) == f"<{step.__qualname__}>"
    assert "K3Y" not in step.__qualname__
    assert TOKEN not in repr(step)


# --- factory validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"url": "http://h/x", "format": "xml"}, "format must be one of"),
        ({"url": "http://h/x", "paginate": "next"}, "paginate must be"),
        ({"url": "http://h/x", "max_pages": 0}, "max_pages"),
        ({"url": "http://h/x", "timeout": 0}, "timeout"),
        ({"url": "http://h/x", "limit_per_host": 0}, "limit_per_host"),
        ({"url": "/relative"}, "not an absolute http"),
        ({"url": "http://h/{0}"}, "not a plain name"),
        ({"url": "http://h/{a!r}"}, "not a plain name"),
        ({"url": "http://h/{a"}, "bad URL template"),
        ({"url": "http://h/{params}"}, "clash"),
        ({"url": "http://h/x", "auth": "user:pw"}, "auth must be"),
        ({"url": "http://h/x", "auth": ("a", "b"), "headers": {"authorization": "x"}}, "both"),
        ({"url": "http://u:p@h/x", "auth": ("a", "b")}, "both the URL and auth="),
        ({"url": "http://u:p@h/x", "headers": {"authorization": "x"}}, "both the URL"),
    ],
)
def test_reader_factory_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(DataFlowDefinitionError, match=match) as info:
        http.reader(**kwargs)  # type: ignore[arg-type]
    assert "http.reader(" in str(info.value)


async def test_a_session_and_limit_per_host_together_are_rejected() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DataFlowDefinitionError, match="limit_per_host"):
            http.reader("http://h/x", session=session, limit_per_host=2)


def test_writer_factory_rejects_bad_arguments() -> None:
    with pytest.raises(DataFlowDefinitionError, match="format must be one of"):
        http.writer("http://h/x", format="xml")  # type: ignore[arg-type]
    with pytest.raises(DataFlowDefinitionError, match="clash"):
        http.writer("http://h/{data}")


async def test_a_bad_url_parameter_raises_value_error_before_any_request() -> None:
    step = http.reader()
    with pytest.raises(ValueError, match="not an absolute http"):
        await step(url="ftp://h/x")
    with pytest.raises(ValueError, match="must be a str"):
        await step(url=42)
    await step.aclose()


# --- Retry-After ------------------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-2") == 0.0
    now = time.time()
    assert parse_retry_after(formatdate(now + 10, usegmt=True), now=now) == pytest.approx(10, abs=1)
    assert parse_retry_after(formatdate(now - 10, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after(None) is None


def test_the_hook_module_does_not_import_aiohttp() -> None:
    code = (
        "import sys, importlib.metadata as m\n"
        "(ep,) = [e for e in m.entry_points(group='asyncdataflow') if e.name == 'http']\n"
        "mod = ep.load()\n"
        "assert hasattr(mod, 'step_retry_delay')\n"
        "print('aiohttp' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


# --- examples ---------------------------------------------------------------------------


def test_the_http_endpoints_example_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "examples" / "http_endpoints.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = out.stdout.splitlines()
    assert lines[:3] == [
        "sales: stored 3 records (HTTP 201)",
        "stock: stored 2 records (HTTP 201)",
        "users: stored 4 records (HTTP 201)",
    ]
    assert lines[3] == "destination now holds: sales, stock, users"


# --- through a DataFlow -----------------------------------------------------------------


class RetryRecorder:
    """A per-flow plugin that records the delays the retry decision chose."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    @hookimpl
    def on_step_retry(self, delay: float) -> None:
        self.delays.append(delay)


async def test_a_404_propagates_unchanged_through_a_flow_with_the_steps_note(
    server: Server,
) -> None:
    read = http.reader(server.base + "/status/{code}")
    async with DataFlow((read,)) as flow:
        with pytest.raises(aiohttp.ClientResponseError) as info:
            await flow(code=404)
    assert type(info.value) is aiohttp.ClientResponseError
    assert info.value.status == 404
    assert str(info.value.request_info.real_url) == f"{server.base}/status/404"
    assert any(read.__qualname__ in note for note in info.value.__notes__)


async def test_a_503_twice_then_200_succeeds_waiting_retry_after(server: Server) -> None:
    recorder = RetryRecorder()
    read = http.reader(server.base + "/flaky/{key}?retry_after=0.3")
    # backoff=0: without the Retry-After rule the retries would not wait at all.
    policy = Retry(attempts=3, backoff=0.0, max_delay=5.0, jitter=False)
    async with DataFlow((step(read, retry=policy),), plugins=[recorder]) as flow:
        start = time.perf_counter()
        result = await flow(key="a")
        elapsed = time.perf_counter() - start
    assert result == {"data": {"ok": True, "attempts": 3}}
    assert recorder.delays == [0.3, 0.3]
    assert elapsed >= 0.6


async def test_a_429_retry_after_is_capped_by_max_delay(server: Server) -> None:
    recorder = RetryRecorder()
    read = http.reader(server.base + "/flaky/{key}?fails=1&status=429&retry_after=30")
    policy = Retry(attempts=2, backoff=0.0, max_delay=0.2, jitter=False)
    async with DataFlow((step(read, retry=policy),), plugins=[recorder]) as flow:
        start = time.perf_counter()
        result = await flow(key="b")
        elapsed = time.perf_counter() - start
    assert result["data"]["ok"] is True
    assert recorder.delays == [0.2]
    assert 0.2 <= elapsed < 5


async def test_a_retry_after_http_date_is_honoured(server: Server) -> None:
    recorder = RetryRecorder()
    read = http.reader(server.base + "/flaky/{key}?fails=1&retry_after=date")
    policy = Retry(attempts=2, backoff=0.0, max_delay=10.0, jitter=False)
    async with DataFlow((step(read, retry=policy),), plugins=[recorder]) as flow:
        start = time.perf_counter()
        await flow(key="c")
        elapsed = time.perf_counter() - start
    # The date has a resolution of one second and was "now + 2 s" when it was sent.
    assert 0.9 <= recorder.delays[0] <= 2.1
    assert elapsed >= recorder.delays[0]


async def test_without_retry_after_the_policys_backoff_applies(server: Server) -> None:
    recorder = RetryRecorder()
    read = http.reader(server.base + "/status/{code}")
    policy = Retry(attempts=2, backoff=0.05, jitter=False)
    async with DataFlow((step(read, retry=policy),), plugins=[recorder]) as flow:
        with pytest.raises(aiohttp.ClientResponseError):
            await flow(code=500)
    assert recorder.delays == [0.05]


async def test_500_runs_through_map_share_one_session_and_close_it(server: Server) -> None:
    before = open_client_sessions()
    read = http.reader(server.base + "/users/{user_id}/orders")
    async with DataFlow((read,)) as flow:
        results = [r async for r in flow.map(({"user_id": i} for i in range(500)), concurrency=50)]
        assert len(open_client_sessions()) == len(before) + 1
    assert [r["data"]["user_id"] for r in results] == [str(i) for i in range(500)]  # type: ignore[index]
    # One pooled session: never more connections than runs at once.
    assert len(server.peers) <= 50
    assert open_client_sessions() == before


async def test_a_user_session_stays_open_after_the_flow_closes(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        async with DataFlow((http.reader(f"{server.base}/json", session=session),)) as flow:
            assert (await flow())["data"]["n"] == 1
        assert not session.closed
        async with session.get(f"{server.base}/json") as response:
            assert response.status == 200


async def test_a_bearer_token_appears_in_no_log_note_or_name(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("asyncdataflow", "asyncdataflow.plugins.http", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)
    read = http.reader(
        server.base + "/status/{code}",
        headers={"Authorization": TOKEN, "X-Api-Key": "k3y-V4LUE"},
        paginate="link",
    )
    write = http.writer(f"http://carol:{PASSWORD}@127.0.0.1:{server.port}/echo")
    policy = Retry(attempts=2, backoff=0.0, jitter=False)
    # The built-in log plugin logs every step, failure (with its traceback) and retry.
    async with DataFlow((step(read, retry=policy), write), plugins=[log]) as flow:
        with pytest.raises(aiohttp.ClientResponseError) as info:
            await flow(code=401)
        ok = http.reader(f"{server.base}/json", headers={"Authorization": TOKEN})
        async with DataFlow((ok, write), plugins=[log]) as flow2:
            assert (await flow2())["status"] == 201
    assert server.requests[0].headers["Authorization"] == TOKEN
    assert server.requests[-1].headers["Authorization"].startswith("Basic ")
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    logged = "\n".join(formatter.format(r) for r in caplog.records)
    assert "http.reader(GET" in logged  # the step did log, at DEBUG
    assert any(r.name.startswith("asyncdataflow.") and r.exc_info for r in caplog.records)
    assert "ClientResponseError: 401" in logged  # the failure's traceback was logged
    texts = [
        logged,
        str(info.value),
        *info.value.__notes__,
        read.__qualname__,
        repr(read),
        write.__qualname__,
        flow.name,
    ]
    for secret in ("s3cr3t-t0ken", PASSWORD, "k3y-V4LUE"):
        assert not any(secret in text for text in texts), secret


def test_the_docs_example_runs(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "http.md").read_text()
    section = text.split("## A runnable example", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    expected = section.split("It prints:\n\n```\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "docs_example.py"
    script.write_text(code)
    out = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout == expected


@contextlib.contextmanager
def server_in_a_thread() -> Iterator[str]:
    """The test server on its own loop in a thread, for tests that run several loops."""
    loop = asyncio.new_event_loop()
    ready: queue.Queue[str] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        runner = web.AppRunner(make_app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        ready.put(f"http://127.0.0.1:{runner.addresses[0][1]}")
        await asyncio.to_thread(stop.wait)  # set by the test's thread
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        yield ready.get(timeout=10)
    finally:
        stop.set()
        thread.join(10)
        loop.close()


def test_each_event_loop_gets_its_own_session() -> None:
    with server_in_a_thread() as base:
        read = http.reader(base + "/json")
        loop_a = asyncio.new_event_loop()
        try:
            assert loop_a.run_until_complete(read())["data"]["n"] == 1

            async def in_loop_b() -> int:
                first = (await read())["data"]["n"]
                await read.aclose()  # closes loop B's session; loop A's is kept for A
                return first

            # A session is bound to its loop: this works only with a second session.
            assert asyncio.run(in_loop_b()) == 1
            assert len(open_client_sessions()) == 1
            assert loop_a.run_until_complete(read())["data"]["n"] == 1
            loop_a.run_until_complete(read.aclose())
            assert open_client_sessions() == []
        finally:
            loop_a.close()


def test_aclose_closes_a_session_of_a_loop_running_in_another_thread() -> None:
    with server_in_a_thread() as base:
        read = http.reader(base + "/json")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(read(), loop).result(10)
            assert len(open_client_sessions()) == 1
            asyncio.run(read.aclose())
            assert open_client_sessions() == []
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
