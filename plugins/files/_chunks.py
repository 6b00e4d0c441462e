"""``files.reader(..., chunk_size=N)``: a source that reads a file incrementally and
yields records of at most N items (lines, JSON Lines documents or CSV rows).

Each chunk is read and parsed in one call in the loop's default thread pool (through
``aiofiles.os.wrap``), so the event loop never waits on the disk nor parses on the loop,
and memory holds one chunk plus the file object's buffer, whatever the file's size.
"""

from __future__ import annotations

import asyncio
import csv
import json
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from itertools import islice
from typing import IO, Any

import aiofiles.os

#: The formats a chunked reader reads as a sequence of items.
CHUNK_FORMATS = ("text", "jsonl", "csv")


class ChunkFile:
    """An open text file and its parser, read one chunk at a time in a worker thread.

    A lock makes :meth:`close` wait for a chunk being read in another thread (a chunk
    call goes on in its thread after the task awaiting it was cancelled)."""

    def __init__(self, path: str, fmt: str, encoding: str) -> None:
        self.path = path
        self.format = fmt
        self.encoding = encoding
        self.lock = threading.Lock()
        self.file: IO[str] | None = open(path, encoding=encoding, newline="")
        self.line = 0  # lines read so far (for error notes)
        self.items: Iterator[Any] = self._items(self.file)

    def _lines(self, file: IO[str]) -> Iterator[str]:
        for line in file:
            self.line += 1
            yield line

    def _items(self, file: IO[str]) -> Iterator[Any]:
        if self.format == "csv":
            # csv needs the line ends (quoted fields may hold newlines); rows are dicts
            return iter(csv.DictReader(self._lines(file)))
        if self.format == "jsonl":
            return self._jsonl(file)
        return (line.rstrip("\r\n") for line in self._lines(file))

    def _jsonl(self, file: IO[str]) -> Iterator[Any]:
        loads = json.loads
        for line in self._lines(file):
            if line.isspace():
                continue  # blank lines, as the whole-file reader skips them
            try:
                yield loads(line)
            except json.JSONDecodeError as error:
                error.add_note(f"while reading {self.path!r} as jsonl, line {self.line}")
                raise

    def chunk(self, size: int) -> list[Any]:
        """Up to ``size`` items; an empty list at the end of the file."""
        with self.lock:
            if self.file is None:
                return []
            try:
                return list(islice(self.items, size))
            except UnicodeDecodeError as error:
                error.add_note(
                    f"while reading {self.path!r} as {self.format} with "
                    f"encoding={self.encoding!r} (near line {self.line + 1}): give the "
                    "file's encoding (e.g. encoding='latin-1')"
                )
                raise

    def close(self) -> None:
        with self.lock:
            if self.file is not None:
                self.file.close()
                self.file = None


_open = aiofiles.os.wrap(ChunkFile)
_chunk: Callable[[ChunkFile, int], Any] = aiofiles.os.wrap(ChunkFile.chunk)
_close: Callable[[ChunkFile], Any] = aiofiles.os.wrap(ChunkFile.close)


def _close_when_open(opening: asyncio.Future[ChunkFile]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


async def read_chunks(
    path: str, fmt: str, encoding: str, size: int, key: str
) -> AsyncGenerator[dict[str, Any], None]:
    """Yield ``{key: [item, ...]}`` records of at most ``size`` items each; the file is
    closed when the source ends, fails or is closed (``aclose()``, cancellation)."""
    opening = asyncio.ensure_future(_open(path, fmt, encoding))
    try:
        chunks: ChunkFile = await asyncio.shield(opening)
    except BaseException:
        opening.add_done_callback(_close_when_open)  # the open goes on in its thread
        raise
    try:
        while True:
            items = await _chunk(chunks, size)
            if not items:
                return
            yield {key: items}
            if len(items) < size:
                return
    finally:
        await _close(chunks)
