"""A process the kill-and-restart tests run: copy a JSON Lines file into a MySQL table
with upsert, resuming from a file checkpoint store.

    python durable_copy.py SOURCE STATE URL TABLE
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys

from asyncdataflow import DataFlow, step
from asyncdataflow.plugins import files, mysql


async def main(source: str, state: str, url: str, table: str) -> None:
    flow = DataFlow(
        (
            step(files.reader(source, format="jsonl", chunk_size=50), window=4),
            mysql.writer(table, url=url, mode="upsert"),
        ),
        name="copy",
        checkpoint=files.checkpoints(state),
    )
    async with flow:
        await flow()


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1)  # a test that waits too long asks where it is
    asyncio.run(main(*sys.argv[1:5]))
