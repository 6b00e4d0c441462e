"""flow.map(..., journal=path): a map that can resume.

The journal is a JSON Lines file with one line per input whose result the caller has
taken: ``{"i": <index of the input>, "h": <fingerprint of its kwargs>}``. Run again with
the same journal, inputs whose index is in it are not run again (their fingerprint must
match: a journal never silently applies to other inputs). A result counts as taken when
the caller asks for the next one, or when the map is exhausted; the result in the
caller's hands when it leaves the loop early is run again next time (at least once,
never lost). Each line is written with one ``write`` on an ``O_APPEND`` descriptor, so it
survives the process being killed (the kernel holds it), though not a power loss.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._map import Inputs, Result, ordered_map
from .exceptions import DataFlowCallError

if TYPE_CHECKING:
    from .flow import DataFlow


# json.dumps(kwargs, sort_keys=True, default=repr, ensure_ascii=False), without building an
# encoder for every input
_CANONICAL = json.JSONEncoder(sort_keys=True, default=repr, ensure_ascii=False).encode
_SHA1 = hashlib.sha1


def fingerprint(kwargs: Mapping[str, Any]) -> str:
    """A short, stable fingerprint of one input's kwargs (JSON, keys sorted; values JSON
    cannot hold count by their ``repr``)."""
    return _SHA1(_CANONICAL(kwargs).encode(), usedforsecurity=False).hexdigest()[:16]


def read_journal(path: str) -> tuple[dict[int, str], dict[str, Any]]:
    """``{input index: fingerprint}`` of the inputs the journal holds as done, and the last
    entry (where a caller such as the CLI keeps what it needs to resume, e.g. how far its
    output file got)."""
    done: dict[int, str] = {}
    last: dict[str, Any] = {}
    try:
        with open(path, "rb") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return done, last
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            done[int(entry["i"])] = str(entry["h"])
            last = entry
        except (ValueError, KeyError, TypeError):
            if number == len(lines):
                continue  # a last line cut short by a crash: that input was not recorded
            raise DataFlowCallError(
                f"map(journal={path!r}): line {number} is not a journal entry; the file was "
                f"not written by map(), or was edited: use another journal file"
            ) from None
    return done, last


class Journal:
    """The open journal file of one map."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.done, self.last = read_journal(path)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._cut_torn_line()

    def _cut_torn_line(self) -> None:
        """A crash mid-line leaves no newline at the end: start on a fresh line."""
        size = os.fstat(self.fd).st_size
        if size:
            with open(self.path, "rb") as file:
                file.seek(size - 1)
                if file.read(1) != b"\n":
                    os.write(self.fd, b"\n")

    def record(self, index: int, mark: str, **extra: Any) -> None:
        # one small write to the page cache: no thread needed, and no torn line; the line
        # is json.dumps({"i": index, "h": mark, **extra}) (a hex mark needs no escaping)
        line = b'{"i": %d, "h": "%s"' % (index, mark.encode())
        if extra:
            line += b", " + json.dumps(extra).encode()[1:-1]
        os.write(self.fd, line + b"}\n")

    def close(self) -> None:
        os.close(self.fd)


async def _numbered(
    inputs: Inputs, journal: Journal, order: deque[tuple[int, str]]
) -> AsyncIterator[Mapping[str, Any]]:
    """The inputs not yet done, noting the index and fingerprint of each one passed on."""
    index = -1
    if isinstance(inputs, AsyncIterable):
        source: AsyncIterator[Any] = aiter(inputs)
    else:
        source = _from_sync(inputs)
    async for kw in source:
        index += 1
        if not isinstance(kw, Mapping):
            yield kw  # map() refuses it, after the results before it
            continue
        mark = fingerprint(kw)
        seen = journal.done.get(index)
        if seen is not None:
            if seen != mark:
                raise DataFlowCallError(
                    f"map(journal={journal.path!r}): input #{index} is not the input the "
                    f"journal recorded at that place; a journal resumes the same inputs in "
                    f"the same order. Use a new journal file for other inputs."
                )
            continue
        order.append((index, mark))
        yield kw


async def _from_sync(inputs: Iterable[Any]) -> AsyncIterator[Any]:
    for kw in inputs:
        yield kw


async def journaled_map(
    flow: DataFlow,
    inputs: Inputs,
    concurrency: int,
    return_exceptions: bool,
    path: str | os.PathLike[str],
    extra: Callable[[], Mapping[str, Any]] | None = None,
) -> AsyncIterator[Result | BaseException]:
    """See :meth:`DataFlow.map`: ``ordered_map`` over the inputs the journal does not hold,
    each successful result recorded once the caller has taken it (with what ``extra()``
    returns then: the CLI keeps the size its output file had reached)."""
    journal = await asyncio.to_thread(Journal, os.fspath(path))
    order: deque[tuple[int, str]] = deque()
    results = ordered_map(flow, _numbered(inputs, journal, order), concurrency, return_exceptions)
    taken: tuple[int, str] | None = None
    try:
        async for result in results:
            index, mark = order.popleft()
            if isinstance(result, BaseException):
                yield result  # a failure is not done: it runs again next time
                continue
            taken = (index, mark)
            yield result
            # the caller asked for the next one: this one is taken
            journal.record(*taken, **(extra() if extra is not None else {}))
            taken = None
    finally:
        await results.aclose()  # type: ignore[attr-defined]
        journal.close()
