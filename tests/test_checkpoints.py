"""Checkpoints at run time (docs/durable.md): a flow with checkpoint= and name= starts its
first top-level source after the last committed position and commits each record's
position, in order, when the record has finished."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import Any

import pytest

from asyncdataflow import DataFlow, Record, resume_position, step
from asyncdataflow.exceptions import DataFlowDefinitionError, DataFlowRunError
from asyncdataflow.plugins import files


class Store:
    """A checkpoint store in memory that records every commit."""

    def __init__(self, positions: dict[str, Any] | None = None) -> None:
        self.positions = dict(positions or {})
        self.commits: list[Any] = []
        self.closed = False

    async def load(self, name: str) -> dict[str, Any]:
        return dict(self.positions.get(name, {}))

    async def commit(self, name: str, positions: Any) -> None:
        self.positions[name] = dict(positions)
        self.commits.append(positions["definition[0]"])

    async def aclose(self) -> None:
        self.closed = True


async def numbers(stop: int = 10) -> Any:
    after = resume_position()
    for n in range(0 if after is None else after + 1, stop):
        yield Record({"n": n}, position=n)


def test_checkpoint_needs_a_name_a_store_and_a_top_level_source() -> None:
    with pytest.raises(DataFlowDefinitionError, match="needs name="):
        DataFlow((numbers,), checkpoint=Store())
    with pytest.raises(DataFlowDefinitionError, match="not a checkpoint store"):
        DataFlow((numbers,), name="x", checkpoint=object())
    with pytest.raises(DataFlowDefinitionError, match="top level"):
        DataFlow((lambda: {},), name="x", checkpoint=Store())


async def test_a_run_resumes_after_the_last_committed_position() -> None:
    store = Store()
    seen: list[int] = []

    async def save(n: int) -> None:
        seen.append(n)
        if seen == [0, 1, 2, 3, 4]:
            raise RuntimeError("killed")

    flow = DataFlow((numbers, save), name="nums", checkpoint=store)
    with pytest.raises(RuntimeError):
        await flow()
    assert store.positions == {"nums": {"definition[0]": 3}}  # record 4 did not finish
    await flow()
    assert seen == [0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9]
    assert store.commits == list(range(10))
    await flow.aclose()
    assert store.closed


async def test_records_commit_in_order_with_a_window() -> None:
    """Record 0 is held back while 1..3 finish: nothing is committed until it finishes,
    then the last released position is."""
    store = Store()
    release = asyncio.Event()
    finished: list[int] = []

    async def work(n: int) -> dict[str, int]:
        if n == 0:
            await release.wait()
        finished.append(n)
        if len(finished) == 3:
            assert store.commits == []  # 1, 2, 3 done, 0 not: nothing committed
            release.set()
        return {"n": n}

    flow = DataFlow((step(numbers, window=4), work), name="w", checkpoint=store)
    await flow(stop=8)
    assert store.commits[-1] == 7
    assert store.commits == sorted(store.commits)
    assert store.commits[0] >= 3  # 0..3 released together: one commit


async def test_a_record_without_a_position_commits_nothing() -> None:
    store = Store()

    async def plain() -> Any:
        yield {"n": 1}
        yield Record({"n": 2}, position="two")
        yield {"n": 3}

    await DataFlow((plain, lambda n: None), name="p", checkpoint=store)()
    assert store.commits == ["two"]


async def test_record_is_a_dict_and_positions_are_ignored_without_a_checkpoint() -> None:
    record = Record({"a": 1}, position=5)
    assert record == {"a": 1}
    assert record.position == 5
    assert Record().position is None

    async def src() -> Any:
        yield Record({"n": 1}, position=1)

    assert [r async for r in DataFlow((src, lambda n: {"m": n})).stream()] == [{"m": 1}]


async def test_a_source_inside_a_record_starts_from_its_beginning() -> None:
    store = Store({"o": {"definition[0]": 0}})
    inner_starts: list[Any] = []

    async def outer() -> Any:
        yield Record({"k": 1}, position=resume_position())

    async def inner(k: int) -> Any:
        inner_starts.append(resume_position())
        yield {"v": k}

    await DataFlow((outer, inner, lambda v: None), name="o", checkpoint=store)()
    assert inner_starts == [None]


@pytest.mark.parametrize("fmt", ["jsonl", "text", "csv"])
async def test_files_reader_resumes_after_the_byte_offset(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"in.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps({"n": n, "s": "ü"}) + "\n" for n in range(25)))
    elif fmt == "text":
        path.write_text("".join(f"line ü {n}\n" for n in range(25)))
    else:
        with path.open("w", newline="") as file:
            out = csv.writer(file)
            out.writerow(["n", "s"])
            for n in range(25):
                out.writerow([n, f"multi\nline ü {n}"])
    store = files.checkpoints(tmp_path / "state.json")
    got: list[Any] = []
    failed: list[bool] = []

    async def save(data: list[Any]) -> None:
        got.extend(data)
        if len(got) == 20 and not failed:
            failed.append(True)
            raise RuntimeError("stop")

    flow = DataFlow(
        (files.reader(path, format=fmt, chunk_size=10), save), name="copy", checkpoint=store
    )
    with pytest.raises(RuntimeError):
        await flow()
    offset = (await store.load("copy"))["definition[0]"]
    lines = path.read_bytes().splitlines(keepends=True)
    assert offset == len(b"".join(lines[: 21 if fmt == "csv" else 10]))  # after 10 items
    del got[10:]  # the second record failed: it runs again
    await flow()
    whole = (await files.reader(path, format=fmt)())["data"]
    assert got == (whole.splitlines() if fmt == "text" else whole)
    assert (await store.load("copy"))["definition[0]"] == path.stat().st_size


async def test_mysql_reader_resumes_by_a_column(tmp_path: Path, tables: Any) -> None:
    from _mysql_server import sql

    from asyncdataflow.plugins import mysql

    table = tables.create("id INT PRIMARY KEY, v VARCHAR(10)")
    sql(f"INSERT INTO `{table}` VALUES " + ", ".join(f"({n}, '{n}%')" for n in range(1, 26)))
    store = files.checkpoints(tmp_path / "state.json")
    got: list[int] = []
    failed: list[bool] = []

    async def save(data: list[Any]) -> None:
        got.extend(r["id"] for r in data)
        if len(got) == 20 and not failed:
            failed.append(True)
            raise RuntimeError("stop")

    query = f"SELECT id, v FROM `{table}` WHERE v LIKE '%%'"
    async with DataFlow(
        (mysql.reader(query, url=tables.url, chunk_size=10, resume_by="id"), save),
        name="by-id",
        checkpoint=store,
    ) as flow:
        with pytest.raises(RuntimeError):
            await flow()
        assert await store.load("by-id") == {"definition[0]": 10}
        await flow()
    assert got == [*range(1, 21), *range(11, 26)]
    assert await store.load("by-id") == {"definition[0]": 25}


async def test_a_flow_with_a_checkpoint_runs_one_run_at_a_time() -> None:
    """Two runs at once would both start after the same position: the second is refused;
    once the first has ended, the next run goes on."""
    store = Store()
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold(n: int) -> None:
        entered.set()
        await release.wait()

    flow = DataFlow((numbers, hold), name="once", checkpoint=store)
    first = asyncio.ensure_future(flow())
    await entered.wait()
    with pytest.raises(DataFlowRunError, match="already going on"):
        await flow()
    release.set()
    await first
    assert store.commits == list(range(10))
    await flow()  # the store says all is done: nothing more, and no refusal
    assert store.commits == list(range(10))


async def test_records_that_finish_while_a_commit_is_awaited_are_released() -> None:
    """A store whose commit takes a while: the last records finish during it, and the
    run still ends (it used to wait for a wake-up that had already passed)."""
    committing = asyncio.Event()
    both_done = asyncio.Event()
    finished: list[int] = []

    class SlowStore(Store):
        async def commit(self, name: str, positions: Any) -> None:
            committing.set()
            await both_done.wait()  # records 1 and 2 finish during this commit
            for _ in range(3):  # and their tasks' done callbacks run (call_soon) before it ends
                await asyncio.sleep(0)
            await super().commit(name, positions)

    async def three() -> Any:
        for n in range(3):
            yield Record({"n": n}, position=n)

    async def work(n: int) -> None:
        if n:
            await committing.wait()
        finished.append(n)
        if len(finished) == 3:
            both_done.set()

    store = SlowStore()
    flow = DataFlow((step(three, window=4), work), name="slow-commit", checkpoint=store)
    await asyncio.wait_for(flow(), 10)
    assert store.commits == [0, 2]  # released together after the first commit: the last
