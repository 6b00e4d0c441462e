"""http.reader(stream=True, paginate=...) as a resumable source (docs/http.md, "Resuming
a stream"): each record's position is where the next page starts, a flow with
checkpoint= starts from the last committed page, and after the last page a restart reads
that page again. Against real aiohttp servers on 127.0.0.1 and a real checkpoint file;
the kill-and-restart test runs the flow in child processes killed with SIGKILL."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _loopback import serve
from aiohttp import web
from yarl import URL

from asyncdataflow import DataFlow, step
from asyncdataflow.plugins import files, http

HERE = Path(__file__).parent
STYLES = ["link", "cursor"]


def cursor_of(page: int) -> str:
    """An opaque cursor with the characters a query must encode: + / and = padding."""
    return base64.b64encode(b"\xfb\xef\xbe\xff\xff\xff" + bytes([page])).decode()


def page_of(cursor: str) -> int:
    return base64.b64decode(cursor, validate=True)[-1]


def items_of(page: int) -> list[int]:
    return [page * 10, page * 10 + 1, page * 10 + 2]


def next_cursor(body: Any, response: Any) -> Any:
    """The cursor style's paginate=: the next URL is this one with the body's cursor."""
    cursor = body.get("next_cursor")
    return response.url.update_query(cursor=cursor) if cursor else None


@dataclass
class Api:
    """Two paginated endpoints over pages 1..last: ``/link?page=k`` (a bare list and an
    RFC 8288 ``Link`` header) and ``/cursor?cursor=C`` (``{"items", "next_cursor"}``)."""

    base: str = ""
    last: int = 20
    requested: list[int] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    # called with the page number of each request (the kill test kills there)
    on_request: Any = None

    def url(self, style: str) -> str:
        return f"{self.base}/{style}"

    def reader(self, style: str, **options: Any) -> http.StreamReader:
        if style == "link":
            made = http.reader(self.url("link"), paginate="link", stream=True, **options)
        else:
            made = http.reader(
                self.url("cursor"), paginate=next_cursor, stream=True, select="items", **options
            )
        assert isinstance(made, http.StreamReader)
        return made

    def page_url(self, style: str, page: int) -> str:
        if style == "link":
            return f"{self.base}/link?page={page}"
        if page == 1:
            return f"{self.base}/cursor"
        return str(URL(f"{self.base}/cursor").update_query(cursor=cursor_of(page)))

    def seen(self, request: web.Request, page: int) -> None:
        self.requested.append(page)
        self.queries.append(dict(request.query))
        self.headers.append(dict(request.headers))
        if self.on_request is not None:
            self.on_request(page)

    async def link(self, request: web.Request) -> web.Response:
        page = int(request.query.get("page", "1"))
        self.seen(request, page)
        headers = {}
        if page < self.last:
            headers["Link"] = f'</link?page={page + 1}>; rel="next"'
        return web.json_response(items_of(page), headers=headers)

    async def cursor(self, request: web.Request) -> web.Response:
        given = request.query.get("cursor")
        page = 1 if given is None else page_of(given)
        self.seen(request, page)
        body: dict[str, Any] = {"items": items_of(page)}
        if page < self.last:
            body["next_cursor"] = cursor_of(page + 1)
        return web.json_response(body)


def api_app(api: Api) -> web.Application:
    app = web.Application()
    app.router.add_get("/link", api.link)
    app.router.add_get("/cursor", api.cursor)
    return app


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    made = Api()
    async with serve(api_app(made)) as port:
        made.base = f"http://127.0.0.1:{port}"
        yield made


class Save:
    """An idempotent writer: the items by value (a page written twice changes nothing),
    failing once on the first record of page ``fail_on``."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.items: set[int] = set()
        self.fail_on = fail_on

    async def __call__(self, data: list[int]) -> None:
        if self.fail_on is not None and data[0] // 10 == self.fail_on:
            self.fail_on = None
            raise RuntimeError("the process dies here")
        self.items.update(data)


def every_item(last: int) -> set[int]:
    return {item for page in range(1, last + 1) for item in items_of(page)}


@pytest.mark.parametrize("style", STYLES)
async def test_each_record_is_marked_with_where_the_next_page_starts(api: Api, style: str):
    api.last = 5
    reader = api.reader(style)
    try:
        positions = [record.position async for record in reader()]  # type: ignore[attr-defined]
    finally:
        await reader.aclose()
    assert positions == [
        *({"url": api.page_url(style, page), "page": page} for page in range(2, 6)),
        {"url": api.page_url(style, 5), "page": 5},  # the last page: read again next time
    ]
    json.dumps(positions)  # JSON, as a checkpoint stores it


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("window", [1, 3])
async def test_a_flow_that_failed_partway_starts_again_at_the_last_committed_page(
    api: Api, tmp_path: Path, style: str, window: int
):
    save = Save(fail_on=6)
    store = files.checkpoints(tmp_path / "state.json")
    flow = DataFlow((step(api.reader(style), window=window), save), name="sync", checkpoint=store)
    async with flow:
        with pytest.raises(RuntimeError, match="dies here"):
            await flow()
        committed = (await store.load("sync"))["definition[0]"]
        if window == 1:
            assert committed == {"url": api.page_url(style, 6), "page": 6}
        assert committed["url"] == api.page_url(style, committed["page"])
        assert committed["page"] > 1
        api.requested.clear()
        await flow()
    # no page before the last committed one was requested again, and each page once
    assert api.requested == list(range(committed["page"], 21))
    assert save.items == every_item(20)
    assert (await store.load("sync"))["definition[0]"] == {
        "url": api.page_url(style, 20),
        "page": 20,
    }


@pytest.mark.parametrize("style", STYLES)
async def test_after_the_last_page_a_restart_reads_it_again_and_goes_on_when_it_grew(
    api: Api, tmp_path: Path, style: str
):
    api.last = 4
    save = Save()
    flow = DataFlow(
        (api.reader(style), save),
        name="sync",
        checkpoint=files.checkpoints(tmp_path / "state.json"),
    )
    async with flow:
        await flow()
        assert api.requested == [1, 2, 3, 4]
        api.requested.clear()
        await flow()  # nothing new: only the last page is read
        assert api.requested == [4]
        api.requested.clear()
        api.last = 6  # the API grew: its last page now has a next one
        await flow()
        assert api.requested == [4, 5, 6]
    assert save.items == every_item(6)


async def test_the_first_page_s_params_are_in_its_position_and_sent_once_again(
    api: Api, tmp_path: Path
):
    api.last = 1
    reader = http.reader(api.url("link"), params={"kind": "book"}, paginate="link", stream=True)
    save = Save()
    flow = DataFlow(
        (reader, save), name="one", checkpoint=files.checkpoints(tmp_path / "state.json")
    )
    async with flow:
        await flow()
        await flow()
    assert api.requested == [1, 1]
    assert api.queries == [{"kind": "book"}, {"kind": "book"}]
    assert json.loads((tmp_path / "state.json").read_text())["one"]["definition[0]"] == {
        "url": f"{api.base}/link?kind=book",
        "page": 1,
    }


async def test_a_resumed_page_on_another_origin_gets_no_secret_headers(api: Api, tmp_path: Path):
    other = Api()
    async with serve(api_app(other)) as port:
        other.base = f"http://127.0.0.1:{port}"
        state = tmp_path / "state.json"
        state.write_text(
            json.dumps({"s": {"definition[0]": {"url": other.page_url("link", 19), "page": 19}}})
        )
        reader = http.reader(
            api.url("link"),
            headers={"Authorization": "Bearer secret", "X-Trace": "t1"},
            paginate="link",
            stream=True,
        )
        async with DataFlow(
            (reader, Save()), name="s", checkpoint=files.checkpoints(state)
        ) as flow:
            await flow()
    assert api.requested == []
    assert other.requested == [19, 20]
    assert all("Authorization" not in h and h["X-Trace"] == "t1" for h in other.headers)


NOT_MINE = [
    17,
    "http://x/y",
    {"url": "/relative", "page": 2},
    {"url": "http://h/p"},
    {"url": "http://h/p", "page": 0},
]


@pytest.mark.parametrize("position", NOT_MINE)
async def test_a_position_this_reader_did_not_write_is_refused_saying_what_to_do(
    api: Api, tmp_path: Path, position: Any
):
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"s": {"definition[0]": position}}))
    flow = DataFlow((api.reader("link"), Save()), name="s", checkpoint=files.checkpoints(state))
    async with flow:
        with pytest.raises(http.StepArgumentError, match="did not write") as caught:
            await flow()
    assert "own name=" in str(caught.value)
    assert api.requested == []


# -- killed with SIGKILL and started again -------------------------------------------------


async def run_copy(api: Api, style: str, state: Path, out: Path, kill_at: int | None) -> int:
    """Run tests/http_pages_copy.py until it ends, or kill it with SIGKILL when the
    server sees the request for page ``kill_at``; its exit code."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "http_pages_copy.py"),
        api.url(style),
        style,
        str(state),
        str(out),
        env={**os.environ, "PYTHONPATH": str(HERE)},
    )

    def kill_there(page: int) -> None:
        if page == kill_at and proc.returncode is None:
            proc.send_signal(signal.SIGKILL)

    api.on_request = kill_there
    try:
        return await asyncio.wait_for(proc.wait(), timeout=120)
    finally:
        api.on_request = None
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.slow  # kill-and-restart: four child processes per style
@pytest.mark.parametrize("style", STYLES)
async def test_killed_and_started_again_no_page_before_the_committed_one_is_requested(
    api: Api, tmp_path: Path, style: str
):
    state, out = tmp_path / "state.json", tmp_path / "out.jsonl"
    committed: list[int] = []
    for kill_at in (5, 11, 16):
        api.requested.clear()
        code = await run_copy(api, style, state, out, kill_at)
        assert code == -signal.SIGKILL
        if committed:  # this run started at the page committed before it
            assert api.requested[0] == committed[-1]
            assert min(api.requested) == committed[-1]
        position = json.loads(state.read_text())["pages"]["definition[0]"]
        assert position["url"] == api.page_url(style, position["page"])
        committed.append(position["page"])
        assert 1 < position["page"] <= kill_at  # something committed, nothing unread
    assert committed == sorted(committed)
    api.requested.clear()
    assert await run_copy(api, style, state, out, None) == 0
    assert api.requested == list(range(committed[-1], 21))
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert {item for page in written for item in page} == every_item(20)
