"""Issue 12, items 11 to 17: files.writer and files.reader under byte-order marks, a full
disk, long names, large CSV cells, cancellation while opening, a directory swapped for a
link during the base_dir check, and a process killed while writing. Real files, real
processes, real resource limits; no mock of the file system."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gc
import json
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from asyncdataflow.plugins import files
from asyncdataflow.plugins.files import PathOutsideBaseDirError


def temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# --- 11: one byte-order mark, at the start of the file ----------------------------------


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "text"])
async def test_appending_writes_a_byte_order_mark_only_at_the_start(
    tmp_path: Path, encoding: str, fmt: str
):
    path = tmp_path / f"log.{fmt}"
    append = files.writer(path, format=fmt, mode="append", encoding=encoding)
    batches: list[object] = (
        [[{"a": "1", "b": "x"}], [{"a": "2", "b": "y"}], [{"a": "3", "b": "z"}]]
        if fmt != "text"
        else ["one\n", "two\n", "three\n"]
    )
    for batch in batches:
        await append(data=batch)
    raw = path.read_bytes()
    bom = "\n".encode(encoding)[: -len("\n\n".encode(encoding)) + len("\n".encode(encoding))]
    assert raw.startswith(bom)
    assert raw.count(bom) == 1
    got = (await files.reader(path, format=fmt, encoding=encoding)())["data"]
    if fmt == "text":
        assert got == "one\ntwo\nthree\n"
    else:
        assert got == [row for batch in batches for row in batch]  # type: ignore[attr-defined]


# --- 12: a full disk leaves the file as it was ------------------------------------------

FULL_DISK_CHILD = r"""
import asyncio, errno, resource, signal, sys
from asyncdataflow.plugins import files

path, fmt = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
size = len(open(path, "rb").read())
hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 300, hard))
records = [{"n": n, "pad": "x" * 50} for n in range(100)]  # about 6,000 bytes: does not fit
try:
    asyncio.run(files.writer(path, format=fmt, mode="append")(data=records))
except OSError as error:
    print("failed", errno.errorcode[error.errno])
else:
    print("written")
"""


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_append_that_fills_the_disk_is_taken_back(tmp_path: Path, fmt: str):
    path = tmp_path / f"log.{fmt}"
    before = "n,pad\n1,a\n" if fmt == "csv" else '{"n": 1}\n'
    path.write_text(before)
    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(path), fmt],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["failed", "EFBIG"], out.stderr
    assert path.read_text() == before  # no torn record: readable as before


# --- 13: long names ---------------------------------------------------------------------


@pytest.mark.parametrize("length", [237, 238, 240, 250, 255])
async def test_the_atomic_writer_takes_every_name_the_file_system_takes(
    tmp_path: Path, length: int
):
    name = "n" * length
    result = await files.writer(tmp_path / name)(data="x")
    assert Path(result["path"]).read_text() == "x"
    await files.writer(tmp_path / name)(data="y")  # replacing works too
    assert (tmp_path / name).read_text() == "y"
    assert temps(tmp_path) == []


async def test_a_long_name_of_multibyte_characters(tmp_path: Path):
    name = "é" * 127  # 254 bytes
    await files.writer(tmp_path / name)(data="x")
    assert (tmp_path / name).read_text() == "x"
    assert temps(tmp_path) == []


# --- 14: large CSV cells, and CSV errors naming the file --------------------------------


async def test_a_csv_cell_of_any_size_the_writer_writes_reads_back(tmp_path: Path):
    path = tmp_path / "big.csv"
    rows = [{"id": "1", "text": "y" * 300_000}]
    await files.writer(path, format="csv")(data=rows)
    assert (await files.reader(path, format="csv")())["data"] == rows


async def test_a_csv_error_names_the_file_and_the_line(tmp_path: Path):
    path = tmp_path / "cells.csv"
    path.write_text("a\nshort\n" + "z" * 50 + "\n")
    limit = csv.field_size_limit(20)  # stands for any csv.Error
    try:
        with pytest.raises(csv.Error) as info:
            await files.reader(path, format="csv")()
    finally:
        csv.field_size_limit(limit)
    assert any(str(path) in note and "line 3" in note for note in info.value.__notes__)


# --- 15: cancelled while opening, nothing leaks -----------------------------------------


def open_fds_to(path: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                count += 1
    return count


@pytest.mark.parametrize("kind", ["reader", "append", "write", "atomic"])
async def test_cancelling_while_the_file_is_opened_leaks_no_handle(tmp_path: Path, kind: str):
    path = tmp_path / "f.jsonl"
    path.write_text('{"a": 1}\n')
    step = {
        "reader": files.reader(path, format="jsonl"),
        "append": files.writer(path, format="jsonl", mode="append"),
        "write": files.writer(path, format="jsonl", atomic=False),
        "atomic": files.writer(path, format="jsonl"),
    }[kind]
    kwargs = {} if kind == "reader" else {"data": [{"a": 2}]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(100):
            task = asyncio.ensure_future(step(**kwargs))
            for _ in range(2):  # into the open, which runs in a worker thread
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # the opens still running in their threads finish and are closed
        loop = asyncio.get_running_loop()
        for _ in range(8):
            await loop.run_in_executor(None, lambda: None)
        await asyncio.gather(*[asyncio.sleep(0) for _ in range(10)])
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert open_fds_to(path) == 0
    assert temps(tmp_path) == []


# --- 16: no race between the base_dir check and the open --------------------------------


def test_a_directory_swapped_for_a_link_never_leads_outside(tmp_path: Path):
    jail, outside = tmp_path / "jail", tmp_path / "outside"
    (jail / "d").mkdir(parents=True)
    outside.mkdir()
    (jail / "d" / "x.txt").write_text("inside")
    (outside / "x.txt").write_text("SECRET")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            os.rename(jail / "d", jail / "d.real")
            os.symlink(outside, jail / "d")
            os.unlink(jail / "d")
            os.rename(jail / "d.real", jail / "d")

    async def read_many() -> tuple[int, int, list[str]]:
        read = files.reader(base_dir=jail)
        write = files.writer(base_dir=jail, atomic=False, makedirs=False)
        ok = refused = 0
        seen: list[str] = []
        for _ in range(3000):
            try:
                seen.append((await read(path="d/x.txt"))["data"])
                await write(path="d/x.txt", data="inside")
                ok += 1
            except (OSError, PathOutsideBaseDirError):
                refused += 1
        return ok, refused, seen

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        ok, refused, seen = asyncio.run(read_many())
    finally:
        stop.set()
        swapper.join()
    assert "SECRET" not in seen
    assert (outside / "x.txt").read_text() == "SECRET"
    assert ok + refused == 3000


async def test_links_inside_base_dir_are_followed_and_links_out_refused(tmp_path: Path):
    jail = tmp_path / "jail"
    (jail / "a" / "b").mkdir(parents=True)
    (jail / "a" / "b" / "f.txt").write_text("deep")
    (jail / "rel").symlink_to("a/b")  # relative link
    (jail / "a" / "up").symlink_to("../a/b/f.txt")  # relative link with ..
    (jail / "esc").symlink_to("a/../..")  # relative link climbing out
    read = files.reader(base_dir=jail)
    assert (await read(path="rel/f.txt"))["data"] == "deep"
    assert (await read(path="a/up"))["data"] == "deep"
    with pytest.raises(PathOutsideBaseDirError):
        await read(path="esc/jail/a/b/f.txt")


# --- 17: what a killed process leaves, and how to clean it ------------------------------

KILLED_CHILD = r"""
import asyncio, resource, signal, sys
from asyncdataflow.plugins import files

# The default action of SIGXFSZ (Python ignores it unless told) ends the process at once,
# in the middle of the write, as kill -9 would: no Python code runs after it.
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
asyncio.run(files.writer(sys.argv[1])(data="z" * (4 << 20)))
"""


async def test_a_killed_writers_temp_file_is_cleaned_by_clean_temp_files(tmp_path: Path):
    target = tmp_path / "report.txt"
    target.write_text("old")
    (tmp_path / "other.txt").write_text("other")
    proc = subprocess.run([sys.executable, "-c", KILLED_CHILD, str(target)], check=False)
    assert proc.returncode < 0  # killed by a signal
    left = temps(tmp_path)
    assert len(left) == 1
    assert left[0].startswith(".report.txt.")
    assert target.read_text() == "old"
    # a fresh temp file (a write in progress) is left alone
    assert await files.clean_temp_files(target) == []
    assert await files.clean_temp_files(tmp_path / "other.txt", older_than=0) == []
    removed = await files.clean_temp_files(target, older_than=0)
    assert removed == [str(tmp_path / left[0])]
    assert temps(tmp_path) == []
    assert target.read_text() == "old"
    assert json.loads(json.dumps(sorted(p.name for p in tmp_path.iterdir()))) == [
        "other.txt",
        "report.txt",
    ]


async def test_clean_temp_files_on_a_directory_takes_every_targets(tmp_path: Path):
    for name in ("a.txt", "b" * 250):
        (tmp_path / name).write_text("x")
    from asyncdataflow.plugins.files._io import temp_name

    made = [tmp_path / temp_name(n, "0123456789ab") for n in ("a.txt", "b" * 250)]
    for path in made:
        path.write_text("partial")
    (tmp_path / ".keep.tmp").write_text("not ours")
    removed = await files.clean_temp_files(tmp_path, older_than=0)
    assert removed == sorted(str(p) for p in made)
    assert temps(tmp_path) == [".keep.tmp"]


# --- 18: CSV formula injection ------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil","click")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3"]


async def test_csv_formulas_are_escaped_when_asked(tmp_path: Path):
    rows = [{"n": i, "cell": cell} for i, cell in enumerate([*FORMULAS, "plain"])]
    path = tmp_path / "out.csv"
    await files.writer(path, format="csv", csv_escape_formulas=True)(data=rows)
    got = (await files.reader(path, format="csv")())["data"]
    assert [r["cell"] for r in got] == [*("'" + f for f in FORMULAS), "plain"]
    assert [r["n"] for r in got] == [str(i) for i in range(5)]  # numbers untouched
    append = files.writer(path, format="csv", mode="append", csv_escape_formulas=True)
    await append(data=[{"n": 9, "cell": "=1+1"}])
    assert (await files.reader(path, format="csv")())["data"][-1]["cell"] == "'=1+1"


async def test_csv_formulas_are_written_as_they_are_by_default(tmp_path: Path):
    path = tmp_path / "out.csv"
    await files.writer(path, format="csv")(data=[{"cell": FORMULAS[0]}])
    assert (await files.reader(path, format="csv")())["data"] == [{"cell": FORMULAS[0]}]


def test_csv_escape_formulas_goes_with_csv_only(tmp_path: Path):
    with pytest.raises(files.FilesArgumentError, match="format='csv'"):
        files.writer(tmp_path / "x.jsonl", format="jsonl", csv_escape_formulas=True)
