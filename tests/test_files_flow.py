"""asyncdataflow.plugins.files steps inside a DataFlow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from asyncdataflow import DataFlow, args_mapper
from asyncdataflow.plugins import files


def shape(data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": [{"id": r["id"], "name": r["name"].upper()} for r in data]}


async def test_reader_reshape_writer_in_a_flow(tmp_path: Path) -> None:
    source = tmp_path / "in" / "2024-01-02.jsonl"
    source.parent.mkdir()
    source.write_text('{"id": 1, "name": "zoë"}\n{"id": 2, "name": "li"}\n', encoding="utf-8")
    flow = DataFlow(
        (
            files.reader("in/{day}.jsonl", format="jsonl", base_dir=tmp_path),
            shape,
            files.writer("out/{day}.json", format="json", base_dir=tmp_path),
        ),
        args_visibility="initial",
    )
    result = await flow(day="2024-01-02")
    out = tmp_path / "out" / "2024-01-02.json"
    assert result["path"] == str(out)
    assert json.loads(out.read_text(encoding="utf-8")) == [
        {"id": 1, "name": "ZOË"},
        {"id": 2, "name": "LI"},
    ]


async def test_concurrent_runs_of_one_flow_append_whole_records(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    append = files.writer(log, format="jsonl", mode="append")

    def event(n: int) -> dict[str, Any]:
        return {"data": {"n": n, "pad": "x" * 10_000}}

    async with DataFlow((event, append)) as flow:
        results = [r async for r in flow.map(({"n": n} for n in range(300)), concurrency=50)]
    assert results == [{"path": str(log)}] * 300
    records = (await files.reader(log, format="jsonl")())["data"]
    assert sorted(r["n"] for r in records) == list(range(300))


async def test_args_mapper_renames_the_writer_inputs_and_output(tmp_path: Path) -> None:
    save = args_mapper(
        files.writer(format="text"),
        input={"data": "report", "path": "target"},
        output={"path": "saved_to"},
    )
    flow = DataFlow((save,))
    result = await flow(report="ok ✓", target=str(tmp_path / "r.txt"))
    assert result == {"saved_to": str(tmp_path / "r.txt")}
    assert (tmp_path / "r.txt").read_text() == "ok ✓"


async def test_a_step_without_its_template_fields_is_not_taken(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A")
    flow = DataFlow(
        (
            (
                (files.reader("{name}.txt", base_dir=tmp_path),),
                (files.reader(base_dir=tmp_path),),
            ),
        )
    )
    assert await flow(name="a") == {"data": "A"}
    assert await flow(path="a.txt") == {"data": "A"}


async def test_escape_error_propagates_unchanged_with_a_note(tmp_path: Path) -> None:
    flow = DataFlow((files.reader(base_dir=tmp_path / "jail"),))
    with pytest.raises(files.PathOutsideBaseDirError) as info:
        await flow(path="../x")
    assert getattr(info.value, "__notes__", [])
