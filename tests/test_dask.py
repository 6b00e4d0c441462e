"""asyncdataflow.dask.map on a real distributed.LocalCluster with two worker processes:
same results, order and errors as flow.map; bounded pending chunks; a killed worker;
unpicklable flows refused before submit; sessions and pools closed on the workers."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

import aiohttp  # noqa: E402
from _mysql_server import Tables, require_server, until_no_connections  # noqa: E402
from aiohttp import web  # noqa: E402

import asyncdataflow.dask  # noqa: E402
from asyncdataflow import DataFlow, step  # noqa: E402
from asyncdataflow.exceptions import (  # noqa: E402
    DataFlowCallError,
    DataFlowNotPicklableError,
)
from asyncdataflow.plugins import http, mysql  # noqa: E402

WORKER_PROCESSES = 2


# --- steps (module level: the workers import this module to unpickle them) ------------


def crunch(data: dict[str, Any]) -> dict[str, Any]:
    """A sync CPU step: some pure-Python work on what the HTTP step fetched."""
    total = 0
    for k in range(200):
        total = (total * 31 + data["sq"] + k) % 1_000_003
    if data["i"] % 997 == 13:
        raise ValueError(f"unlucky input {data['i']}")
    return {"i": data["i"], "value": total}


def where() -> str:
    try:
        return str(distributed.get_worker().address)
    except ValueError:
        return "local"


def crunch_where(data: dict[str, Any]) -> dict[str, Any]:
    return {**crunch(data), "where": where()}


def square(x: int) -> dict[str, Any]:
    return {"y": x * x}


def fail_at(x: int, bad: int) -> dict[str, Any]:
    if x == bad:
        raise KeyError(f"input {x} is bad")
    return {"y": x}


WORKER_WARNINGS: list[str] = []  # on a worker: every warning shown there


class RecordWarnings(distributed.WorkerPlugin):  # type: ignore[misc]
    """On each worker (restarted ones too): show every warning (ResourceWarning, shown
    by an unclosed aiohttp session, is ignored by default) into ``WORKER_WARNINGS``."""

    def setup(self, worker: Any) -> None:
        warnings.simplefilter("always")

        def record(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
            WORKER_WARNINGS.append(f"{category.__name__}: {message}")

        warnings.showwarning = record


def worker_state() -> dict[str, Any]:
    """Run on each worker: its pid, the aiohttp sessions still open there, and the
    warnings it showed (after a garbage collection, which warns of unclosed sessions)."""
    gc.collect()
    sessions = [
        o for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed
    ]
    return {"pid": os.getpid(), "open_sessions": len(sessions), "warnings": WORKER_WARNINGS}


def tasks_of(name: str, dask_scheduler: Any) -> list[str]:
    """Run on the scheduler: the keys it holds of the maps of the flow named ``name``."""
    return [str(k) for k in dask_scheduler.tasks if f"asyncdataflow.map-{name}-" in str(k)]


async def until_forgotten(client: Any, name: str, within: float = 30.0) -> list[str]:
    """Wait until the scheduler holds no task of the maps of ``name`` (a cancel is a
    message the scheduler handles a moment later), or ``within`` seconds pass; what it
    holds. The scheduler is another process: its state is polled, there is no event."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (held := await client.run_on_scheduler(tasks_of, name)) and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    return held


class HoldsALock:
    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, x: int) -> dict[str, int]:
        with self.lock:
            return {"y": x}


class HoldsASocket:
    def __init__(self) -> None:
        self.sock = socket.socket()

    async def __call__(self, x: int) -> dict[str, int]:
        return {"y": x}


# --- the cluster, the clients, the server ---------------------------------------------
# Every test that takes `cluster`, `sync_client` or `client` waits for a two-process
# LocalCluster: those are marked slow; the CLI refusals below start no cluster.


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    # Dask's nannies put their workers' environment (MALLOC_TRIM_THRESHOLD_,
    # PYTHONHASHSEED, OMP_NUM_THREADS, ...) into this process's os.environ, where every
    # later subprocess of the test run would inherit it: restore it when done.
    saved = dict(os.environ)
    try:
        yield from _cluster()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _cluster() -> Iterator[Any]:
    with distributed.LocalCluster(
        n_workers=WORKER_PROCESSES,
        threads_per_worker=2,
        processes=True,
        dashboard_address=":0",
        worker_dashboard_address=None,
    ) as cluster:
        with distributed.Client(cluster) as client:
            client.register_plugin(RecordWarnings(), name="record-warnings")
        yield cluster


@pytest.fixture(scope="module")
def sync_client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster) as client:
        yield client


@pytest.fixture
async def client(cluster: Any) -> AsyncIterator[Any]:
    async with distributed.Client(cluster.scheduler_address, asynchronous=True) as client:
        yield client


async def _item(request: web.Request) -> web.Response:
    i = int(request.match_info["i"])
    return web.json_response({"i": i, "sq": i * i})


class Server:
    def __init__(self) -> None:
        self.kill: dict[str, Any] = {}  # pid -> killed; set by the /kill handler
        self.killed = asyncio.Event()

    async def _kill(self, request: web.Request) -> web.Response:
        """The first call kills the worker process that made it (SIGKILL, from this
        process), mid-chunk; later calls (the chunk run again) just answer."""
        pid = int(request.query["pid"])
        if not self.killed.is_set():
            self.kill["pid"] = pid
            os.kill(pid, signal.SIGKILL)
            self.killed.set()
        return web.json_response({"ok": True})


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Server]]:
    state = Server()
    app = web.Application()
    app.router.add_get("/items/{i}", _item)
    app.router.add_get("/kill", state._kill)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", state
    finally:
        await runner.cleanup()


def http_flow(base: str, cpu: Any = crunch) -> DataFlow:
    return DataFlow((http.reader(f"{base}/items/{{i}}"), cpu), name="http-cpu")


def without_where(items: list[Any]) -> list[Any]:
    return [
        {k: v for k, v in item.items() if k != "where"} if isinstance(item, dict) else item
        for item in items
    ]


def as_comparable(items: list[Any]) -> list[Any]:
    """Results with exceptions replaced by (type, first line of message)."""
    return [
        (type(item).__name__, str(item).splitlines()[0])
        if isinstance(item, BaseException)
        else item
        for item in items
    ]


async def workers_of(client: Any) -> set[str]:
    info = await client.scheduler.identity()
    return set(info["workers"])


# --- results, order, errors -------------------------------------------------------------


@pytest.mark.slow
async def test_ten_thousand_inputs_give_flow_maps_results_in_order(
    client: Any, server: tuple[str, Server]
) -> None:
    base, _ = server
    flow = http_flow(base, crunch_where)
    inputs = [{"i": i} for i in range(10_000)]
    async with flow:
        local = [r async for r in flow.map(inputs, concurrency=50, return_exceptions=True)]
    remote = [
        r
        async for r in asyncdataflow.dask.map(
            flow,
            iter(inputs),
            client=client,
            concurrency=50,
            chunk_size=500,
            return_exceptions=True,
        )
    ]
    assert len(remote) == 10_000
    assert as_comparable(without_where(remote)) == as_comparable(without_where(local))
    failures = [r for r in remote if isinstance(r, BaseException)]
    assert [str(e) for e in failures] == [
        f"unlucky input {i}" for i in range(10_000) if i % 997 == 13
    ]
    assert all(isinstance(e, ValueError) for e in failures)
    ran_on = {r["where"] for r in remote if isinstance(r, dict)}
    assert "local" not in ran_on
    assert ran_on <= await workers_of(client)


@pytest.mark.slow
async def test_a_synchronous_client_works_from_inside_a_running_loop(
    sync_client: Any, server: tuple[str, Server]
) -> None:
    base, _ = server
    flow = http_flow(base, crunch_where)
    inputs = [{"i": i} for i in range(300)]
    remote = [
        r
        async for r in asyncdataflow.dask.map(
            flow,
            inputs,
            client=sync_client,
            concurrency=10,
            chunk_size=40,
            return_exceptions=True,
        )
    ]
    assert [r["i"] if isinstance(r, dict) else str(r) for r in remote] == [
        "unlucky input 13" if i == 13 else i for i in range(300)
    ]
    ran_on = {r["where"] for r in remote if isinstance(r, dict)}
    assert ran_on <= set(sync_client.scheduler_info()["workers"])
    async with flow:
        local = [r async for r in flow.map(inputs, concurrency=10, return_exceptions=True)]
    assert as_comparable(without_where(remote)) == as_comparable(without_where(local))


@pytest.mark.slow
async def test_the_first_failure_is_raised_after_the_results_before_it(client: Any) -> None:
    flow = DataFlow((fail_at,), name="fails-at-137")
    inputs = ({"x": i, "bad": 137} for i in range(1000))
    got: list[Any] = []
    held_while_running: list[str] = []

    async def consume() -> None:
        nonlocal held_while_running
        async for r in asyncdataflow.dask.map(
            flow, inputs, client=client, concurrency=4, chunk_size=50, max_pending=4
        ):
            if not got:
                held_while_running = await client.run_on_scheduler(tasks_of, "fails-at-137")
            got.append(r)

    with pytest.raises(KeyError, match="input 137 is bad") as caught:
        await consume()
    assert got == [{"y": i} for i in range(137)]
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "raised on worker tcp://" in notes
    assert "input #137" in notes
    # the chunks still pending were cancelled: the scheduler holds none of this map's tasks
    assert len(held_while_running) == 4
    assert await until_forgotten(client, "fails-at-137") == []


@pytest.mark.slow
async def test_return_exceptions_yields_each_failure_in_its_place(client: Any) -> None:
    flow = DataFlow((fail_at,))
    inputs = [{"x": i, "bad": i if i % 10 == 3 else -1} for i in range(95)]
    remote = [
        r
        async for r in asyncdataflow.dask.map(
            flow, inputs, client=client, concurrency=3, chunk_size=7, return_exceptions=True
        )
    ]
    assert len(remote) == 95
    for i, r in enumerate(remote):
        if i % 10 == 3:
            assert isinstance(r, KeyError)
            assert f"input {i} is bad" in str(r)
        else:
            assert r == {"y": i}


@pytest.mark.slow
async def test_an_async_input_iterable_works_too(client: Any) -> None:
    async def inputs() -> AsyncIterator[dict[str, int]]:
        for i in range(25):
            yield {"x": i}

    flow = DataFlow((square,))
    remote = [
        r
        async for r in asyncdataflow.dask.map(
            flow, inputs(), client=client, concurrency=2, chunk_size=4
        )
    ]
    assert remote == [{"y": i * i} for i in range(25)]


@pytest.mark.slow
async def test_an_input_that_is_not_a_mapping_is_named(client: Any) -> None:
    flow = DataFlow((square,))
    with pytest.raises(DataFlowCallError, match=r"input #3 is a int"):
        async for _ in asyncdataflow.dask.map(
            flow, [{"x": 0}, {"x": 1}, {"x": 2}, 3], client=client, concurrency=1
        ):
            pass


@pytest.mark.slow
async def test_bad_arguments_are_refused_when_map_is_called(client: Any) -> None:
    flow = DataFlow((square,))
    for bad in ({"concurrency": 0}, {"chunk_size": 0}, {"max_pending": 0}, {"retries": -1}):
        options = {"concurrency": 1, **bad}
        with pytest.raises(DataFlowCallError, match=next(iter(bad))):
            asyncdataflow.dask.map(flow, [], client=client, **options)
    with pytest.raises(DataFlowCallError, match="infinity loop"):
        asyncdataflow.dask.map(
            DataFlow((square,), infinity_loop=True), [], client=client, concurrency=1
        )


# --- bounded -----------------------------------------------------------------------------


@pytest.mark.slow
async def test_max_pending_chunks_are_never_exceeded(client: Any) -> None:
    """Counted from outside: a chunk is submitted once its inputs have been read, and
    consumed once all its results have been yielded. At every read, the chunks read but
    not consumed never exceed max_pending."""
    chunk_size, max_pending = 10, 3
    pulled = 0
    yielded = 0
    worst = 0

    def inputs() -> Iterator[dict[str, int]]:
        nonlocal pulled, worst
        for i in range(1000):
            pulled += 1
            read_chunks = -(-pulled // chunk_size)
            consumed_chunks = yielded // chunk_size
            worst = max(worst, read_chunks - consumed_chunks)
            yield {"x": i}

    flow = DataFlow((square,))
    async for r in asyncdataflow.dask.map(
        flow,
        inputs(),
        client=client,
        concurrency=5,
        chunk_size=chunk_size,
        max_pending=max_pending,
    ):
        assert r == {"y": yielded * yielded}
        yielded += 1
    assert yielded == 1000
    assert worst == max_pending  # reached (the cluster was kept busy), never exceeded


@pytest.mark.slow
async def test_closing_the_iterator_early_cancels_the_pending_chunks(client: Any) -> None:
    flow = DataFlow((square,), name="closed-early")
    runs = asyncdataflow.dask.map(
        flow, ({"x": i} for i in range(10_000)), client=client, concurrency=2, chunk_size=5
    )
    got = [await anext(runs) for _ in range(12)]
    assert await client.run_on_scheduler(tasks_of, "closed-early")
    await runs.aclose()  # type: ignore[attr-defined]
    assert got == [{"y": i * i} for i in range(12)]
    assert await until_forgotten(client, "closed-early") == []


# --- what can be sent --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("holder", "what"), [(HoldsALock, "lock"), (HoldsASocket, "socket")], ids=["lock", "socket"]
)
@pytest.mark.slow
async def test_an_unpicklable_flow_is_refused_before_anything_is_submitted(
    client: Any, holder: type[Any], what: str
) -> None:
    bad = holder()
    pulled: list[int] = []

    def inputs() -> Iterator[dict[str, int]]:
        for i in range(10):
            pulled.append(i)
            yield {"x": i}

    flow = DataFlow((square, (step(bad, name="holder"),)), name="unsendable")
    try:
        with pytest.raises(DataFlowNotPicklableError) as caught:
            asyncdataflow.dask.map(flow, inputs(), client=client, concurrency=1)
    finally:
        if isinstance(bad, HoldsASocket):
            bad.sock.close()
    message = str(caught.value)
    assert "'holder'" in message
    assert "definition[1][0]" in message
    assert "cannot be pickled" in message
    assert what in message
    assert pulled == []  # no input read, so no chunk could have been submitted


@pytest.mark.slow
async def test_a_flow_with_its_own_executor_is_refused_saying_why(client: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        flow = DataFlow((square,), executor=pool)
        with pytest.raises(DataFlowNotPicklableError, match="executor="):
            asyncdataflow.dask.map(flow, [], client=client, concurrency=1)


# --- what the workers open is closed -----------------------------------------------------


@pytest.mark.slow
async def test_http_sessions_opened_on_the_workers_are_closed(
    client: Any, server: tuple[str, Server]
) -> None:
    base, _ = server
    flow = http_flow(base, crunch_where)
    results = [
        r
        async for r in asyncdataflow.dask.map(
            flow,
            ({"i": i} for i in range(200)),
            client=client,
            concurrency=8,
            chunk_size=20,
            return_exceptions=True,
        )
    ]
    assert {r["where"] for r in results if isinstance(r, dict)} <= await workers_of(client)
    states = await client.run(worker_state)
    assert len(states) == WORKER_PROCESSES
    assert [s["open_sessions"] for s in states.values()] == [0] * WORKER_PROCESSES
    assert [s["warnings"] for s in states.values()] == [[]] * WORKER_PROCESSES


@pytest.fixture
def mysql_tables() -> Iterator[Tables]:
    made = Tables(require_server())
    try:
        yield made
    finally:
        made.drop()


@pytest.mark.slow
async def test_mysql_pools_opened_on_the_workers_are_closed(
    client: Any, mysql_tables: Tables
) -> None:
    user, url = mysql_tables.user()
    flow = DataFlow(
        (mysql.reader("SELECT CONNECTION_ID() AS id, %(x)s AS x", url=url),), name="pools"
    )
    results = [
        r
        async for r in asyncdataflow.dask.map(
            flow, ({"x": i} for i in range(60)), client=client, concurrency=4, chunk_size=10
        )
    ]
    # a reader returns "rows" (being renamed "data" in the pack)
    rows = [r["data" if "data" in r else "rows"][0] for r in results]
    assert [row["x"] for row in rows] == list(range(60))
    assert {row["id"] for row in rows}  # the workers did connect
    assert await until_no_connections(user) == []
    states = await client.run(worker_state)
    assert [s["warnings"] for s in states.values()] == [[]] * WORKER_PROCESSES


# --- a lost worker -----------------------------------------------------------------------


async def kill_my_worker(x: int, base: str) -> dict[str, int]:
    """At input 250, ask the test's server to kill this worker process (it does so while
    the request is open: the chunk dies with its worker)."""
    if x == 250:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base}/kill", params={"pid": str(os.getpid())}) as response,
        ):
            await response.read()
    return {"y": x * x}


@pytest.mark.slow
async def test_a_worker_killed_mid_map_the_map_still_completes(
    client: Any, server: tuple[str, Server]
) -> None:
    base, state = server
    pids = {s["pid"] for s in (await client.run(worker_state)).values()}
    flow = DataFlow((kill_my_worker,), name="survives")
    results = [
        r
        async for r in asyncdataflow.dask.map(
            flow,
            ({"x": i, "base": base} for i in range(600)),
            client=client,
            concurrency=4,
            chunk_size=25,
        )
    ]
    assert results == [{"y": i * i} for i in range(600)]
    assert state.killed.is_set()
    assert state.kill["pid"] in pids  # a worker process of the cluster was killed
    # the nanny restarts it: wait for the cluster to be whole again for the next tests
    await client.wait_for_workers(WORKER_PROCESSES)


# --- the CLI -----------------------------------------------------------------------------

TESTS = Path(__file__).resolve().parent


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-m", "asyncdataflow", *args],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_cli_map_with_dask_local_2_gives_the_same_outputs(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    rows = [json.dumps({"n": i}) for i in range(500)]
    rows[10:10] = ["not json", "", "[1, 2]"]
    source.write_text("\n".join(rows) + "\n")
    outputs = {}
    for how, extra in (("local", ()), ("dask", ("--dask", "local:2", "--chunk-size", "40"))):
        out, errors = tmp_path / f"{how}.out.jsonl", tmp_path / f"{how}.err.jsonl"
        done = run_cli(
            "map",
            "cli_flows:squares",
            "--input",
            str(source),
            "--output",
            str(out),
            "--errors",
            str(errors),
            "--concurrency",
            "20",
            *extra,
        )
        assert done.returncode == 1, done.stderr  # some inputs fail: exit 1 either way
        failing = sum(1 for n in range(500) if n % 7 == 3) + 2
        # stderr is not a terminal: the one summary line, and nothing from Dask
        assert re.fullmatch(
            rf"asyncdataflow map: 502 inputs, {502 - failing} ok, {failing} failed in "
            r"[\d.]+s \([\d.]+/s\)\n",
            done.stderr,
        ), done.stderr
        failures = [json.loads(line) for line in errors.read_text().splitlines()]
        for failure in failures:
            failure["error"].pop("notes", None)
        outputs[how] = (out.read_text(), failures)
    assert outputs["dask"] == outputs["local"]
    assert len(outputs["dask"][0].splitlines()) == 500 - sum(1 for n in range(500) if n % 7 == 3)


def test_cli_map_refuses_an_unpicklable_flow_before_starting_a_cluster(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"x": 1}\n')
    done = run_cli("map", "test_dask:unsendable", "--input", str(source), "--dask", "local:2")
    assert done.returncode == 2
    assert "cannot be sent to Dask workers" in done.stderr
    assert "definition[0]" in done.stderr
    assert "Traceback" not in done.stderr


unsendable = DataFlow((HoldsALock(),), name="unsendable")


def test_cli_map_refuses_dask_with_a_journal_saying_so(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"n": 1}\n')
    done = run_cli(
        "map",
        "cli_flows:squares",
        "--input",
        str(source),
        "--output",
        str(tmp_path / "out.jsonl"),
        "--journal",
        str(tmp_path / "journal"),
        "--dask",
        "local:2",
    )
    assert done.returncode == 2
    assert "--journal and --dask do not go together" in done.stderr
    assert not (tmp_path / "out.jsonl").exists()
