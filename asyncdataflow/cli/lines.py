"""Reading input lines for ``map`` without blocking the event loop."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from collections.abc import AsyncIterator
from typing import IO

__all__ = ["LineReader"]

_CHUNK = 1 << 16


def _blocking_fd(stream: IO[bytes]) -> int | None:
    """The descriptor to read in a thread when reading ``stream`` may wait for the other
    side (a pipe, a terminal, a socket); None for a regular file (or no descriptor)."""
    try:
        fd = stream.fileno()
        return None if stat.S_ISREG(os.fstat(fd).st_mode) else fd
    except (OSError, ValueError):
        return None


class LineReader:
    """The lines of a binary stream. A pipe or a terminal (``--input -``) is read by a
    daemon thread, so a line that is slow to come never stalls the runs in flight; a
    regular file is read on the loop (it never waits for anyone).

    The thread reads the descriptor with ``os.read`` (no lock of a buffered file object
    that interpreter shutdown would wait for), at most ``buffered`` chunks of 64 KiB
    ahead. :meth:`stop` ends the iteration at once, even while it waits for a line; the
    thread goes at its next chunk or at exit (being a daemon, it keeps nothing alive)."""

    def __init__(self, stream: IO[bytes], buffered: int = 16) -> None:
        self.stream = stream
        self.stopped = False
        self._fd = _blocking_fd(stream)
        self._queue: asyncio.Queue[list[bytes] | BaseException | None] = asyncio.Queue()
        self._room = threading.Semaphore(buffered)
        self._closed = threading.Event()
        if self._fd is not None:
            self._loop = asyncio.get_running_loop()
            thread = threading.Thread(target=self._read, name="asyncdataflow-input", daemon=True)
            thread.start()

    def _put(self, item: list[bytes] | BaseException | None) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening
            return False
        return True

    def _read(self) -> None:
        assert self._fd is not None
        rest = b""
        try:
            while True:
                self._room.acquire()
                if self._closed.is_set():
                    return
                chunk = os.read(self._fd, _CHUNK)
                if not chunk:
                    self._put([rest] if rest else [])
                    self._put(None)
                    return
                *lines, rest = (rest + chunk).split(b"\n")
                if not self._put([line + b"\n" for line in lines]):
                    return
        except Exception as error:  # handed over to the loop
            self._put(error)

    def stop(self) -> None:
        """No more lines: the iteration ends, now or after the line it is handing out."""
        self.stopped = True
        self._queue.put_nowait([])

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._fd is None:
            while not self.stopped:
                line = self.stream.readline()
                if not line:
                    return
                yield line
                await asyncio.sleep(0)  # let a signal handler in between lines
            return
        try:
            while not self.stopped:
                item = await self._queue.get()
                self._room.release()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                for line in item:
                    if self.stopped:
                        return
                    yield line
        finally:
            self._closed.set()
            self._room.release()  # wake the thread if it waits for room
