"""Per-step concurrency limits: one semaphore per ``step(...)`` object and event loop,
and the slot a sync step holds while it runs in a worker thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

Semaphores = WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]

_LIMITS: WeakKeyDictionary[Any, Semaphores] = WeakKeyDictionary()


def semaphores_for(options: Any) -> Semaphores:
    """The semaphores of one ``step(...)`` object: a limit belongs to it, shared by every
    run of every flow that holds it, and kept across rebuilds of a plan."""
    return _LIMITS.setdefault(options, WeakKeyDictionary())


def semaphore(sems: Semaphores, loop: asyncio.AbstractEventLoop, limit: int) -> asyncio.Semaphore:
    sem = sems.get(loop)
    if sem is None:
        # a semaphore that had a waiter holds its loop: forget closed loops here, or
        # every asyncio.run() would leave one behind for as long as the step lives
        for old in [lp for lp in sems if lp.is_closed()]:
            del sems[old]
        sem = sems[loop] = asyncio.Semaphore(limit)
    return sem


def release_threadsafe(loop: asyncio.AbstractEventLoop, sem: asyncio.Semaphore) -> None:
    try:
        loop.call_soon_threadsafe(sem.release)
    except RuntimeError:  # the loop is closed: nobody waits for the slot any more
        pass


class ThreadSlot:
    """One slot of a limit held by a sync step in a worker thread: released exactly once,
    by the worker when the call ends, or on the loop when the call never started."""

    __slots__ = ("lock", "loop", "sem", "state")

    def __init__(self, loop: asyncio.AbstractEventLoop, sem: asyncio.Semaphore) -> None:
        self.loop, self.sem = loop, sem
        self.lock = threading.Lock()
        self.state = "waiting"

    def run(self, call: Callable[[], Any]) -> Any:  # in the worker thread
        with self.lock:
            if self.state == "abandoned":
                return None  # the awaiting side gave up before the call started
            self.state = "running"
        try:
            return call()
        finally:
            with self.lock:
                self.state = "done"
            release_threadsafe(self.loop, self.sem)

    def leave(self) -> None:  # on the loop, once the await has ended, however it ended
        with self.lock:
            if self.state == "waiting":
                self.state = "abandoned"
                self.sem.release()
