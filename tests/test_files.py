"""asyncdataflow.plugins.files against real files in tmp_path."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from asyncdataflow.exceptions import DataFlowDefinitionError, DataFlowRunError
from asyncdataflow.plugins import files
from asyncdataflow.plugins.files import FilesArgumentError, PathOutsideBaseDirError

UNICODE = 'héllo wörld ✓ 日本語 🐍 \u2028 line-sep "quoted", comma\nnew line'

RECORDS = [
    {"id": 1, "name": "Zoë", "tags": ["ü", "🐍"], "note": UNICODE},
    {"id": 2, "name": "李", "tags": [], "note": None},
    {"id": 3, "name": "plain", "tags": ["a"], "note": "x"},
]


def temp_files(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


# --- round trips -----------------------------------------------------------------------

ROUND_TRIPS: list[tuple[str, Any, Any]] = [
    ("text", UNICODE, UNICODE),
    ("bytes", UNICODE.encode() + bytes(range(256)), UNICODE.encode() + bytes(range(256))),
    ("json", {"records": RECORDS, "π": 3.14}, {"records": RECORDS, "π": 3.14}),
    ("jsonl", RECORDS, RECORDS),
    (
        "csv",
        [{"id": 1, "name": "Zoë", "note": UNICODE}, {"id": 2, "name": "李", "note": None}],
        [{"id": "1", "name": "Zoë", "note": UNICODE}, {"id": "2", "name": "李", "note": ""}],
    ),
]


@pytest.mark.parametrize(("fmt", "data", "expected"), ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
async def test_each_format_round_trips_through_writer_and_reader(
    tmp_path: Path, fmt: str, data: Any, expected: Any
) -> None:
    path = str(tmp_path / f"out.{fmt}")
    result = await files.writer(format=fmt)(data=data, path=path)
    assert result == {"path": path}
    assert await files.reader(format=fmt)(path=path) == {"data": expected}


@pytest.mark.parametrize("fmt", ["text", "json", "jsonl", "csv"])
async def test_each_format_round_trips_in_another_encoding(tmp_path: Path, fmt: str) -> None:
    value = "café ÿ"
    data: Any = {
        "text": value,
        "json": {"v": value},
        "jsonl": [{"v": value}],
        "csv": [{"v": value}],
    }[fmt]
    path = tmp_path / "latin"
    await files.writer(path, format=fmt, encoding="latin-1")(data=data)
    assert value.encode("latin-1") in path.read_bytes()
    assert (await files.reader(path, format=fmt, encoding="latin-1")())["data"] == data


async def test_text_is_written_and_read_without_newline_translation(tmp_path: Path) -> None:
    path = tmp_path / "crlf.txt"
    await files.writer(path)(data="a\r\nb\rc\n")
    assert path.read_bytes() == b"a\r\nb\rc\n"
    assert (await files.reader(path)())["data"] == "a\r\nb\rc\n"


async def test_json_is_written_as_utf8_not_escaped_with_a_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    await files.writer(path, format="json")(data={"name": "Zoë"})
    assert path.read_text(encoding="utf-8") == '{"name": "Zoë"}\n'


async def test_jsonl_writes_one_line_per_item(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    await files.writer(path, format="jsonl")(data=RECORDS)
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    assert [json.loads(line) for line in lines[:-1]] == RECORDS


async def test_jsonl_takes_any_iterable_and_a_single_mapping_as_one_line(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    await files.writer(path, format="jsonl")(data=(r for r in RECORDS))
    assert (await files.reader(path, format="jsonl")())["data"] == RECORDS
    await files.writer(path, format="jsonl")(data={"one": 1})
    assert path.read_text() == '{"one": 1}\n'


async def test_jsonl_reader_skips_blank_lines_and_reads_crlf(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\n   \n[2]\r\n"three"')
    assert (await files.reader(path, format="jsonl")())["data"] == [{"a": 1}, [2], "three"]


async def test_jsonl_reader_names_the_file_and_line_of_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(json.JSONDecodeError) as info:
        await files.reader(path, format="jsonl")()
    assert any(str(path) in note and "line 2" in note for note in info.value.__notes__)


async def test_empty_jsonl_and_csv_data_write_an_empty_file(tmp_path: Path) -> None:
    for fmt in ("jsonl", "csv"):
        path = tmp_path / f"empty.{fmt}"
        await files.writer(path, format=fmt)(data=[])
        assert path.read_bytes() == b""
        assert (await files.reader(path, format=fmt)())["data"] == []


async def test_csv_header_is_the_union_of_keys_in_order_of_first_appearance(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rows.csv"
    await files.writer(path, format="csv")(data=[{"b": 1, "a": 2}, {"c": 3, "a": 4}])
    assert path.read_text().splitlines() == ["b,a,c", "1,2,", ",4,3"]


async def test_csv_append_follows_the_header_already_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    append = files.writer(path, format="csv", mode="append")
    await append(data=[{"a": 1, "b": 2}])
    await append(data=[{"b": 4, "a": 3}, {"a": 5}])
    await append(data={"b": 6})
    assert path.read_text().splitlines() == ["a,b", "1,2", "3,4", "5,", ",6"]


async def test_csv_append_of_a_key_not_in_the_header_is_refused_and_writes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rows.csv"
    append = files.writer(path, format="csv", mode="append")
    await append(data=[{"a": 1}])
    with pytest.raises(ValueError, match="not columns of the file's header"):
        await append(data=[{"a": 2}, {"zzz": 3}])
    assert path.read_text().splitlines() == ["a", "1"]


# --- signatures and names --------------------------------------------------------------


def test_reader_without_path_takes_path() -> None:
    step = files.reader(format="json")
    assert list(inspect.signature(step).parameters) == ["path"]
    assert all(
        p.default is inspect.Parameter.empty and p.kind is inspect.Parameter.KEYWORD_ONLY
        for p in inspect.signature(step).parameters.values()
    )
    assert step.__qualname__ == "files.reader(json <path>)"
    assert inspect.iscoroutinefunction(type(step).__call__)


def test_template_fields_become_the_step_parameters() -> None:
    reader = files.reader("in/{day}/{shard:03d}-{day}.jsonl", format="jsonl")
    assert list(inspect.signature(reader).parameters) == ["day", "shard"]
    writer = files.writer("out/{day}.jsonl", format="jsonl", mode="append")
    assert list(inspect.signature(writer).parameters) == ["data", "day"]
    assert writer.__qualname__ == "files.writer(jsonl append out/{day}.jsonl)"


def test_a_fixed_path_takes_no_path_parameter() -> None:
    assert list(inspect.signature(files.reader("in.txt")).parameters) == []
    assert list(inspect.signature(files.writer("out.txt")).parameters) == ["data"]


async def test_template_is_filled_with_the_call_values(tmp_path: Path) -> None:
    writer = files.writer("{kind}/{n:03d}.txt", base_dir=tmp_path)
    result = await writer(data="x", kind="logs", n=7)
    assert result == {"path": str(tmp_path / "logs" / "007.txt")}
    assert (tmp_path / "logs" / "007.txt").read_text() == "x"
    assert await files.reader("{kind}/{n:03d}.txt", base_dir=tmp_path)(kind="logs", n=7) == {
        "data": "x"
    }


# --- factory errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (files.reader, {"format": "yaml"}, "format='yaml'"),
        (files.writer, {"format": "xml"}, "format='xml'"),
        (files.writer, {"mode": "overwrite"}, "mode='overwrite'"),
        (files.reader, {"encoding": "no-such-codec"}, "encoding='no-such-codec'"),
        (files.reader, {"path": "in/{}.txt"}, "plain name"),
        (files.reader, {"path": "in/{0}.txt"}, "plain name"),
        (files.reader, {"path": "in/{a.b}.txt"}, "plain name"),
        (files.reader, {"path": "in/{a[0]}.txt"}, "plain name"),
        (files.reader, {"path": "in/{class}.txt"}, "plain name"),
        (files.reader, {"path": "in/{a:{w}}.txt"}, "format spec"),
        (files.reader, {"path": "in/{a.txt"}, "not a valid format string"),
        (files.writer, {"path": "out/{data}.txt"}, "'data'"),
        (files.reader, {"path": 42}, "str or os.PathLike"),
        (files.reader, {"base_dir": 42}, "str or os.PathLike"),
    ],
)
def test_bad_factory_arguments_raise_a_definition_error(
    factory: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(FilesArgumentError, match=message.replace("[", r"\[")) as info:
        factory(**kwargs)
    assert isinstance(info.value, DataFlowDefinitionError)
    assert isinstance(info.value, ValueError)


# --- writer behaviour ------------------------------------------------------------------


async def test_writer_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.txt"
    await files.writer()(data="x", path=str(path))
    assert path.read_text() == "x"


async def test_writer_with_makedirs_false_leaves_missing_directories_an_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(FileNotFoundError):
        await files.writer(makedirs=False)(data="x", path=str(tmp_path / "no" / "c.txt"))
    assert not (tmp_path / "no").exists()


async def test_wrong_data_type_raises_type_error_before_anything_is_created(
    tmp_path: Path,
) -> None:
    cases = [("text", b"bytes"), ("bytes", "str"), ("jsonl", "str"), ("csv", [1, 2])]
    for fmt, data in cases:
        with pytest.raises(TypeError, match=fmt):
            await files.writer(format=fmt)(data=data, path=str(tmp_path / "new" / "f"))
    assert not (tmp_path / "new").exists()


async def test_atomic_write_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old")
    await files.writer(path)(data="new")
    assert path.read_text() == "new"
    assert temp_files(tmp_path) == []


async def test_non_atomic_write_writes_the_file_in_place(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old content that is longer")
    inode = path.stat().st_ino
    step = files.writer(path, atomic=False)
    assert step.__qualname__ == f"files.writer(text write non-atomic {path})"
    await step(data="new")
    assert path.read_text() == "new"
    assert path.stat().st_ino == inode


async def test_unserialisable_data_leaves_the_old_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text('{"old": true}')
    for fmt in ("json", "jsonl"):
        with pytest.raises(TypeError, match=r"not written.*not JSON serializable") as info:
            await files.writer(path, format=fmt)(data=[{"ok": 1}, {"bad": object()}])
        assert isinstance(info.value, DataFlowRunError)
        assert isinstance(info.value.__cause__, TypeError)  # json's own error
    assert path.read_text() == '{"old": true}'
    assert temp_files(tmp_path) == []


async def test_unserialisable_data_creates_no_directory(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        await files.writer("new/doc.json", format="json", base_dir=tmp_path)(data={1j})
    assert os.listdir(tmp_path) == []


@pytest.mark.slow  # a 256 MiB payload, on purpose
async def test_writer_cancelled_mid_write_leaves_old_file_and_no_temporary_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"old")
    payload = os.urandom(1 << 20) * 256  # 256 MiB: many chunks, so we catch it writing
    task = asyncio.create_task(files.writer(path, format="bytes")(data=payload))
    while True:  # wait until the temporary file holds part of the data
        await asyncio.sleep(0)
        temps = temp_files(tmp_path)
        if temps and 0 < os.path.getsize(tmp_path / temps[0]) < len(payload):
            break
        assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert path.read_bytes() == b"old"
    assert temp_files(tmp_path) == []


async def test_writer_failing_to_replace_removes_its_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()  # os.replace of a file over a directory fails
    with pytest.raises(IsADirectoryError):
        await files.writer()(data="x", path=str(tmp_path / "target"))
    assert temp_files(tmp_path) == []


async def test_reader_sees_the_old_or_the_new_file_never_a_part(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    old = {"version": "old", "fill": "o" * 300_000}
    new = {"version": "new", "fill": "n" * 300_000}
    await files.writer(path, format="json")(data=old)
    writer = files.writer(path, format="json")
    reader = files.reader(path, format="json")
    seen: list[Any] = []
    stop = asyncio.Event()

    async def keep_reading() -> None:
        while not stop.is_set():
            seen.append((await reader())["data"])

    readers = [asyncio.create_task(keep_reading()) for _ in range(4)]
    for index in range(20):
        await writer(data=new if index % 2 == 0 else old)
    stop.set()
    await asyncio.gather(*readers)
    assert seen
    assert all(doc in (old, new) for doc in seen)  # a part would not even decode


async def test_append_from_20_concurrent_runs_keeps_1000_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    append = files.writer(path, format="jsonl", mode="append")
    body = "x" * 20_000  # lines larger than a pipe or page, so a split would show

    async def run(run_id: int) -> None:
        for n in range(50):
            await append(data={"run": run_id, "n": n, "body": body})

    await asyncio.gather(*(run(r) for r in range(20)))
    lines = path.read_text().split("\n")
    assert lines.pop() == ""
    records = [json.loads(line) for line in lines]
    assert len(records) == 1000
    assert sorted((r["run"], r["n"]) for r in records) == [
        (r, n) for r in range(20) for n in range(50)
    ]
    assert all(r["body"] == body for r in records)


async def test_one_append_call_keeps_its_records_together(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    append = files.writer(path, format="jsonl", mode="append")

    async def run(run_id: int) -> None:
        await append(data=[{"run": run_id, "n": n, "pad": "p" * 5000} for n in range(25)])

    await asyncio.gather(*(run(r) for r in range(40)))
    records = (await files.reader(path, format="jsonl")())["data"]
    assert len(records) == 1000
    for start in range(0, 1000, 25):
        block = records[start : start + 25]
        assert {r["run"] for r in block} == {block[0]["run"]}
        assert [r["n"] for r in block] == list(range(25))


async def test_appends_from_separate_writer_objects_keep_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    writers = [files.writer(path, format="jsonl", mode="append") for _ in range(8)]
    body = "y" * 50_000

    async def run(index: int) -> None:
        for n in range(25):
            await writers[index](data={"w": index, "n": n, "body": body})

    await asyncio.gather(*(run(i) for i in range(8)))
    records = (await files.reader(path, format="jsonl")())["data"]
    assert len(records) == 200
    assert all(r["body"] == body for r in records)


async def test_append_creates_the_file_and_its_directories(tmp_path: Path) -> None:
    path = tmp_path / "new" / "log.txt"
    append = files.writer(path, mode="append")
    await append(data="one\n")
    await append(data="two\n")
    assert path.read_text() == "one\ntwo\n"


async def test_append_forgets_the_lock_of_a_file_once_no_call_uses_it(tmp_path: Path) -> None:
    append = files.writer("{n}.txt", mode="append", base_dir=tmp_path)
    await asyncio.gather(*(append(data="x", n=n % 10) for n in range(100)))
    assert all(not table for table in append._locks.values())
    assert sorted(os.listdir(tmp_path)) == sorted(f"{n}.txt" for n in range(10))


# --- base_dir confinement --------------------------------------------------------------


@pytest.fixture
def jail(tmp_path: Path) -> Path:
    base = tmp_path / "base"
    (base / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret")
    (base / "inside.txt").write_text("inside")
    return base


def outside_listing(tmp_path: Path) -> list[str]:
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))


@pytest.mark.parametrize(
    "path",
    ["../outside/secret.txt", "sub/../../outside/secret.txt", "ABSOLUTE", "link/secret.txt"],
)
async def test_reader_refuses_paths_leading_out_of_base_dir(
    tmp_path: Path, jail: Path, path: str
) -> None:
    (jail / "link").symlink_to(tmp_path / "outside")
    if path == "ABSOLUTE":
        path = str(tmp_path / "outside" / "secret.txt")
    step = files.reader(base_dir=jail)
    with pytest.raises(PathOutsideBaseDirError) as info:
        await step(path=path)
    error = info.value
    assert isinstance(error, ValueError)
    for part in (step.__qualname__, repr(path), repr(str(jail))):
        assert part in str(error)
    assert error.resolved == str(tmp_path / "outside" / "secret.txt")


@pytest.mark.parametrize(
    "name", ["../evil", "../../evil", "/tmp/asyncdataflow-evil", "link/evil", "dirlink/x/evil"]
)
@pytest.mark.parametrize("mode", ["write", "append"])
async def test_writer_refuses_paths_leading_out_and_creates_nothing(
    tmp_path: Path, jail: Path, name: str, mode: str
) -> None:
    (jail / "link").symlink_to(tmp_path / "outside")
    (jail / "dirlink").symlink_to(tmp_path)
    before = outside_listing(tmp_path)
    step = files.writer("{name}.txt", mode=mode, base_dir=jail)
    with pytest.raises(PathOutsideBaseDirError, match="outside base_dir"):
        await step(data="evil", name=name)
    assert outside_listing(tmp_path) == before
    assert not os.path.exists("/tmp/asyncdataflow-evil.txt")


async def test_symlink_to_a_file_outside_is_refused_for_writing(tmp_path: Path, jail: Path) -> None:
    (jail / "trap.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    with pytest.raises(PathOutsideBaseDirError):
        await files.writer(base_dir=jail)(data="overwritten", path="trap.txt")
    assert (tmp_path / "outside" / "secret.txt").read_text() == "secret"


async def test_paths_inside_base_dir_are_allowed(tmp_path: Path, jail: Path) -> None:
    (jail / "inlink").symlink_to(jail / "sub")
    reader = files.reader(base_dir=jail)
    assert (await reader(path="inside.txt"))["data"] == "inside"
    assert (await reader(path="sub/../inside.txt"))["data"] == "inside"
    # an absolute path inside base_dir is fine: it is where the writer's result points
    assert (await reader(path=str(jail / "inside.txt")))["data"] == "inside"
    written = await files.writer(base_dir=jail)(data="via link", path="inlink/new.txt")
    assert written == {"path": str(jail / "sub" / "new.txt")}
    assert (jail / "sub" / "new.txt").read_text() == "via link"


async def test_relative_base_dir_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = await files.writer(base_dir="data")(data="x", path="a/b.txt")
    assert result == {"path": str(tmp_path / "data" / "a" / "b.txt")}
    with pytest.raises(PathOutsideBaseDirError):
        await files.writer(base_dir="data")(data="x", path="../c.txt")
    assert not (tmp_path / "c.txt").exists()


async def test_reader_errors_of_the_file_system_propagate_unchanged(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        await files.reader()(path=str(tmp_path / "missing.txt"))
    assert info.value.filename == str(tmp_path / "missing.txt")


# --- the event loop keeps running ------------------------------------------------------


async def ticks_during(awaitable: Any) -> tuple[Any, int]:
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # let the ticker start
    start = ticks
    try:
        result = await awaitable
    finally:
        stop = True
        await task
    return result, ticks - start


@pytest.mark.slow  # writes and reads ~33 MB, twice
@pytest.mark.parametrize("atomic", [True, False])
async def test_loop_keeps_ticking_while_a_large_text_file_is_written_and_read(
    tmp_path: Path, atomic: bool
) -> None:
    text = ("ünïcode line " * 8 + "\n") * 300_000  # ~33 MB
    path = tmp_path / "big.txt"
    _, write_ticks = await ticks_during(files.writer(path, atomic=atomic)(data=text))
    result, read_ticks = await ticks_during(files.reader(path)())
    assert result["data"] == text
    assert write_ticks > 2
    assert read_ticks > 2


@pytest.mark.slow  # writes and reads ~25 MB
async def test_loop_keeps_ticking_while_large_jsonl_is_written_and_read(tmp_path: Path) -> None:
    records = [{"id": n, "name": f"record {n}", "payload": "p" * 200} for n in range(100_000)]
    path = tmp_path / "big.jsonl"  # ~25 MB
    _, write_ticks = await ticks_during(files.writer(path, format="jsonl")(data=records))
    result, read_ticks = await ticks_during(files.reader(path, format="jsonl")())
    assert result["data"] == records
    assert write_ticks > 2
    assert read_ticks > 2


async def test_loop_keeps_ticking_while_a_large_append_is_written(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    data = "a" * (40 << 20)
    _, ticks = await ticks_during(files.writer(path, format="text", mode="append")(data=data))
    assert path.stat().st_size == len(data)
    assert ticks > 2


# --- lifecycle -------------------------------------------------------------------------


async def test_aclose_is_harmless_and_the_step_works_after_it(tmp_path: Path) -> None:
    step = files.writer(mode="append")
    path = str(tmp_path / "f.txt")
    await step(data="a", path=path)
    await step.aclose()
    await step(data="b", path=path)
    assert (tmp_path / "f.txt").read_text() == "ab"


async def test_cleanup_finishes_even_when_cancelled_again_during_it(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"old")
    payload = os.urandom(1 << 20) * 256
    task = asyncio.create_task(files.writer(path, format="bytes")(data=payload))
    while not (temp_files(tmp_path) and os.path.getsize(tmp_path / temp_files(tmp_path)[0])):
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)  # the task is now in its clean-up
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(1000):  # the clean-up goes on in the background until it is done
        if not temp_files(tmp_path):
            break
        await asyncio.sleep(0.001)
    assert temp_files(tmp_path) == []
    assert path.read_bytes() == b"old"


async def test_json_append_writes_one_document_per_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    append = files.writer(path, format="json", mode="append")
    await append(data={"a": 1})
    await append(data=[2, 3])
    assert (await files.reader(path, format="jsonl")())["data"] == [{"a": 1}, [2, 3]]


async def test_with_base_dir_a_link_inside_is_followed_and_the_link_kept(
    tmp_path: Path,
) -> None:
    (tmp_path / "real.txt").write_text("old")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    result = await files.writer(base_dir=tmp_path)(data="new", path="link.txt")
    assert result == {"path": str(tmp_path / "real.txt")}
    assert (tmp_path / "link.txt").is_symlink()
    assert (tmp_path / "real.txt").read_text() == "new"


def test_one_writer_appends_from_several_event_loops(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    append = files.writer(path, format="jsonl", mode="append")

    async def run(thread: int) -> None:
        await asyncio.gather(*(append(data={"t": thread, "n": n}) for n in range(100)))

    threads = [threading.Thread(target=asyncio.run, args=(run(t),)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = path.read_text().splitlines()
    assert sorted((r["t"], r["n"]) for r in map(json.loads, lines)) == [
        (t, n) for t in range(4) for n in range(100)
    ]


async def test_append_of_no_records_writes_nothing_and_creates_no_file(tmp_path: Path) -> None:
    for fmt in ("jsonl", "csv", "text"):
        path = tmp_path / f"empty.{fmt}"
        await files.writer(path, format=fmt, mode="append")(data="" if fmt == "text" else [])
        assert not path.exists()


def test_csv_appends_from_other_writers_and_event_loops_write_the_header_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rows.csv"
    shared = files.writer(path, format="csv", mode="append")

    async def run(thread: int) -> None:
        # a fresh writer object per call as well as a shared one: no lock in common but
        # the file's
        separate = [files.writer(path, format="csv", mode="append") for _ in range(5)]
        await asyncio.gather(
            *(w(data=[{"t": thread, "n": n}]) for n, w in enumerate([shared, *separate]))
        )

    threads = [threading.Thread(target=asyncio.run, args=(run(t),)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = path.read_bytes().split(b"\r\n")
    assert lines[0] == b"t,n"
    assert lines.pop() == b""
    assert sorted(lines[1:]) == sorted(f"{t},{n}".encode() for t in range(4) for n in range(6))


@pytest.mark.parametrize(
    ("fmt", "existing", "data", "expected"),
    [
        ("jsonl", b'{"a": 1}', [{"a": 2}], b'{"a": 1}\n{"a": 2}\n'),
        ("json", b'{"a": 1}', {"a": 2}, b'{"a": 1}\n{"a": 2}\n'),
        ("csv", b"a,b\r\n1,2", [{"a": 3, "b": 4}], b"a,b\r\n1,2\n3,4\r\n"),
        ("jsonl", b'{"a": 1}\n', [{"a": 2}], b'{"a": 1}\n{"a": 2}\n'),
        ("text", b"no end", "more", b"no endmore"),
    ],
)
async def test_an_append_to_a_file_without_a_final_line_end_starts_a_new_line(
    tmp_path: Path, fmt: str, existing: bytes, data: Any, expected: bytes
) -> None:
    path = tmp_path / "f"
    path.write_bytes(existing)
    await files.writer(path, format=fmt, mode="append")(data=data)
    assert path.read_bytes() == expected


async def test_an_append_in_utf16_checks_the_line_end_in_utf16(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    append = files.writer(path, format="jsonl", mode="append", encoding="utf-16-le")
    await append(data=[{"a": 1}])
    await append(data=[{"a": 2}])
    assert path.read_bytes().decode("utf-16-le") == '{"a": 1}\n{"a": 2}\n'


async def test_an_atomic_rewrite_keeps_the_file_s_permissions(tmp_path: Path) -> None:
    path = tmp_path / "secret.json"
    path.write_text("{}")
    path.chmod(0o600)
    await files.writer(path, format="json")(data={"token": "t"})
    assert json.loads(path.read_text()) == {"token": "t"}
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("mode", "atomic"), [("write", True), ("write", False), ("append", True)])
async def test_a_file_where_a_directory_should_be_is_named_in_the_error(
    tmp_path: Path, mode: str, atomic: bool
) -> None:
    (tmp_path / "afile").write_text("x")
    step = files.writer(tmp_path / "afile" / "sub" / "out.txt", mode=mode, atomic=atomic)
    with pytest.raises(NotADirectoryError) as info:
        await step(data="hi")
    message = str(info.value)
    assert message.startswith("[Errno 20] files.writer(text ")
    assert "is a file, not a directory" in message
    assert "afile" in message
    assert (tmp_path / "afile").read_text() == "x"


async def test_undecodable_text_names_the_file_and_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("a\r\nZoë\r\n".encode("latin-1"))
    with pytest.raises(UnicodeDecodeError) as info:
        await files.reader(path, format="csv")()
    (note,) = info.value.__notes__
    assert repr(str(path)) in note
    assert "encoding='utf-8'" in note
    assert await files.reader(path, format="csv", encoding="latin-1")() == {"data": [{"a": "Zoë"}]}
