"""A process the HTTP kill-and-restart test runs: copy every page of a paginated API
into a JSON Lines file (one line per page, appended), resuming from a file checkpoint
store.

    python http_pages_copy.py URL STYLE STATE OUT

STYLE is ``link`` (an RFC 8288 Link header) or ``cursor`` (``next_cursor`` in the body).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from asyncdataflow import DataFlow, step
from asyncdataflow.plugins import files, http


def next_cursor(body: Any, response: Any) -> Any:
    cursor = body.get("next_cursor")
    return response.url.update_query(cursor=cursor) if cursor else None


def append_to(out: str) -> Any:
    async def save(data: list[int]) -> None:
        fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(data) + "\n").encode())  # one write: a whole line
        finally:
            os.close(fd)

    return save


async def main(url: str, style: str, state: str, out: str) -> None:
    if style == "link":
        reader = http.reader(url, paginate="link", stream=True)
    else:
        reader = http.reader(url, paginate=next_cursor, stream=True, select="items")
    flow = DataFlow(
        (step(reader, window=2), append_to(out)),
        name="pages",
        checkpoint=files.checkpoints(state),
    )
    async with flow:
        await flow()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
