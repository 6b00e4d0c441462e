"""The reader and writer steps."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import errno
import inspect
import os
import secrets
import stat
import weakref
from collections.abc import AsyncIterator, Coroutine
from typing import Any

try:
    import aiofiles
    import aiofiles.os
except ImportError as error:  # pragma: no cover - the extra is installed in tests
    raise ImportError(
        'asyncdataflow.plugins.files needs aiofiles: pip install "asyncdataflow[files]"'
    ) from error

from asyncdataflow._pickling import PicklesAsConfig

from .._errors import StepArgumentError
from .._vocab import DATA, check_key, declare_outputs
from ._chunks import CHUNK_FORMATS, read_chunks
from ._formats import FORMATS, Chunks, csv_header, csv_rows, decode, encode, newline
from ._paths import (
    FilesArgumentError,
    as_path_str,
    fill,
    resolve_inside,
    template_fields,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

MODES = ("write", "append")
#: The formats whose appends are whole lines: locked against other writers, and started
#: on a new line.
RECORD_FORMATS = ("jsonl", "csv", "json")

#: Bytes handed to one write call when a file is written (not appended): between two
#: chunks the step can be cancelled and the loop runs other tasks.
CHUNK = 1 << 20

_resolve_inside = aiofiles.os.wrap(resolve_inside)
_fsync = aiofiles.os.wrap(os.fsync)


def _check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise FilesArgumentError(
            f"{owner}: {name}={value!r} is not one of {', '.join(map(repr, choices))}"
        )


def _check_encoding(owner: str, encoding: Any) -> None:
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise FilesArgumentError(
            f"{owner}: encoding={encoding!r} is not a codec Python knows (e.g. 'utf-8', "
            "'utf-8-sig', 'latin-1')"
        ) from None


class _FileStep(PicklesAsConfig):
    """What the reader and the writer share: the path (template) and ``base_dir``."""

    _kind = ""
    #: Display name, e.g. ``files.writer(jsonl append out/{day}.jsonl)``; also the
    #: instance's ``__qualname__`` and ``__name__``.
    name: str

    def __init__(self, path: Any, fmt: Any, encoding: Any, base_dir: Any) -> None:
        owner = f"files.{self._kind}()"
        _check_choice(owner, "format", fmt, FORMATS)
        _check_encoding(owner, encoding)
        self.format: str = fmt
        self.encoding: str = encoding
        self.template: str | None = None if path is None else as_path_str(path, "path", owner)
        self.fields: tuple[str, ...] = (
            ("path",) if self.template is None else template_fields(self.template, owner)
        )
        self.base_dir: str | None = None
        self._base_real = ""
        if base_dir is not None:
            self.base_dir = as_path_str(base_dir, "base_dir", owner)
            self._base_real = os.path.realpath(self.base_dir)

    def _signature(self, *first: str) -> inspect.Signature:
        names = [*first, *(f for f in self.fields if f not in first)]
        return inspect.Signature(
            [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in names]
        )

    def _describe(self, *options: str) -> str:
        where = self.template if self.template is not None else "<path>"
        return f"files.{self._kind}({' '.join((*options, where))})"

    async def _target(self, kwargs: dict[str, Any]) -> str:
        """The file this call works on: the template filled in, confined to base_dir."""
        if self.template is None:
            path = as_path_str(kwargs["path"], "the path argument", self.name, StepArgumentError)
        else:
            try:
                path = fill(self.template, kwargs)
            except (TypeError, ValueError) as error:  # {n:03d} given a str, say
                raise StepArgumentError(
                    f"{self.name}: cannot fill the path template {self.template!r} with "
                    f"{ {f: kwargs[f] for f in self.fields}!r}: {error}"
                ) from None
        if self.base_dir is None:
            return path
        return await _resolve_inside(path, self._base_real, self.base_dir, self.name)

    async def aclose(self) -> None:
        """Nothing to close: a step opens and closes its files within each call."""

    def __repr__(self) -> str:
        return f"<{self.name}>"


class Reader(_FileStep):
    """The step :func:`reader` returns; see there."""

    _kind = "reader"

    def __init__(self, path: Any, fmt: Any, encoding: Any, base_dir: Any, key: Any = DATA) -> None:
        super().__init__(path, fmt, encoding, base_dir)
        self.key: str = check_key("files.reader()", key)
        self.__signature__ = self._signature()
        self.name = self.__qualname__ = self.__name__ = self._describe(self.format)
        declare_outputs(self, self.key)

    async def __call__(self, **kwargs: Any) -> dict[str, Any]:
        path = await self._target(kwargs)
        async with aiofiles.open(path, "rb") as file:
            raw = await file.read()
        return {self.key: await decode(self.format, raw, self.encoding, path)}


class ChunkedReader(Reader):
    """The step :func:`reader` returns with ``chunk_size=``: a source (an async
    generator) that yields ``{"data": [item, ...]}`` records of at most ``chunk_size``
    items, reading the file incrementally."""

    def __init__(
        self, path: Any, fmt: Any, encoding: Any, base_dir: Any, key: Any, chunk_size: Any
    ) -> None:
        super().__init__(path, fmt, encoding, base_dir, key)
        owner = "files.reader()"
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise FilesArgumentError(f"{owner}: chunk_size={chunk_size!r} must be an int >= 1")
        if self.format not in CHUNK_FORMATS:
            raise FilesArgumentError(
                f"{owner}: chunk_size= reads {', '.join(map(repr, CHUNK_FORMATS))} files in "
                f"records of items; format={self.format!r} is one document (read it whole, "
                "or store it as 'jsonl')"
            )
        self.chunk_size: int = chunk_size
        self.name = self.__qualname__ = self.__name__ = self._describe(
            self.format, f"chunk_size={chunk_size}"
        )

    async def __call__(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:  # type: ignore[override]
        path = await self._target(kwargs)
        chunks = read_chunks(path, self.format, self.encoding, self.chunk_size, self.key)
        async with contextlib.aclosing(chunks):
            async for record in chunks:
                yield record


class Writer(_FileStep):
    """The step :func:`writer` returns; see there."""

    _kind = "writer"

    def __init__(
        self,
        path: Any,
        fmt: Any,
        mode: Any,
        atomic: Any,
        encoding: Any,
        base_dir: Any,
        makedirs: Any,
        key: Any = DATA,
    ) -> None:
        super().__init__(path, fmt, encoding, base_dir)
        owner = "files.writer()"
        _check_choice(owner, "mode", mode, MODES)
        self.key: str = check_key(owner, key)
        if self.key in self.fields:
            raise FilesArgumentError(
                f"{owner}: path template {self.template!r} has a field {{{self.key}}}, but "
                f"{self.key!r} is what the writer writes; rename the field (or give key=)"
            )
        self.mode: str = mode
        self.atomic = bool(atomic)
        self.makedirs = bool(makedirs)
        self.__signature__ = self._signature(self.key)
        declare_outputs(self, "path")
        options = [self.format, self.mode]
        if self.mode == "write" and not self.atomic:
            options.append("non-atomic")
        self.name = self.__qualname__ = self.__name__ = self._describe(*options)
        # Per event loop, per file: the lock that serialises appends, and how many calls
        # hold or wait for it (the entry goes when that drops to 0).
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, list[Any]]] = (
            weakref.WeakKeyDictionary()
        )
        # Clean-ups that must finish even if the call that started them is cancelled.
        self._cleanups: set[asyncio.Future[None]] = set()

    async def __call__(self, **kwargs: Any) -> dict[str, Any]:
        data = kwargs[self.key]
        target = await self._target(kwargs)
        if self.mode == "append":
            await self._append(target, data)
        else:
            payload = await self._encode(data, target)
            if self.atomic:
                await self._write_atomic(target, payload)
            else:
                await self._write_in_place(target, payload)
        return {"path": target}

    async def _encode(self, data: Any, target: str, header: list[str] | None = None) -> Chunks:
        try:
            return await encode(self.format, data, self.encoding, self.name, csv_header=header)
        except StepArgumentError as error:
            error.add_note(f"{self.name}: data for {target!r} not written")
            raise
        except (TypeError, ValueError) as error:  # json's, a codec's: say which step
            raise StepArgumentError(
                f"{self.name}: data for {target!r} not written: {type(error).__name__}: {error}"
            ) from error

    async def _mkdirs(self, target: str) -> str:
        directory = os.path.dirname(target)
        if self.makedirs and directory:
            try:
                await aiofiles.os.makedirs(directory, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as error:
                # "File exists" would not say what is wrong: a file where a directory
                # of the path should be.
                raise NotADirectoryError(
                    errno.ENOTDIR,
                    f"{self.name}: cannot write {target!r}: a part of {directory!r} is "
                    "a file, not a directory; remove it or choose another path",
                    directory,
                ) from error
        return directory

    async def _write_in_place(self, target: str, payload: Chunks) -> None:
        await self._mkdirs(target)
        async with aiofiles.open(target, "wb") as file:
            await _write_chunks(file, payload)

    async def _write_atomic(self, target: str, payload: Chunks) -> None:
        directory = await self._mkdirs(target)
        temp = os.path.join(directory, f".{os.path.basename(target)}.{secrets.token_hex(6)}.tmp")
        opening: asyncio.Future[Any] = asyncio.ensure_future(aiofiles.open(temp, "xb"))
        try:
            file = await asyncio.shield(opening)
        except BaseException:
            # The open goes on in its thread: let it end, then remove what it created.
            await self._cleanup(_discard_when_open(opening, temp))
            raise
        try:
            await _copy_mode(target, file.fileno())
            await _write_chunks(file, payload)
            await file.flush()
            await _fsync(file.fileno())
            await file.close()
            await aiofiles.os.replace(temp, target)
        except BaseException:
            await self._cleanup(_discard(file, temp))
            raise

    async def _cleanup(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` to its end even if this call is cancelled (again) meanwhile."""
        task = asyncio.ensure_future(coro)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        try:
            await asyncio.shield(task)
        except BaseException:
            pass  # the error that led here is the one to raise, not a clean-up's

    async def _append(self, target: str, data: Any) -> None:
        payload: Chunks | None = None
        if self.format == "csv":
            try:
                data = csv_rows(data, self.name)  # encoded under the lock, after the header
            except TypeError as error:
                error.add_note(f"{self.name}: data for {target!r} not written")
                raise
            if not data:
                return
        else:
            payload = await self._encode(data, target)
            if len(payload) > 1:
                payload = [b"".join(payload)]
            if not payload or not payload[0]:
                return
        key = os.path.normpath(os.path.abspath(target))
        locks = self._locks.setdefault(asyncio.get_running_loop(), {})
        entry = locks.get(key)
        if entry is None:
            entry = locks[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                await self._mkdirs(target)
                # O_APPEND, unbuffered: the records go out in one write(2) at the end of
                # the file, never split around another writer's.
                async with aiofiles.open(target, "a+b", buffering=0) as file:
                    if self.format in RECORD_FORMATS:
                        # Other step objects, loops and processes take the same lock:
                        # the header check and the write are one step for all of them.
                        await _lock_file(file.fileno())  # released when the file closes
                        if payload is None:  # csv: follow the header already in the file
                            header = await _read_csv_header(target, self.encoding)
                            payload = await self._encode(data, target, header)
                            payload = [b"".join(payload)]
                        # A file another program left without a final line end: start
                        # a new line rather than glue the first record onto its last.
                        line_end = newline(self.encoding)
                        if not await _ends_with(file.fileno(), line_end):
                            payload = [line_end + payload[0]]
                    assert payload is not None
                    view = memoryview(payload[0])
                    while view:
                        written = await file.write(view)
                        view = view[written:]
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del locks[key]


async def _lock_file(fd: int) -> None:
    """Take an exclusive ``flock`` on ``fd``, polling so that no thread waits for it."""
    if fcntl is None:  # pragma: no cover - not on POSIX
        return
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)


def _ends_with_sync(fd: int, end: bytes) -> bool:
    """Whether the file is empty or its last bytes are ``end``."""
    size = os.fstat(fd).st_size
    if size == 0:
        return True
    return size >= len(end) and os.pread(fd, len(end), size - len(end)) == end


_ends_with = aiofiles.os.wrap(_ends_with_sync)


def _copy_mode_sync(target: str, fd: int) -> None:
    """Give the temporary file the permission bits of the file it replaces, so that
    rewriting a 0o600 file does not leave it readable by everyone."""
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return
    os.fchmod(fd, stat.S_IMODE(mode))


_copy_mode = aiofiles.os.wrap(_copy_mode_sync)


async def _write_chunks(file: Any, payload: Chunks) -> None:
    for chunk in payload:
        view = memoryview(chunk)
        for start in range(0, len(view), CHUNK):
            await file.write(view[start : start + CHUNK])


async def _read_csv_header(path: str, encoding: str) -> list[str] | None:
    try:
        async with aiofiles.open(path, "rb") as file:
            first = await file.readline()
    except FileNotFoundError:
        return None
    return csv_header(first, encoding)


async def _discard(file: Any, temp: str) -> None:
    try:
        await file.close()
    finally:
        try:
            await aiofiles.os.remove(temp)
        except FileNotFoundError:
            pass


async def _discard_when_open(opening: asyncio.Future[Any], temp: str) -> None:
    await asyncio.wait({opening})
    if opening.cancelled() or opening.exception() is not None:
        return  # nothing was created (or the open failed)
    await _discard(opening.result(), temp)


def reader(
    path: str | os.PathLike[str] | None = None,
    *,
    format: str = "text",
    encoding: str = "utf-8",
    base_dir: str | os.PathLike[str] | None = None,
    key: str = DATA,
    chunk_size: int | None = None,
) -> Reader:
    """A step that reads one file and returns ``{"data": ...}``; with ``chunk_size=N``,
    a source that yields ``{"data": [...]}`` records of at most N items.

    Args:
        path: ``None`` (the step takes the file from its ``path`` argument), a fixed path,
            or a template whose ``{field}`` names become the step's parameters
            (``reader("in/{day}.jsonl")`` takes ``day``).
        format: ``"text"`` (a ``str``), ``"bytes"``, ``"json"`` (the decoded document),
            ``"jsonl"`` (a list of the decoded lines; blank lines are skipped) or ``"csv"``
            (a list of dicts, keys from the header line, values ``str``).
        encoding: the text encoding (not used by ``"bytes"``).
        base_dir: when set, relative paths are taken relative to it, and a path that
            resolves outside it (``..``, an absolute path, a symbolic link) raises
            :class:`PathOutsideBaseDirError` before the file is opened.
        key: the name the result goes under instead of ``data`` (``{key: ...}``), e.g.
            for two readers in one concurrent block.
        chunk_size: for ``"text"`` (lines, without their line end), ``"jsonl"`` and
            ``"csv"``: read the file incrementally and yield a record per ``chunk_size``
            items (the last one may hold fewer); memory holds one chunk per record in
            flight, whatever the file's size. The step is then a source (an async
            generator function); see docs/files.md.
    """
    if chunk_size is not None:
        return ChunkedReader(path, format, encoding, base_dir, key, chunk_size)
    return Reader(path, format, encoding, base_dir, key)


def writer(
    path: str | os.PathLike[str] | None = None,
    *,
    format: str = "text",
    mode: str = "write",
    atomic: bool = True,
    encoding: str = "utf-8",
    base_dir: str | os.PathLike[str] | None = None,
    makedirs: bool = True,
    key: str = DATA,
) -> Writer:
    """A step that writes its ``data`` argument to a file and returns ``{"path": ...}``.

    Args:
        path: as for :func:`reader`; the step takes ``data`` and ``path`` (or the
            template's fields).
        format: as for :func:`reader`. ``"jsonl"`` writes one line per item of a list (a
            single mapping is one line); ``"csv"`` takes a list of dicts (a single
            mapping is one row).
        mode: ``"write"`` replaces the file; ``"append"`` adds the records at its end, all
            of one call in one ``write(2)`` so concurrent appends never interleave.
        atomic: with ``mode="write"``, write a temporary file beside the target, fsync it
            and rename it over the target, so a reader sees the old file or the new one.
        encoding: the text encoding (not used by ``"bytes"``).
        base_dir: as for :func:`reader`; checked before anything is created.
        makedirs: create the file's missing parent directories.
        key: the parameter the records come from instead of ``data``.
    """
    return Writer(path, format, mode, atomic, encoding, base_dir, makedirs, key)
