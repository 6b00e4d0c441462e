"""``files.reader(..., chunk_size=N)``: a source that reads a file incrementally and
yields records of at most N items (lines, JSON Lines documents or CSV rows).

Each chunk is read and parsed in one call in the loop's default thread pool (through
``aiofiles.os.wrap``), so the event loop never waits on the disk nor parses on the loop,
and memory holds one chunk plus the file object's buffer, whatever the file's size.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import json
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from itertools import islice
from typing import IO, Any

import aiofiles.os

from asyncdataflow.durable import Record

#: The formats a chunked reader reads as a sequence of items.
CHUNK_FORMATS = ("text", "jsonl", "csv")


class ChunkFile:
    """An open text file and its parser, read one chunk at a time in a worker thread.

    A lock makes :meth:`close` wait for a chunk being read in another thread (a chunk
    call goes on in its thread after the task awaiting it was cancelled)."""

    def __init__(self, path: str, fmt: str, encoding: str, start: int = 0) -> None:
        self.path = path
        self.format = fmt
        self.encoding = encoding
        self.lock = threading.Lock()
        self.file: IO[bytes] | None = open(path, "rb")
        self.line = 0  # lines read so far (for error notes)
        self.offset = 0  # bytes consumed: the byte offset after the last item
        self.decode = codecs.getincrementaldecoder(encoding)().decode
        fieldnames = None
        if start:
            if self.format == "csv":  # the header, from the file's start
                fieldnames = next(csv.reader(self._lines(self.file)), None)
            self.file.seek(start)
            self.offset = start
            self.line = 0  # unknown from here: notes count lines from the resume point
        self.items: Iterator[Any] = self._items(self.file, fieldnames)

    def _lines(self, file: IO[bytes]) -> Iterator[str]:
        decode = self.decode
        for raw in iter(file.readline, b""):
            self.line += 1
            self.offset += len(raw)
            yield decode(raw)

    def _items(self, file: IO[bytes], fieldnames: list[str] | None) -> Iterator[Any]:
        if self.format == "csv":
            # csv needs the line ends (quoted fields may hold newlines); rows are dicts;
            # the reader pulls only the lines of the row it returns, so the offset after
            # a row is exact
            return iter(csv.DictReader(self._lines(file), fieldnames=fieldnames))
        if self.format == "jsonl":
            return self._jsonl(file)
        return (line.rstrip("\r\n") for line in self._lines(file))

    def _jsonl(self, file: IO[bytes]) -> Iterator[Any]:
        loads = json.loads
        for line in self._lines(file):
            if line.isspace():
                continue  # blank lines, as the whole-file reader skips them
            try:
                yield loads(line)
            except json.JSONDecodeError as error:
                error.add_note(f"while reading {self.path!r} as jsonl, line {self.line}")
                raise

    def chunk(self, size: int) -> tuple[list[Any], int]:
        """Up to ``size`` items (an empty list at the end of the file) and the byte
        offset after the last of them."""
        with self.lock:
            if self.file is None:
                return [], self.offset
            try:
                return list(islice(self.items, size)), self.offset
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
    path: str, fmt: str, encoding: str, size: int, key: str, start: int = 0
) -> AsyncGenerator[Record, None]:
    """Yield ``Record({key: [item, ...]}, position=<byte offset after the last item>)``
    records of at most ``size`` items each, from byte ``start`` on (a position yielded
    before; for CSV the header is still read from the file's first line); the file is
    closed when the source ends, fails or is closed (``aclose()``, cancellation)."""
    opening = asyncio.ensure_future(_open(path, fmt, encoding, start))
    try:
        chunks: ChunkFile = await asyncio.shield(opening)
    except BaseException:
        opening.add_done_callback(_close_when_open)  # the open goes on in its thread
        raise
    try:
        while True:
            items, offset = await _chunk(chunks, size)
            if not items:
                return
            yield Record({key: items}, position=offset)
            if len(items) < size:
                return
    finally:
        await _close(chunks)
