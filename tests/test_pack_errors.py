"""Issue 12, items 6, 7, 8 and 24: secrets by name rules, dot segments in URL templates,
URLs with an unencoded password, and the pack's exceptions under DataFlowError. Against
a real aiohttp server on 127.0.0.1 (a second origin: localhost), real files, and the
factories of the MySQL pack (which refuse before any I/O)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from asyncdataflow import DataFlow
from asyncdataflow.exceptions import DataFlowDefinitionError, DataFlowError, DataFlowRunError
from asyncdataflow.plugins import files, http, mysql
from asyncdataflow.plugins.http import _url

try:
    from _loopback import serve
    from _mysql_server import NOWHERE
except ImportError:  # tests/ imported as a package
    from tests._loopback import serve  # type: ignore[no-redef]
    from tests._mysql_server import NOWHERE  # type: ignore[no-redef]

SEEN = web.AppKey("seen", list)


async def _echo(request: web.Request) -> web.Response:
    request.app[SEEN].append(request)
    return web.json_response({"raw_path": request.raw_path, "headers": dict(request.headers)})


async def _missing(request: web.Request) -> web.Response:
    request.app[SEEN].append(request)
    return web.Response(status=404)


async def _redirect(request: web.Request) -> web.Response:
    request.app[SEEN].append(request)
    raise web.HTTPFound(request.query["to"])


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = web.Application()
    app[SEEN] = []
    app.router.add_get("/redirect", _redirect)
    app.router.add_get("/missing", _missing)
    app.router.add_get("/{tail:.*}", _echo)
    async with serve(app) as port:
        yield port


@pytest.fixture
def added_names() -> Iterator[None]:
    before = set(_url._added)
    try:
        yield
    finally:
        _url._added.clear()
        _url._added.update(before)


# --- 6: secrets by name -----------------------------------------------------------------

VENDOR = {"Ocp-Apim-Subscription-Key": "ocp-S3CRET", "DD-APPLICATION-KEY": "dd-S3CRET"}


@pytest.mark.parametrize(
    "name",
    [
        "Ocp-Apim-Subscription-Key",
        "DD-APPLICATION-KEY",
        "access_key",
        "pwd",
        "X-Session-Id",
        "client_secret",
        "X-Amz-Security-Token",
        "X-Credential",
        "sig",
    ],
)
def test_names_holding_a_secret_part_are_secret(name: str):
    assert _url.is_secret_name(name)
    assert _url.is_secret_name(name.upper())


def test_plain_names_are_not_secret():
    for name in ("Accept", "page", "X-Request-Id", "user", "Content-Type"):
        assert not _url.is_secret_name(name)


async def test_vendor_key_headers_are_not_logged_nor_sent_to_another_origin(
    port: int, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="asyncdataflow.plugins.http")
    elsewhere = f"http://localhost:{port}/there"
    step = http.reader(f"http://127.0.0.1:{port}/redirect?to={elsewhere}", headers=VENDOR)
    try:
        data = (await step())["data"]
    finally:
        await step.aclose()
    assert data["raw_path"] == "/there"
    assert not set(VENDOR) & set(data["headers"])
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "127.0.0.1" in logged
    assert "S3CRET" not in logged


async def test_secret_query_parameters_are_masked_in_the_name_and_the_error(port: int):
    url = f"http://127.0.0.1:{port}/missing?access_key=AK-S3CRET&pwd=PW-S3CRET&page=2"
    step = http.reader(url)
    async with DataFlow((step,)) as flow:
        with pytest.raises(aiohttp.ClientResponseError) as info:
            await flow()
    shown = [step.__qualname__, repr(step), str(info.value), *info.value.__notes__]
    assert not [text for text in shown if "S3CRET" in text]
    assert "page=2" in step.__qualname__
    assert "access_key=***" in str(info.value)


async def test_names_the_user_adds_are_secret(port: int, added_names: None):
    http.add_secret_names("X-Tenant-Pin", "pin")
    elsewhere = f"http://localhost:{port}/there"
    step = http.reader(
        f"http://127.0.0.1:{port}/redirect?to={elsewhere}&pin=P1N-S3CRET",
        headers={"X-Tenant-Pin": "1234", "X-Plain": "p"},
    )
    try:
        data = (await step())["data"]
    finally:
        await step.aclose()
    assert "S3CRET" not in step.__qualname__
    assert "x-tenant-pin" not in {k.lower() for k in data["headers"]}
    assert data["headers"]["X-Plain"] == "p"


def test_add_secret_names_refuses_what_is_not_a_name(added_names: None):
    with pytest.raises(DataFlowDefinitionError):
        http.add_secret_names("")


# --- 7: dot segments --------------------------------------------------------------------


@pytest.mark.parametrize(("value", "raw"), [("..", "%2E%2E"), (".", "%2E"), ("...", "...")])
async def test_a_dot_segment_value_fills_its_segment(port: int, value: str, raw: str):
    step = http.reader(f"http://127.0.0.1:{port}" + "/tenants/{tenant}/users")
    try:
        data = (await step(tenant=value))["data"]
    finally:
        await step.aclose()
    assert data["raw_path"] == f"/tenants/{raw}/users"


async def test_a_dot_segment_with_params_and_the_writer(port: int):
    read = http.reader(f"http://127.0.0.1:{port}" + "/a/{x}/b", params={"q": "1"})
    write = http.writer(f"http://127.0.0.1:{port}" + "/a/{x}/b", method="GET")
    try:
        assert (await read(x=".."))["data"]["raw_path"] == "/a/%2E%2E/b?q=1"
        assert (await write(x="..", data=None))["response"]["raw_path"] == "/a/%2E%2E/b"
    finally:
        await read.aclose()
        await write.aclose()


# --- 8: a password with an unencoded / or # ---------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://bob:12/34@127.0.0.1/x", "http://bob:pa#ss@127.0.0.1/x", "http://bob:a?b@h/x"],
)
def test_an_http_url_with_an_unencoded_password_is_refused_without_showing_it(url: str):
    password = url.split(":", 2)[2].rsplit("@", 1)[0]
    with pytest.raises(DataFlowDefinitionError, match="percent-encode") as info:
        http.reader(url)
    assert password not in str(info.value)
    with pytest.raises(DataFlowDefinitionError, match="percent-encode"):
        http.writer(url)
    assert password not in _url.redact_url(url)


async def test_an_http_url_parameter_with_an_unencoded_password_is_refused(port: int):
    step = http.reader()
    try:
        with pytest.raises(http.StepArgumentError, match="percent-encode") as info:
            await step(url=f"http://bob:12/34@127.0.0.1:{port}/x")
    finally:
        await step.aclose()
    assert isinstance(info.value, DataFlowRunError)
    assert "12/34" not in str(info.value)


def test_a_mysql_url_with_an_unencoded_password_is_refused_without_showing_it():
    for make in (mysql.reader, mysql.execute):
        with pytest.raises(DataFlowDefinitionError, match="percent-encode") as info:
            make("SELECT 1", url="mysql://app:2024/Winter@db/shop")
        assert "Winter" not in str(info.value)
    with pytest.raises(DataFlowDefinitionError, match="percent-encode") as info:
        mysql.writer("t", url="mysql://app:pa#ss@db/shop")
    assert "pa#ss" not in str(info.value)
    # encoded, the same password is fine
    assert "2024" not in repr(mysql.reader("SELECT 1", url="mysql://app:2024%2FWinter@db/shop"))


# --- 24: every exception for the user's input is a DataFlowError ------------------------


async def test_a_bad_run_time_path_is_a_run_error_not_a_definition_error(tmp_path: Path):
    with pytest.raises(files.StepArgumentError) as info:
        await files.reader()(path=3)
    assert isinstance(info.value, DataFlowRunError)
    assert not isinstance(info.value, DataFlowDefinitionError)
    with pytest.raises(DataFlowRunError, match="template"):
        await files.writer(str(tmp_path / "{n:03d}.txt"))(data="x", n="seven")


async def test_path_outside_base_dir_is_a_run_error(tmp_path: Path):
    with pytest.raises(files.PathOutsideBaseDirError) as info:
        await files.reader(base_dir=tmp_path)(path="../x")
    assert isinstance(info.value, DataFlowRunError)
    assert isinstance(info.value, ValueError)  # as before


async def test_bad_data_for_a_writer_is_a_run_error(tmp_path: Path):
    cases = [
        (files.writer(tmp_path / "a.txt"), {"data": b"bytes"}),
        (files.writer(tmp_path / "a.json", format="json"), {"data": {1, 2}}),
        (mysql.writer("t", url=NOWHERE), {"data": "not rows"}),
        (mysql.writer("t", url=NOWHERE), {"data": [{"bad key": 1}]}),
        (mysql.reader("SELECT %(a)s", url=NOWHERE), {}),
        (http.writer("http://127.0.0.1:1/x", format="bytes"), {"data": "str"}),
        (http.reader(), {"url": 3}),
        (http.reader(), {"url": "/relative"}),
    ]
    for step_, kwargs in cases:
        try:
            with pytest.raises(DataFlowRunError) as info:
                await step_(**kwargs)
        finally:
            await step_.aclose()
        assert isinstance(info.value, DataFlowError)


def test_bad_factory_arguments_are_definition_errors(tmp_path: Path):
    makers = [
        lambda: http.reader("http://h/x", auth=("a:b", "c")),
        lambda: http.reader("http://h/x", select=""),
        lambda: mysql.writer("bad table", url=NOWHERE),
        lambda: mysql.writer("t", url=NOWHERE, columns=["bad col"]),
        lambda: files.reader(tmp_path, format="xml"),
    ]
    for make in makers:
        with pytest.raises(DataFlowDefinitionError):
            make()


@pytest.mark.parametrize(
    ("importing", "library", "says"),
    [
        ("from asyncdataflow.plugins import files", "aiofiles", "files needs aiofiles"),
        ("from asyncdataflow.plugins.http import reader", "aiohttp", "http needs aiohttp"),
        (
            "import asyncdataflow.plugins.metrics",
            "prometheus_client",
            "metrics needs prometheus_client",
        ),
        (
            "import asyncdataflow.plugins.tracing",
            "opentelemetry",
            "tracing needs opentelemetry-api",
        ),
    ],
)
def test_an_integration_without_its_library_names_the_extra_to_install(
    importing: str, library: str, says: str
) -> None:
    import subprocess
    import sys

    code = f"import sys\nsys.modules[{library!r}] = None  # as if not installed\n{importing}\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    last = done.stderr.strip().splitlines()[-1]
    extra = says.split()[0]
    assert last == (
        f'ImportError: asyncdataflow.plugins.{says}: pip install "asyncdataflow[{extra}]"'
    )
