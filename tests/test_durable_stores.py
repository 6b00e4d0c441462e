"""Checkpoint stores and dead-letter sinks (the durable-runs building blocks), against
real files and the real MySQL/MariaDB server."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from _mysql_server import Tables, connect_kwargs, sql

from asyncdataflow.durable import CheckpointStore, DeadLetter, DeadLetterSink
from asyncdataflow.exceptions import DataFlowDefinitionError, DataFlowRunError
from asyncdataflow.plugins import files, mysql


def letter(n: int, **extra: Any) -> DeadLetter:
    try:
        raise ValueError(f"bad record {n}")
    except ValueError as error:
        error.add_note("asyncdataflow: raised by step 'save' at definition[2]")
        return DeadLetter.from_error(
            error,
            flow="sync",
            step="save",
            path="definition[2]",
            input={"n": n, **extra},
            attempts=3,
            record=(n,),
        )


# -- protocols --------------------------------------------------------------------------


def test_the_pack_stores_and_sinks_implement_the_protocols(tmp_path: Path) -> None:
    url = "mysql://root@127.0.0.1:3306/test"
    assert isinstance(files.checkpoints(tmp_path / "c.json"), CheckpointStore)
    assert isinstance(mysql.checkpoints(url=url), CheckpointStore)
    assert isinstance(files.dead_letters(tmp_path / "d.jsonl"), DeadLetterSink)
    assert isinstance(mysql.dead_letters(url=url), DeadLetterSink)


def test_a_letter_holds_every_field_and_round_trips_through_json() -> None:
    one = letter(7, when=object())
    assert one.error_type == "ValueError"
    assert one.message == "bad record 7"
    assert one.notes == ("asyncdataflow: raised by step 'save' at definition[2]",)
    assert (one.flow, one.step, one.path, one.attempts, one.record) == (
        "sync",
        "save",
        "definition[2]",
        3,
        (7,),
    )
    back = DeadLetter.from_json(one.to_json(), id="x")
    assert back.id == "x"
    assert back.input["n"] == 7
    assert back.input["when"].startswith("<object object")  # what JSON cannot hold: repr
    assert (back.message, back.notes, back.time) == (one.message, one.notes, one.time)


# -- files ------------------------------------------------------------------------------


async def test_file_checkpoints_load_what_was_committed_per_name(tmp_path: Path) -> None:
    store = files.checkpoints(tmp_path / "state.json")
    assert await store.load("a") == {}
    await store.commit("a", {"definition[0]": 10})
    await store.commit("b", {"definition[0]": {"page": "c2"}})
    await store.commit("a", {"definition[0]": 20})
    again = files.checkpoints(tmp_path / "state.json")  # as after a restart
    assert await again.load("a") == {"definition[0]": 20}
    assert await again.load("b") == {"definition[0]": {"page": "c2"}}
    assert json.loads((tmp_path / "state.json").read_text())["a"] == {"definition[0]": 20}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("bad", [float("nan"), object(), b"bytes", {1: "x"}])
async def test_a_position_json_cannot_store_exactly_is_refused(tmp_path: Path, bad: Any) -> None:
    store = files.checkpoints(tmp_path / "state.json")
    with pytest.raises(DataFlowRunError, match="positions are JSON values"):
        await store.commit("a", {"definition[0]": bad})
    assert not (tmp_path / "state.json").exists()


@pytest.mark.parametrize("name", ["", "x" * 192, 5])
async def test_a_checkpoint_name_must_be_a_short_str(tmp_path: Path, name: Any) -> None:
    with pytest.raises(DataFlowDefinitionError, match=r"name='\.\.\.'"):
        await files.checkpoints(tmp_path / "s.json").load(name)


async def test_a_file_not_written_by_the_store_is_named_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(DataFlowRunError, match=r"s\.json is not valid JSON"):
        await files.checkpoints(tmp_path / "s.json").load("a")


def _commit_many(path: str, name: str, count: int) -> None:
    async def main() -> None:
        store = files.checkpoints(path)
        for i in range(count):
            await store.commit(name, {"definition[0]": i})

    asyncio.run(main())


@pytest.mark.slow  # two spawned processes, 40 locked, fsync'd rewrites each
def test_two_processes_committing_to_one_file_lose_neither_name(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_commit_many, args=(path, n, 40)) for n in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    stored = json.loads(Path(path).read_text())
    assert stored == {"a": {"definition[0]": 39}, "b": {"definition[0]": 39}}


async def test_file_dead_letters_put_read_and_remove(tmp_path: Path) -> None:
    sink = files.dead_letters(tmp_path / "dead.jsonl")
    assert [x async for x in sink.letters()] == []
    for n in range(5):
        await sink.put(letter(n))
    read = [x async for x in sink.letters()]
    assert [x.input["n"] for x in read] == [0, 1, 2, 3, 4]
    assert len({x.id for x in read}) == 5
    await sink.remove([read[1].id, read[3].id])  # type: ignore[list-item]
    assert [x.input["n"] async for x in sink.letters()] == [0, 2, 4]
    lines = (tmp_path / "dead.jsonl").read_text().splitlines()
    assert [json.loads(line)["input"]["n"] for line in lines] == [0, 2, 4]


async def test_letters_put_while_others_are_removed_are_all_kept(tmp_path: Path) -> None:
    sink = files.dead_letters(tmp_path / "dead.jsonl")
    for n in range(20):
        await sink.put(letter(n))
    first = [x async for x in sink.letters()]

    async def put_more() -> None:
        for n in range(20, 60):
            await sink.put(letter(n))

    async def remove_some() -> None:
        for x in first:
            await sink.remove([x.id])  # type: ignore[list-item]

    await asyncio.gather(put_more(), remove_some())
    assert sorted([x.input["n"] async for x in sink.letters()]) == list(range(20, 60))


# -- MySQL ------------------------------------------------------------------------------


async def test_mysql_checkpoints_create_their_table_and_keep_positions(
    mysql_url: str, tables: Tables
) -> None:
    table = tables.name("ckpt")
    store = mysql.checkpoints(url=mysql_url, table=table)
    try:
        assert await store.load("a") == {}
        await store.commit("a", {"definition[0]": [3, "k"]})
        await store.commit("a", {"definition[0]": [4, "l"]})
        await store.commit("b", {"definition[0]": 1})
    finally:
        await store.aclose()
    again = mysql.checkpoints(url=mysql_url, table=table)
    try:
        assert await again.load("a") == {"definition[0]": [4, "l"]}
        assert await again.load("b") == {"definition[0]": 1}
    finally:
        await again.aclose()
    assert sql(f"SELECT COUNT(*) FROM `{table}`", url=mysql_url) == [(2,)]


async def test_mysql_commit_in_rides_the_callers_transaction(
    mysql_url: str, tables: Tables
) -> None:
    import aiomysql  # type: ignore[import-untyped]

    table = tables.name("ckpt")
    store = mysql.checkpoints(url=mysql_url, table=table)
    kw = connect_kwargs(mysql_url)
    kw["db"] = kw.pop("database")
    kw["autocommit"] = False
    conn = await aiomysql.connect(**kw)
    try:
        assert await store.load("a") == {}  # creates the table
        await store.commit_in(conn, "a", {"definition[0]": 1})
        await conn.rollback()
        assert await store.load("a") == {}
        await store.commit_in(conn, "a", {"definition[0]": 2})
        await conn.commit()
        assert await store.load("a") == {"definition[0]": 2}
    finally:
        conn.close()
        await store.aclose()


async def test_mysql_dead_letters_put_read_and_remove(mysql_url: str, tables: Tables) -> None:
    sink = mysql.dead_letters(url=mysql_url, table=tables.name("dead"))
    try:
        for n in range(7):
            await sink.put(letter(n))
        read = [x async for x in sink.letters()]
        assert [x.input["n"] for x in read] == list(range(7))
        assert read[0].notes == letter(0).notes
        await sink.remove([x.id for x in read if x.input["n"] % 2])  # type: ignore[misc]
        assert [x.input["n"] async for x in sink.letters()] == [0, 2, 4, 6]
    finally:
        await sink.aclose()


def test_store_paths_are_absolute_so_a_change_of_directory_does_not_move_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = files.checkpoints("state.json")
    monkeypatch.chdir(os.path.dirname(tmp_path))
    assert store.path == str(tmp_path / "state.json")
