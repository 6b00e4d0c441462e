"""Concurrent branches run at once, and tasks cancelled and awaited together."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any

Data = dict[str, Any]


async def gather_branches(coros: list[Coroutine[Any, Any, Data]]) -> list[Data]:
    """Run branches at once; on the first failure cancel and await the others, then
    raise that failure unchanged."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        await cancel_and_wait(tasks)
        raise


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel the tasks, wait until every one has finished, and mark their exceptions
    retrieved (the caller raises the one that matters)."""
    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    pending = [t for t in tasks if not t.done()]
    if pending:
        await asyncio.wait(pending)
    for t in tasks:
        if not t.cancelled():
            t.exception()
