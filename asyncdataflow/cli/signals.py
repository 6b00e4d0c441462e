"""SIGINT and SIGTERM while a subcommand's flow runs: the first stops it gracefully, the
next one cancels."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["stop_on_signals"]


@contextlib.contextmanager
def stop_on_signals(
    task: asyncio.Task[Any], first: Callable[[str], None] | None
) -> Iterator[list[int]]:
    """While the block runs, the first SIGINT or SIGTERM calls ``first(signal name)`` (a
    graceful stop) and any later one, or the first when ``first`` is None, cancels
    ``task``. Yields the list of the signal numbers received. Where the loop cannot
    handle signals (Windows), Ctrl-C raises as usual."""
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if first is not None and len(received) == 1:
            first(signal.Signals(signum).name)
        else:
            task.cancel()

    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            handled.append(signum)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        yield received
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
