"""A process the kill-and-restart tests run (tests/test_checkpoints_kill.py):

python durable_copy.py jsonl SOURCE STATE URL TABLE [MODE]
    copy a JSON Lines file (records of 50 lines, window 4) into a MySQL table with
    MODE (upsert by default), resuming from a file checkpoint store (at least once; the
    upsert makes it exact, an insert may write up to 4 records again after a kill);
python durable_copy.py mysql SOURCE DESTINATION URL CHECKPOINTS
    copy a MySQL table into another one (no key) with mode="insert", resuming from a
    MySQL checkpoint store on the same database (exactly once).
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys

from asyncdataflow import DataFlow, step
from asyncdataflow.plugins import files, mysql


async def jsonl(source: str, state: str, url: str, table: str, mode: str = "upsert") -> None:
    flow = DataFlow(
        (
            step(files.reader(source, format="jsonl", chunk_size=50), window=4),
            mysql.writer(table, url=url, mode=mode),  # type: ignore[arg-type]  # a str from argv
        ),
        name="copy",
        checkpoint=files.checkpoints(state),
    )
    async with flow:
        await flow()


async def table(source: str, destination: str, url: str, checkpoints: str) -> None:
    flow = DataFlow(
        (
            step(
                mysql.reader(
                    f"SELECT id, payload, v FROM `{source}`",
                    url=url,
                    chunk_size=1000,
                    resume_by="id",
                ),
                window=4,
            ),
            mysql.writer(destination, url=url, mode="insert"),
        ),
        name="copy",
        checkpoint=mysql.checkpoints(url=url, table=checkpoints),
    )
    async with flow:
        await flow()


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1)  # a test that waits too long asks where it is
    copy = {"jsonl": jsonl, "mysql": table}[sys.argv[1]]
    asyncio.run(copy(*sys.argv[2:]))
