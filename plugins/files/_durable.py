"""Checkpoints in one JSON file, dead letters in a JSON Lines file.

Both are safe across processes on one machine: every read-modify-write holds an exclusive
``flock`` on the file itself (appends) or on a ``<file>.lock`` beside it (rewrites), and
a rewrite goes through a temporary file, ``fsync`` and ``os.replace``, so the file is
always either the old one or the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from asyncdataflow.durable import DeadLetter, check_name, check_position
from asyncdataflow.exceptions import DataFlowDefinitionError, DataFlowRunError

__all__ = ["FileCheckpoints", "FileDeadLetters", "checkpoints", "dead_letters"]


def _path(owner: str, path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise DataFlowDefinitionError(f"{owner}: path must be a file path, got {path!r:.80}")
    return os.path.abspath(os.fspath(path))


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """An exclusive lock on ``<path>.lock`` (kept: removing it would race other lockers)."""
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _replace(path: str, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically and durably (temp file, fsync, rename,
    fsync of the directory)."""
    folder = os.path.dirname(path)
    temp = os.path.join(folder, f".{os.path.basename(path)[:200]}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_json(path: str, owner: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        return {}
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError as error:
        raise DataFlowRunError(
            f"{owner}: {path} is not valid JSON ({error}); it was not written by this "
            f"store, or was edited by hand: fix or remove it"
        ) from None
    if not isinstance(value, dict):
        raise DataFlowRunError(f"{owner}: {path} holds a {type(value).__name__}, not an object")
    return value


class _FileStore:
    """What both stores share: the absolute path, the owner named in errors, the repr."""

    _owner: str  # how a user built it, e.g. "files.checkpoints()"

    def __init__(self, path: Any) -> None:
        self.path = _path(self._owner, path)

    def __repr__(self) -> str:
        return f"<{self._owner.removesuffix('()')} {self.path}>"

    async def aclose(self) -> None:
        return None


class FileCheckpoints(_FileStore):
    """A checkpoint store in one JSON file: ``{"<flow name>": {"<source>": position}}``."""

    _owner = "files.checkpoints()"

    async def load(self, name: str) -> dict[str, Any]:
        check_name(self._owner, name)
        stored = await asyncio.to_thread(_read_json, self.path, self._owner)
        positions = stored.get(name, {})
        return dict(positions) if isinstance(positions, dict) else {}

    async def commit(self, name: str, positions: Mapping[str, Any]) -> None:
        check_name(self._owner, name)
        value = {k: check_position(self._owner, k, v) for k, v in positions.items()}
        # the thread finishes even if the awaiting task is cancelled: never a torn write
        await asyncio.shield(asyncio.to_thread(self._commit, name, value))

    def _commit(self, name: str, positions: dict[str, Any]) -> None:
        with _locked(self.path):
            stored = _read_json(self.path, self._owner)
            stored[name] = positions
            _replace(self.path, json.dumps(stored, ensure_ascii=False, indent=1).encode())


class FileDeadLetters(_FileStore):
    """A dead-letter sink in a JSON Lines file: one letter a line, each with an ``id``."""

    _owner = "files.dead_letters()"

    async def put(self, letter: DeadLetter) -> None:
        if letter.id is None:
            letter = _with_id(letter, uuid.uuid4().hex)
        line = (letter.to_json() + "\n").encode()
        await asyncio.shield(asyncio.to_thread(self._append, line))

    def _append(self, line: bytes) -> None:
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    current = os.stat(self.path).st_ino
                except FileNotFoundError:
                    current = -1
                if current != os.fstat(fd).st_ino:
                    continue  # a remove() replaced the file while we waited: reopen
                os.write(fd, line)  # O_APPEND + one write: the line is never interleaved
                os.fsync(fd)
                return
            finally:
                os.close(fd)

    def _read(self) -> list[DeadLetter]:
        try:
            with open(self.path, "rb") as file:
                lines = file.read().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                out.append(DeadLetter.from_json(line, id=f"line-{number}"))
            except (ValueError, KeyError, TypeError) as error:
                raise DataFlowRunError(
                    f"{self._owner}: line {number} of {self.path} is not a dead letter "
                    f"({error!r}); fix or remove that line"
                ) from None
        return out

    async def letters(self) -> AsyncIterator[DeadLetter]:
        for letter in await asyncio.to_thread(self._read):
            yield letter

    async def remove(self, ids: Iterable[str]) -> None:
        gone = set(ids)
        if gone:
            await asyncio.shield(asyncio.to_thread(self._remove, gone))

    def _remove(self, gone: set[str]) -> None:
        with _locked(self.path):
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # no append between the read and the rename
                keep = [ltr for ltr in self._read() if ltr.id not in gone]
                _replace(self.path, "".join(ltr.to_json() + "\n" for ltr in keep).encode())
            finally:
                os.close(fd)


def _with_id(letter: DeadLetter, id: str) -> DeadLetter:
    from dataclasses import replace

    return replace(letter, id=id)


def checkpoints(path: Any) -> FileCheckpoints:
    """A checkpoint store in the JSON file ``path`` (created on the first commit; its
    directory must exist). Gives at-least-once delivery: a record written and not yet
    committed is written again after a restart; an idempotent writer (upsert) makes that
    exactly-once in effect. See docs/durable.md."""
    return FileCheckpoints(path)


def dead_letters(path: Any) -> FileDeadLetters:
    """A dead-letter sink in the JSON Lines file ``path`` (created on the first letter).
    See docs/durable.md."""
    return FileDeadLetters(path)
