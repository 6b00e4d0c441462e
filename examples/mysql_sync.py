"""Keep a MySQL table copied into another one, continuously, each row exactly once, even
through `kill -9`.

    python examples/mysql_sync.py SOURCE DESTINATION [CHECKPOINT_TABLE]

The server is ASYNCDATAFLOW_MYSQL_URL (default mysql://root@127.0.0.1:3306/test). Every
second the flow reads the source's rows with an id above the last one copied, 1,000 rows
a record, up to 4 records in flight, and inserts them into the destination. Each
record's rows and its last id are committed in one transaction (the checkpoint table is
on the destination's database), so a process killed at any moment and started again
copies every row once: none lost, none twice. SIGTERM or Ctrl-C stop it at once (a
record not committed yet is read again next time).
"""

import asyncio
import os
import signal
import sys

from asyncdataflow import DataFlow, step
from asyncdataflow.plugins import mysql

URL = os.environ.get("ASYNCDATAFLOW_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
POLL_SECONDS = 1.0


def sync_flow(source: str, destination: str, checkpoints: str) -> DataFlow:
    read = mysql.reader(f"SELECT * FROM `{source}`", url=URL, chunk_size=1000, resume_by="id")
    return DataFlow(
        (step(read, window=4), mysql.writer(destination, url=URL)),
        name=f"sync {source} to {destination}",  # where the last id copied is kept
        checkpoint=mysql.checkpoints(url=URL, table=checkpoints),
    )


async def copied(flow: DataFlow) -> int | None:
    """The last id committed, or None before the first record."""
    position: int | None = (await flow.checkpoint.load(flow.name)).get("definition[0]")
    return position


async def main(source: str, destination: str, checkpoints: str) -> None:
    running = asyncio.current_task()
    assert running is not None
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop at once: what is committed stays
        asyncio.get_running_loop().add_signal_handler(sig, running.cancel)
    async with sync_flow(source, destination, checkpoints) as flow:
        last = await copied(flow)
        print(f"syncing {source} to {destination} after id {last}", flush=True)
        try:
            while True:
                await flow()  # the rows after the last id committed, then it ends
                if (now := await copied(flow)) != last:
                    print(f"copied up to id {now}", flush=True)
                    last = now
                await asyncio.sleep(POLL_SECONDS)  # then look for new rows
        except asyncio.CancelledError:
            print(f"stopped after id {await copied(flow)}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:3], *(sys.argv[3:4] or ["asyncdataflow_checkpoints"])))
