"""Streams benchmarks: each section runs the hand-written asyncio equivalent in the same
process, alternating with the library, and prints the ratio.

    python bench/streams.py [--quick] [SECTION ...]

Sections (all by default):
  map     flow.map against a hand-written bounded map (TaskGroup + Semaphore, consuming
          the finished head of a deque): 10,000 inputs of a 2-step flow with one
          ``await asyncio.sleep(0)``, concurrency 100 and 1,000; ratio = flow / hand
          (time per input, lower is better; target <= 1.3).
  records per-record overhead of a source yielding 100,000 small dicts into 2 async
          steps: window 1 against a hand-written ``async for`` loop calling the two
          steps; window 16 against a hand-written pipeline (an ``asyncio.Queue`` feeding
          16 worker tasks, outputs taken in order through one future per item, at most
          16 outstanding); ratio = flow / hand (time per record; target <= 1.3).
  jsonl   a 1,000,000-line JSON Lines file (about 120 MiB) read with
          ``files.reader(chunk_size=1000)``, transformed, appended with
          ``files.writer(mode="append")``, against a hand-written aiofiles loop doing the
          same (1 MiB reads split into lines, batches of 1,000, one write per batch; a
          loop of ``async for line in file`` is 10x slower still, a thread hop per line);
          ratio = hand time / ours (higher is better; target >= 0.9). Then the peak RSS of
          the same pipeline, each in a fresh process, for a 20 MiB and a 200 MiB file
          (target: within 20 MiB of each other).
  mysql   1,000,000 rows copied table to table: ``mysql.reader(chunk_size=5000)`` into
          ``mysql.writer(batch_size=5000)`` against hand-written aiomysql (``SSCursor``,
          ``fetchmany(5000)``, ``executemany`` and a commit per chunk on a second
          connection); ratio = hand time / ours (target >= 0.9). Needs the server named by
          ASYNCDATAFLOW_MYSQL_URL (default mysql://root@127.0.0.1:3306/test).

The pipelines run as one DataFlow each (the reader a source, window 1).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from asyncdataflow import DataFlow, step

QUICK = "--quick" in sys.argv


def median_of(samples: list[float]) -> float:
    return statistics.median(samples)


# -- map ---------------------------------------------------------------------------------


async def hop(x: int) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"y": x + 1}


async def double(y: int) -> dict[str, Any]:
    return {"z": y * 2}


async def hand_run(x: int) -> dict[str, Any]:
    r = await hop(x=x)
    return await double(y=r["y"])


async def hand_map(
    inputs: Iterable[dict[str, Any]], concurrency: int
) -> AsyncIterator[dict[str, Any]]:
    """The hand-written bounded map: at most ``concurrency`` runs, results in order."""
    sem = asyncio.Semaphore(concurrency)
    pending: deque[asyncio.Task[dict[str, Any]]] = deque()

    async def run(kw: dict[str, Any]) -> dict[str, Any]:
        try:
            return await hand_run(**kw)
        finally:
            sem.release()

    async with asyncio.TaskGroup() as tg:
        for kw in inputs:
            await sem.acquire()
            pending.append(tg.create_task(run(kw)))
            while pending and pending[0].done():
                yield pending.popleft().result()
        while pending:
            yield await pending.popleft()


async def drain(agen: AsyncIterator[Any]) -> int:
    n = 0
    async for _ in agen:
        n += 1
    return n


async def timed(make: Callable[[], AsyncIterator[Any]], n: int) -> float:
    started = time.perf_counter()
    assert await drain(make()) == n
    return (time.perf_counter() - started) / n


async def peak(make: Callable[[], AsyncIterator[Any]]) -> int:
    tracemalloc.start()
    try:
        await drain(make())
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def report(name: str, hand: float, flow: float, unit: str = "us", scale: float = 1e6) -> float:
    ratio = flow / hand
    print(
        f"{name:<52} hand {hand * scale:9.2f} {unit}  flow {flow * scale:9.2f} {unit}"
        f"  ratio {ratio:5.2f}x"
    )
    return ratio


async def bench_map() -> None:
    n = 10_000
    rounds = 3 if QUICK else 9
    flow = DataFlow((hop, double), name="two_steps")
    for concurrency in (100, 1000):

        def inputs() -> Iterable[dict[str, Any]]:
            return ({"x": i} for i in range(n))

        def hand(c: int = concurrency) -> AsyncIterator[Any]:
            return hand_map(inputs(), c)

        def ours(c: int = concurrency) -> AsyncIterator[Any]:
            return flow.map(inputs(), concurrency=c)

        assert [r async for r in hand()] == [r async for r in ours()]
        h, f = [], []
        for _ in range(rounds):
            h.append(await timed(hand, n))
            f.append(await timed(ours, n))
        report(f"flow.map, {n:,} inputs, concurrency {concurrency:,}", median_of(h), median_of(f))
        report(
            f"flow.map, {n:,} inputs, concurrency {concurrency:,} (peak memory)",
            await peak(hand),
            await peak(ours),
            "MiB",
            1 / 2**20,
        )


# -- records: per-record overhead of a source ---------------------------------------------


async def numbers(n: int) -> AsyncIterator[dict[str, int]]:
    for i in range(n):
        yield {"x": i}


async def increment(x: int) -> dict[str, int]:
    return {"x": x + 1}


async def halve(x: int) -> dict[str, int]:
    return {"y": x // 2}


async def hand_loop(n: int) -> dict[str, int]:
    out: dict[str, int] = {}
    async for item in numbers(n):
        r = await increment(x=item["x"])
        out = await halve(x=r["x"])
    return out


async def hand_pipeline(n: int, window: int) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    work: asyncio.Queue[tuple[dict[str, int], asyncio.Future[dict[str, int]]] | None]
    work = asyncio.Queue(window)
    order: asyncio.Queue[asyncio.Future[dict[str, int]] | None] = asyncio.Queue(window)

    async def worker() -> None:
        while (job := await work.get()) is not None:
            item, fut = job
            r = await increment(x=item["x"])
            fut.set_result(await halve(x=r["x"]))

    async def produce() -> None:
        async for item in numbers(n):
            fut = loop.create_future()
            await order.put(fut)  # at most `window` items outstanding
            await work.put((item, fut))
        await order.put(None)
        for _ in range(window):
            await work.put(None)

    tasks = [loop.create_task(worker()) for _ in range(window)]
    tasks.append(loop.create_task(produce()))
    out: dict[str, int] = {}
    while (fut := await order.get()) is not None:
        out = await fut
    await asyncio.gather(*tasks)
    return out


async def per_record(run: Callable[[], Awaitable[Any]], n: int) -> float:
    started = time.perf_counter()
    await run()
    return (time.perf_counter() - started) / n


async def bench_records() -> None:
    n = 10_000 if QUICK else 100_000
    rounds = 3 if QUICK else 7
    serial = DataFlow((numbers, increment, halve), name="window_1")
    windowed = DataFlow((step(numbers, window=16), increment, halve), name="window_16")
    cases: list[tuple[str, Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]] = [
        ("window 1 vs async for", lambda: hand_loop(n), lambda: serial(n=n)),
        ("window 16 vs Queue + 16 workers", lambda: hand_pipeline(n, 16), lambda: windowed(n=n)),
    ]
    for label, hand, ours in cases:
        assert await hand() == await ours(), "the two do not compute the same thing"
        h, f = [], []
        for _ in range(rounds):  # alternating, so load on the machine hits both
            h.append(await per_record(hand, n))
            f.append(await per_record(ours, n))
        report(f"source, {n:,} records, {label}", median_of(h), median_of(f))


# -- pipelines through the pack's streaming readers -----------------------------------


async def run_pipeline(reader: Any, middle: Any, writer: Any) -> None:
    """The reader (a source), a step and the writer as one flow."""
    await DataFlow((reader, middle, writer))()


async def transform(data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": [{"id": r["id"], "total": r["qty"] * r["price"]} for r in data]}


def write_jsonl(path: str, lines: int) -> None:
    pad = "x" * 80
    with open(path, "w", encoding="utf-8") as f:
        for n in range(lines):
            f.write(f'{{"id": {n}, "qty": {n % 7}, "price": 1.5, "pad": "{pad}"}}\n')


async def ours_jsonl(src: str, dst: str) -> None:
    from asyncdataflow.plugins import files

    await run_pipeline(
        files.reader(src, format="jsonl", chunk_size=1000),
        transform,
        files.writer(dst, format="jsonl", mode="append"),
    )


async def hand_jsonl(src: str, dst: str) -> None:
    """The hand-written aiofiles loop: 1 MiB reads split into lines (one thread-pool call
    per read, not per line), batches of 1,000 transformed and appended with one write."""
    import json

    import aiofiles

    batch: list[Any] = []

    async def flush(out: Any) -> None:
        rows = (await transform(batch))["data"]
        await out.write("".join(json.dumps(r) + "\n" for r in rows))
        batch.clear()

    async with (
        aiofiles.open(src, encoding="utf-8") as f,
        aiofiles.open(dst, "a", encoding="utf-8") as out,
    ):
        rest = ""
        while block := await f.read(1 << 20):
            lines = (rest + block).split("\n")
            rest = lines.pop()
            for line in lines:
                if line and not line.isspace():
                    batch.append(json.loads(line))
                    if len(batch) == 1000:
                        await flush(out)
        if rest.strip():
            batch.append(json.loads(rest))
        if batch:
            await flush(out)


def file_size(path: str) -> int:
    import os

    return os.path.getsize(path)


def remove(path: str) -> None:
    import os

    if os.path.exists(path):
        os.remove(path)


CHILD_JSONL = """
import asyncio, resource, sys
sys.path.insert(0, sys.argv[3])
import streams
asyncio.run(streams.ours_jsonl(sys.argv[1], sys.argv[2]))
# VmHWM: this program's own peak (ru_maxrss keeps the pre-exec peak of the parent)
with open("/proc/self/status") as status:
    print(next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmHWM:")))
"""


def peak_rss_of_pipeline(src: str, dst: str) -> int:
    import os
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(
        [sys.executable, "-c", CHILD_JSONL, src, dst, here],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.split()[-1])


async def bench_jsonl() -> None:
    import os
    import tempfile

    lines = 100_000 if QUICK else 1_000_000
    rounds = 1 if QUICK else 3
    with tempfile.TemporaryDirectory() as root:
        src, dst = os.path.join(root, "in.jsonl"), os.path.join(root, "out.jsonl")
        write_jsonl(src, lines)
        size = file_size(src)
        h, f = [], []
        for _ in range(rounds):
            for run, samples in ((hand_jsonl, h), (ours_jsonl, f)):
                remove(dst)
                started = time.perf_counter()
                await run(src, dst)
                samples.append(time.perf_counter() - started)
        hm, fm = median_of(h), median_of(f)
        how = "DataFlow"
        print(
            f"{f'jsonl {lines:,} lines ({size / 2**20:.0f} MiB), {how}':<52} hand {hm:9.2f} s "
            f"  ours {fm:9.2f} s   ratio hand/ours {hm / fm:5.2f}"
        )
        os.remove(src)
        peaks = []
        for mib in (20, 200):
            write_jsonl(src, mib * 2**20 // 120)
            remove(dst)
            peaks.append(peak_rss_of_pipeline(src, dst))
            print(
                f"{f'jsonl peak RSS, {file_size(src) / 2**20:.0f} MiB file':<52} "
                f"{peaks[-1] / 2**20:9.1f} MiB"
            )
            os.remove(src)
        grown = (peaks[1] - peaks[0]) / 2**20
        print(f"{'jsonl peak RSS, 200 MiB minus 20 MiB file':<52} {grown:9.1f} MiB")


async def bench_mysql() -> None:
    import os
    from urllib.parse import unquote, urlsplit

    import aiomysql  # type: ignore[import-untyped]

    from asyncdataflow.plugins import mysql

    url = os.environ.get("ASYNCDATAFLOW_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
    parts = urlsplit(url)
    connect = {
        "host": parts.hostname,
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "db": parts.path.lstrip("/") or "test",
        "charset": "utf8mb4",
        "autocommit": True,
    }
    rows = 100_000 if QUICK else 1_000_000
    rounds = 1 if QUICK else 2
    chunk = 5000
    try:
        admin = await aiomysql.connect(**connect)
    except Exception as error:
        print(f"mysql: skipped, no server at {url} ({error})")
        return
    src, dst = f"bench_src_{os.getpid()}", f"bench_dst_{os.getpid()}"
    columns = "id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, qty INT NOT NULL, price DOUBLE"
    try:
        async with admin.cursor() as cur:
            for table in (src, dst):
                await cur.execute(f"CREATE TABLE `{table}` ({columns}) ENGINE=InnoDB")
            await cur.execute(
                f"INSERT INTO `{src}` SELECT seq, CONCAT('name ', seq), seq % 7, seq * 0.5 "
                f"FROM seq_0_to_{rows - 1}"
            )

        async def hand() -> None:
            reading = await aiomysql.connect(**connect)
            writing = await aiomysql.connect(**connect)
            try:
                async with reading.cursor(aiomysql.SSCursor) as cur, writing.cursor() as out:
                    await cur.execute(f"SELECT id, name, qty, price FROM `{src}`")
                    while batch := await cur.fetchmany(chunk):
                        await writing.begin()
                        await out.executemany(
                            f"INSERT INTO `{dst}` (id, name, qty, price) VALUES (%s, %s, %s, %s)",
                            batch,
                        )
                        await writing.commit()
            finally:
                reading.close()
                writing.close()

        async def ours() -> None:
            reader = mysql.reader(
                f"SELECT id, name, qty, price FROM `{src}`", url=url, chunk_size=chunk
            )
            writer = mysql.writer(dst, url=url, batch_size=chunk)

            async def same(data: list[Any]) -> dict[str, Any]:
                return {"data": data}

            try:
                await run_pipeline(reader, same, writer)
            finally:
                await reader.aclose()
                await writer.aclose()

        h, f = [], []
        for _ in range(rounds):
            for run, samples in ((hand, h), (ours, f)):
                async with admin.cursor() as cur:
                    await cur.execute(f"TRUNCATE TABLE `{dst}`")
                started = time.perf_counter()
                await run()
                samples.append(time.perf_counter() - started)
                async with admin.cursor() as cur:
                    await cur.execute(f"SELECT COUNT(*) FROM `{dst}`")
                    assert (await cur.fetchone())[0] == rows
        hm, fm = median_of(h), median_of(f)
        how = "DataFlow"
        print(
            f"{f'mysql copy {rows:,} rows, chunk {chunk:,}, {how}':<52} hand {hm:9.2f} s "
            f"  ours {fm:9.2f} s   ratio hand/ours {hm / fm:5.2f}"
        )
    finally:
        async with admin.cursor() as cur:
            for table in (src, dst):
                await cur.execute(f"DROP TABLE IF EXISTS `{table}`")
        admin.close()


SECTIONS: dict[str, Callable[[], Awaitable[None]]] = {
    "map": bench_map,
    "records": bench_records,
    "jsonl": bench_jsonl,
    "mysql": bench_mysql,
}


async def main() -> None:
    wanted = [a for a in sys.argv[1:] if not a.startswith("-")] or list(SECTIONS)
    unknown = [w for w in wanted if w not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    print(f"python {sys.version.split()[0]}")
    for name in wanted:
        await SECTIONS[name]()


if __name__ == "__main__":
    asyncio.run(main())
