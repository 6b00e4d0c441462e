"""files.reader(..., chunk_size=N): a source of records of at most N items, read
incrementally from real files; the file is closed however the source ends."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _peak_rss import PEAK_RSS

from asyncdataflow import DataFlow, step
from asyncdataflow.plugins import files
from asyncdataflow.plugins.files import FilesArgumentError


async def records(step, **kwargs):
    return [r async for r in step(**kwargs)]


def open_fds(path: Path) -> int:
    """How many of this process's file descriptors are open on ``path``."""
    target = os.path.realpath(path)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                count += 1
    return count


def test_a_chunked_reader_is_a_source():
    step = files.reader("in.jsonl", format="jsonl", chunk_size=10)
    assert isinstance(step, files.ChunkedReader)
    assert inspect.isasyncgenfunction(type(step).__call__)
    assert step.name == "files.reader(jsonl chunk_size=10 in.jsonl)"
    assert not inspect.isasyncgenfunction(type(files.reader("in.jsonl")).__call__)


async def test_jsonl_in_records_of_at_most_chunk_size_items(tmp_path: Path):
    path = tmp_path / "in.jsonl"
    items = [{"n": n, "s": "ü\u2028" * (n % 3)} for n in range(2500)]
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
    got = await records(files.reader(path, format="jsonl", chunk_size=1000))
    assert [len(r["data"]) for r in got] == [1000, 1000, 500]
    assert [i for r in got for i in r["data"]] == items
    assert got[0].keys() == {"data"}


async def test_an_exact_multiple_of_chunk_size_gives_no_empty_record(tmp_path: Path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(f"{n}\n" for n in range(6)))
    got = await records(files.reader(path, format="jsonl", chunk_size=3))
    assert got == [{"data": [0, 1, 2]}, {"data": [3, 4, 5]}]
    path.write_text("")
    assert await records(files.reader(path, format="jsonl", chunk_size=3)) == []


async def test_jsonl_blank_lines_are_skipped_and_a_bad_line_is_named(tmp_path: Path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\r\n\n   \n{"a": 2}\n{"a": \n')
    step = files.reader(path, format="jsonl", chunk_size=1, key="rows")
    agen = step()
    assert await anext(agen) == {"rows": [{"a": 1}]}
    assert await anext(agen) == {"rows": [{"a": 2}]}
    with pytest.raises(json.JSONDecodeError) as caught:
        await anext(agen)
    assert f"while reading {str(path)!r} as jsonl, line 5" in caught.value.__notes__
    assert open_fds(path) == 0


async def test_text_lines_without_their_line_ends(tmp_path: Path):
    path = tmp_path / "in.txt"
    path.write_bytes("one\r\ntwo\n\nfour ü\nlast".encode())
    got = await records(files.reader(path, chunk_size=2))
    assert got == [{"data": ["one", "two"]}, {"data": ["", "four ü"]}, {"data": ["last"]}]


async def test_csv_rows_match_the_whole_file_reader_across_chunks(tmp_path: Path):
    path = tmp_path / "in.csv"
    rows = [{"id": str(n), "note": f'line {n}\nsecond, "quoted"' * (n % 2)} for n in range(7)]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["id", "note"])
        w.writeheader()
        w.writerows(rows)
    got = await records(files.reader(path, format="csv", chunk_size=3))
    assert [len(r["data"]) for r in got] == [3, 3, 1]
    whole = (await files.reader(path, format="csv")())["data"]
    assert [row for r in got for row in r["data"]] == whole == rows


async def test_a_bad_encoding_is_named_with_the_file(tmp_path: Path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"fine\n\xff\xfe bad\n")
    with pytest.raises(UnicodeDecodeError) as caught:
        await records(files.reader(path, chunk_size=10))
    assert str(path) in caught.value.__notes__[0]
    assert open_fds(path) == 0


async def test_closing_the_source_early_closes_the_file(tmp_path: Path):
    path = tmp_path / "in.txt"
    path.write_text("".join(f"{n}\n" for n in range(100)))
    agen = files.reader(path, chunk_size=10)()
    assert await anext(agen) == {"data": [str(n) for n in range(10)]}
    assert open_fds(path) == 1
    await agen.aclose()
    assert open_fds(path) == 0


async def test_cancelling_a_task_reading_the_source_closes_the_file(tmp_path: Path):
    path = tmp_path / "in.txt"
    path.write_text("".join(f"{n}\n" for n in range(100)))
    first = asyncio.Event()

    async def consume():
        async with contextlib.aclosing(files.reader(path, chunk_size=1)()) as agen:
            async for _ in agen:
                first.set()
                await asyncio.Event().wait()

    task = asyncio.ensure_future(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert open_fds(path) == 0


async def test_a_template_path_and_base_dir_work_as_for_the_whole_file_reader(tmp_path: Path):
    (tmp_path / "d1.txt").write_text("a\nb\n")
    step = files.reader("{day}.txt", chunk_size=5, base_dir=tmp_path)
    assert list(inspect.signature(step).parameters) == ["day"]
    assert await records(step, day="d1") == [{"data": ["a", "b"]}]
    with pytest.raises(files.PathOutsideBaseDirError):
        await records(step, day="../x")


@pytest.mark.parametrize(
    ("fmt", "size", "match"),
    [
        ("json", 10, "format='json' is one document"),
        ("bytes", 10, "format='bytes' is one document"),
        ("text", 0, "chunk_size=0 must be an int >= 1"),
        ("text", True, "chunk_size=True must be an int >= 1"),
        ("text", 1.5, "chunk_size=1.5 must be an int >= 1"),
    ],
)
def test_bad_chunk_options_are_refused_when_the_step_is_built(fmt, size, match):
    with pytest.raises(FilesArgumentError, match=match):
        files.reader("x", format=fmt, chunk_size=size)


CHILD = PEAK_RSS + textwrap.dedent(
    """
    import asyncio, sys
    from asyncdataflow import DataFlow, step
    from asyncdataflow.plugins import files

    count = 0

    async def transform(data):
        global count
        count += len(data)
        return {"data": [{"id": r["id"], "total": r["qty"] * r["price"]} for r in data]}

    async def main(src, dst):
        reader = files.reader(src, format="jsonl", chunk_size=1000)
        writer = files.writer(dst, format="jsonl", mode="append")
        await DataFlow((step(reader, window=4), transform, writer))()
        print(count, peak_rss())

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.mark.slow
def test_a_jsonl_file_larger_than_200_mib_streams_in_bounded_memory(tmp_path: Path):
    src, dst = tmp_path / "big.jsonl", tmp_path / "out.jsonl"
    pad = "x" * 180
    with src.open("w") as f:
        for n in range(1_000_000):
            f.write(f'{{"id": {n}, "qty": {n % 7}, "price": 1.5, "pad": "{pad}"}}\n')
    size = src.stat().st_size
    assert size > 200 * 2**20
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(dst)],
        capture_output=True,
        text=True,
        check=True,
    )
    count, peak = map(int, out.stdout.split())
    assert count == 1_000_000
    with dst.open() as f:
        assert sum(1 for _ in f) == 1_000_000
    # the whole-file reader peaks at several times the file size; streaming stays near
    # the interpreter's own footprint
    assert peak < size / 3, f"peak RSS {peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB file"


async def test_in_a_flow_each_record_is_transformed_and_appended_in_order(tmp_path: Path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(f'{{"n": {n}}}\n' for n in range(2500)))

    async def double(data):
        return {"data": [{"n": r["n"] * 2} for r in data]}

    reader = files.reader(src, format="jsonl", chunk_size=100)
    sizes = [len(r["data"]) async for r in DataFlow((reader, double)).stream()]
    assert sizes == [100] * 25
    flow = DataFlow(
        (step(reader, window=3), double, files.writer(dst, format="jsonl", mode="append"))
    )
    assert await flow() == {"path": str(dst)}
    assert [json.loads(line)["n"] for line in dst.read_text().splitlines()] == [
        n * 2 for n in range(2500)
    ]
