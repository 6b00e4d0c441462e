"""The pack's one vocabulary: readers return ``data``, writers take ``data``, ``key=``
renames both, ``http.reader(select=...)`` picks the records out of a JSON body, and every
pack step declares its output keys. Against a real aiohttp server on 127.0.0.1, the real
MariaDB and real files."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from asyncdataflow import DataFlow
from asyncdataflow.exceptions import DataFlowDefinitionError, DataFlowRunError
from asyncdataflow.plugins import files, http, mysql

try:
    from _loopback import serve
    from _mysql_server import NOWHERE, Tables, sql
except ImportError:  # tests/ imported as a package
    from tests._loopback import serve  # type: ignore[no-redef]
    from tests._mysql_server import NOWHERE, Tables, sql  # type: ignore[no-redef]

OUTPUTS = "__asyncdataflow_outputs__"


# --- a server with JSON envelopes and pages ---------------------------------------------


async def _envelope(request: web.Request) -> web.Response:
    return web.json_response({"result": {"items": [{"id": 1}, {"id": 2}]}, "count": 2})


async def _page(request: web.Request) -> web.Response:
    page = int(request.query.get("page", "1"))
    body: dict[str, object] = {"items": [{"id": page * 10 + i} for i in range(2)]}
    if page < 3:
        body["next"] = f"/pages?page={page + 1}"
    return web.json_response(body)


async def _users(request: web.Request) -> web.Response:
    return web.json_response({"items": ["ann", "bob"]})


async def _orders(request: web.Request) -> web.Response:
    return web.json_response([{"order": 1}, {"order": 2}, {"order": 3}])


@pytest.fixture
async def base() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/envelope", _envelope)
    app.router.add_get("/pages", _page)
    app.router.add_get("/users", _users)
    app.router.add_get("/orders", _orders)
    async with serve(app) as port:
        yield f"http://127.0.0.1:{port}"


# --- declared outputs and parameters ----------------------------------------------------


def test_every_pack_step_declares_its_outputs_with_key_taken_into_account(tmp_path: Path):
    assert getattr(files.reader(tmp_path / "a"), OUTPUTS) == ("data",)
    assert getattr(files.reader(tmp_path / "a", key="a"), OUTPUTS) == ("a",)
    assert getattr(files.writer(tmp_path / "a"), OUTPUTS) == ("path",)
    assert getattr(http.reader("http://h/x"), OUTPUTS) == ("data",)
    assert getattr(http.reader("http://h/x", key="users"), OUTPUTS) == ("users",)
    assert getattr(http.writer("http://h/x"), OUTPUTS) == ("status", "response")
    assert getattr(mysql.reader("SELECT 1", url=NOWHERE), OUTPUTS) == ("data",)
    assert getattr(mysql.reader("SELECT 1", url=NOWHERE, key="n"), OUTPUTS) == ("n",)
    assert getattr(mysql.writer("t", url=NOWHERE), OUTPUTS) == ("rowcount",)
    assert getattr(mysql.execute("DELETE FROM t", url=NOWHERE), OUTPUTS) == ("rowcount",)


def test_the_compiler_sees_the_declared_outputs(tmp_path: Path):
    flow = DataFlow((files.reader(tmp_path / "a", key="a"), files.writer(tmp_path / "b", key="a")))
    assert [s.outputs for s in flow.plan.steps()] == [("a",), ("path",)]


def test_every_writer_takes_data_or_its_key(tmp_path: Path):
    def params(step: object) -> list[str]:
        return list(inspect.signature(step).parameters)  # type: ignore[arg-type]

    assert params(files.writer(tmp_path / "a")) == ["data"]
    assert params(files.writer(tmp_path / "a", key="rows")) == ["rows"]
    assert params(mysql.writer("t", url=NOWHERE)) == ["data"]
    assert params(mysql.writer("t", url=NOWHERE, key="orders")) == ["orders"]
    assert params(http.writer("http://h/x"))[0] == "data"
    assert params(http.writer("http://h/x", key="report"))[0] == "report"


@pytest.mark.parametrize("bad", ["", "a-b", "1a", "class", 3, None])
def test_a_key_that_cannot_be_a_parameter_is_refused_when_the_step_is_made(bad, tmp_path):
    makers = [
        lambda: files.reader(tmp_path / "a", key=bad),
        lambda: files.writer(tmp_path / "a", key=bad),
        lambda: http.reader("http://h/x", key=bad),
        lambda: http.writer("http://h/x", key=bad),
        lambda: mysql.reader("SELECT 1", url=NOWHERE, key=bad),
        lambda: mysql.writer("t", url=NOWHERE, key=bad),
    ]
    for make in makers:
        with pytest.raises(DataFlowDefinitionError, match=r"key=.*Python identifier"):
            make()


def test_a_writer_key_that_clashes_with_a_template_field_is_refused(tmp_path: Path):
    with pytest.raises(DataFlowDefinitionError, match="rename the field"):
        files.writer(str(tmp_path / "{day}.jsonl"), key="day")
    with pytest.raises(DataFlowDefinitionError, match="clash"):
        http.writer("http://h/{report}", key="report")
    with pytest.raises(DataFlowDefinitionError, match="placeholder"):
        mysql.reader("SELECT %(n)s AS n", url=NOWHERE, key="n")


# --- flows without any mapping ----------------------------------------------------------


async def test_files_reader_into_mysql_writer_needs_no_mapping(tables: Tables, tmp_path: Path):
    table = tables.create("id INT PRIMARY KEY, name VARCHAR(20)")
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "name": f"n{i}"}) + "\n" for i in range(5)))
    async with DataFlow(
        (files.reader(source, format="jsonl"), mysql.writer(table, url=tables.url))
    ) as flow:
        assert await flow() == {"rowcount": 5}
    assert sql(f"SELECT id, name FROM `{table}` ORDER BY id") == [(i, f"n{i}") for i in range(5)]


async def test_mysql_reader_into_files_writer_needs_no_mapping(tables: Tables, tmp_path: Path):
    table = tables.create("id INT PRIMARY KEY")
    sql(f"INSERT INTO `{table}` VALUES (1), (2)")
    target = tmp_path / "out.jsonl"
    async with DataFlow(
        (
            mysql.reader(f"SELECT id FROM `{table}` ORDER BY id", url=tables.url),
            files.writer(target, format="jsonl"),
        )
    ) as flow:
        await flow()
    assert target.read_text() == '{"id": 1}\n{"id": 2}\n'


async def test_two_file_readers_with_key_merge_in_one_concurrent_block(tmp_path: Path):
    (tmp_path / "a.json").write_text("[1, 2]")
    (tmp_path / "b.json").write_text("[3]")

    def join(a: list[int], b: list[int]) -> dict[str, list[int]]:
        return {"data": a + b}

    target = tmp_path / "ab.json"
    flow = DataFlow(
        (
            (
                (files.reader(tmp_path / "a.json", format="json", key="a"),),
                (files.reader(tmp_path / "b.json", format="json", key="b"),),
            ),
            join,
            files.writer(target, format="json"),
        )
    )
    await flow()
    assert json.loads(target.read_text()) == [1, 2, 3]


async def test_two_mysql_readers_and_an_http_reader_with_key_merge(tables: Tables, base: str):
    table = tables.create("id INT PRIMARY KEY")
    sql(f"INSERT INTO `{table}` VALUES (7)")
    async with DataFlow(
        (
            (  # one concurrent block of three readers
                (mysql.reader(f"SELECT id FROM `{table}`", url=tables.url, key="ids"),),
                (mysql.reader("SELECT 1 AS one", url=tables.url, key="ones"),),
                (http.reader(base + "/users", select="items", key="users"),),
            ),
        )
    ) as flow:
        assert await flow() == {"ids": [{"id": 7}], "ones": [{"one": 1}], "users": ["ann", "bob"]}


async def test_a_writer_with_key_takes_that_parameter(tables: Tables):
    table = tables.create("id INT PRIMARY KEY")
    async with DataFlow((mysql.writer(table, url=tables.url, key="orders"),)) as flow:
        assert await flow(orders=[{"id": 1}]) == {"rowcount": 1}
    assert sql(f"SELECT id FROM `{table}`") == [(1,)]


# --- select= ----------------------------------------------------------------------------


async def test_select_returns_the_records_at_a_dotted_path(base: str):
    step = http.reader(base + "/envelope", select="result.items")
    try:
        assert await step() == {"data": [{"id": 1}, {"id": 2}]}
        one = http.reader(base + "/envelope", select="result.items.1.id")
        assert await one() == {"data": 2}
        await one.aclose()
    finally:
        await step.aclose()


async def test_select_with_pagination_takes_each_pages_selection(base: str):
    def next_page(body: dict[str, object], response: object) -> object:
        return body.get("next")  # the paginator gets the whole body

    step = http.reader(base + "/pages", select="items", paginate=next_page)
    try:
        result = await step()
    finally:
        await step.aclose()
    assert result == {"data": [{"id": n} for n in (10, 11, 20, 21, 30, 31)]}


async def test_a_missing_selection_names_what_is_there(base: str):
    step = http.reader(base + "/envelope", select="result.rows")
    try:
        with pytest.raises(http.SelectError, match=r"'result\.rows'.*keys \['items'\]") as info:
            await step()
    finally:
        await step.aclose()
    assert isinstance(info.value, DataFlowRunError)


@pytest.mark.parametrize("bad", ["", "a..b", ".a", 3])
def test_a_bad_select_is_refused_when_the_step_is_made(bad):
    with pytest.raises(DataFlowDefinitionError, match="select="):
        http.reader("http://h/x", select=bad)


def test_select_does_not_go_with_text_or_bytes():
    with pytest.raises(DataFlowDefinitionError, match="format='text'"):
        http.reader("http://h/x", select="items", format="text")
