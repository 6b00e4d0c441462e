"""The reader and writer steps."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import inspect
import os
import secrets
import stat
import weakref
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiofiles
import aiofiles.os
import aiofiles.threadpool

from asyncdataflow._pickling import PicklesAsConfig
from asyncdataflow.durable import Record, resume_position

from .._errors import StepArgumentError
from .._vocab import DATA, check_key, declare_outputs
from ._chunks import CHUNK_FORMATS, read_chunks
from ._formats import (
    FORMATS,
    Chunks,
    byte_order_mark,
    csv_header,
    csv_rows,
    decode,
    encode,
    newline,
)
from ._io import Place, in_thread, locate, stale_temp_files, temp_name
from ._paths import FilesArgumentError, as_path_str, fill, template_fields

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
        return path

    def _locate(self, path: str, *, makedirs: bool) -> Place:
        """Blocking: where ``path`` is, confined to base_dir (run it in a thread)."""
        base = self._base_real if self.base_dir is not None else None
        return locate(path, base, makedirs=makedirs, step=self.name, base_dir=self.base_dir)

    def _resolve(self, path: str) -> str:
        """Blocking: the path ``path`` leads to inside base_dir."""
        place = self._locate(path, makedirs=False)
        place.close()
        return place.path

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
        # Opened, read and closed in one call in a worker thread: a cancelled call leaves
        # nothing open behind it.
        raw, where = await asyncio.get_running_loop().run_in_executor(None, self._read, path)
        return {self.key: await decode(self.format, raw, self.encoding, where)}

    def _read(self, path: str) -> tuple[bytes, str]:
        place = self._locate(path, makedirs=False)
        try:
            fd = place.open(os.O_RDONLY)
        finally:
            place.close()
        with open(fd, "rb") as file:
            return file.read(), place.path


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

    async def __call__(self, **kwargs: Any) -> AsyncIterator[Record]:  # type: ignore[override]
        path = await self._target(kwargs)
        if self.base_dir is not None:  # checked here; the chunk reader opens it by name
            path = await asyncio.get_running_loop().run_in_executor(None, self._resolve, path)
        start = resume_position()
        if start is not None and (isinstance(start, bool) or not isinstance(start, int)):
            raise FilesArgumentError(
                f"{self.name}: the checkpoint holds {start!r:.80} for this source, not a "
                "byte offset; was the flow's name given to another flow's checkpoint?"
            )
        chunks = read_chunks(
            path, self.format, self.encoding, self.chunk_size, self.key, start or 0
        )
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
        csv_escape_formulas: Any = False,
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
        if csv_escape_formulas and self.format != "csv":
            raise FilesArgumentError(f"{owner}: csv_escape_formulas= goes with format='csv'")
        self.escape_formulas = bool(csv_escape_formulas)
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
            return {"path": await self._append(target, data)}
        payload = await self._encode(data, target)
        if self.atomic:
            return {"path": await self._write_atomic(target, payload)}
        return {"path": await self._write_in_place(target, payload)}

    async def _encode(self, data: Any, target: str, header: list[str] | None = None) -> Chunks:
        try:
            return await encode(
                self.format,
                data,
                self.encoding,
                self.name,
                csv_header=header,
                escape_formulas=self.escape_formulas,
            )
        except StepArgumentError as error:
            error.add_note(f"{self.name}: data for {target!r} not written")
            raise
        except (TypeError, ValueError) as error:  # json's, a codec's: say which step
            raise StepArgumentError(
                f"{self.name}: data for {target!r} not written: {type(error).__name__}: {error}"
            ) from error

    def _open(self, path: str, flags: int, mode: str) -> _Opened:
        """Blocking: ``path`` opened with ``flags`` (directories made as needed)."""
        place = self._locate(path, makedirs=self.makedirs)
        try:
            fd = place.open(flags)
        finally:
            place.close()
        return _Opened(open(fd, mode, buffering=0 if "a" in mode else -1), place.path)

    def _open_temp(self, path: str) -> _Opened:
        """Blocking: a new temporary file beside ``path``; its directory stays open."""
        place = self._locate(path, makedirs=self.makedirs)
        try:
            temp = place.sibling(temp_name(os.path.basename(place.name), secrets.token_hex(6)))
            fd = place.open(os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666, temp)
        except BaseException:
            place.close()
            raise
        return _Opened(open(fd, "wb"), place.path, place, temp)

    async def _write_in_place(self, target: str, payload: Chunks) -> str:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        opened = await in_thread(self._open, target, flags, "wb")
        file = aiofiles.threadpool.wrap(opened.file)
        try:
            await _write_chunks(file, payload)
        finally:
            await self._cleanup(file.close())
        return opened.path

    async def _write_atomic(self, target: str, payload: Chunks) -> str:
        opened = await in_thread(self._open_temp, target)
        try:
            file = aiofiles.threadpool.wrap(opened.file)
            await _copy_mode(opened, file.fileno())
            await _write_chunks(file, payload)
            await file.flush()
            await _fsync(file.fileno())
            await file.close()
            await aiofiles.os.wrap(opened.commit)()
        except BaseException:
            await self._cleanup(aiofiles.os.wrap(opened.close)())
            raise
        return opened.path

    async def _cleanup(self, coro: Awaitable[None]) -> None:
        """Run ``coro`` to its end even if this call is cancelled (again) meanwhile."""
        task = asyncio.ensure_future(coro)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        try:
            await asyncio.shield(task)
        except BaseException:
            pass  # the error that led here is the one to raise, not a clean-up's

    async def _append(self, target: str, data: Any) -> str:
        payload: Chunks | None = None
        if self.format == "csv":
            try:
                data = csv_rows(data, self.name)  # encoded under the lock, after the header
            except TypeError as error:
                error.add_note(f"{self.name}: data for {target!r} not written")
                raise
            if not data:
                return target
        else:
            payload = await self._encode(data, target)
            if len(payload) > 1:
                payload = [b"".join(payload)]
            if not payload or not payload[0]:
                return target
        # string work only: _base_real is absolute, abspath just normalises the path
        key = os.path.abspath(os.path.join(self._base_real, target))  # noqa: ASYNC240
        locks = self._locks.setdefault(asyncio.get_running_loop(), {})
        entry = locks.get(key)
        if entry is None:
            entry = locks[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                # O_APPEND, unbuffered: the records go out in one write(2) at the end of
                # the file, never split around another writer's.
                flags = os.O_RDWR | os.O_APPEND | os.O_CREAT
                opened = await in_thread(self._open, target, flags, "ab")
                file = aiofiles.threadpool.wrap(opened.file)
                try:
                    await self._append_locked(file, opened.path, data, payload)
                finally:
                    await self._cleanup(file.close())
                return opened.path
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del locks[key]

    async def _append_locked(self, file: Any, path: str, data: Any, payload: Chunks | None) -> None:
        """Append to the open ``file``: under an ``flock`` (other step objects, loops
        and processes take the same lock, so the header check, the write and a
        truncation after a failed write are one step for all of them), after the
        header already in the file (csv), on a new line (record formats), without a
        second byte-order mark, and all or nothing."""
        fd = file.fileno()
        await _lock_file(fd)  # released when the file closes
        size = await _size(fd)
        if payload is None:  # csv: follow the header already in the file
            header = await _read_csv_header(fd, self.encoding) if size else None
            payload = [b"".join(await self._encode(data, path, header))]
        if size:
            bom = byte_order_mark(self.encoding)
            if bom and bytes(payload[0][: len(bom)]) == bom:  # a BOM starts a file only
                payload = [payload[0][len(bom) :]]
            # A file another program left without a final line end: start a new line
            # rather than glue the first record onto its last.
            line_end = newline(self.encoding)
            if self.format in RECORD_FORMATS and not await _ends_with(fd, line_end):
                payload = [line_end + payload[0]]
        view = memoryview(payload[0])
        try:
            while view:
                written = await file.write(view)
                view = view[written:]
        except BaseException:
            # A full disk, a quota, a cancellation: take back what was written of this
            # batch, so the file holds whole records only.
            await self._cleanup(_truncate(fd, size))
            raise


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


def _copy_mode_sync(opened: _Opened, fd: int) -> None:
    """Give the temporary file the permission bits of the file it replaces, so that
    rewriting a 0o600 file does not leave it readable by everyone."""
    assert opened.place is not None
    try:
        mode = os.stat(
            opened.place.name,
            dir_fd=opened.place.dir_fd,
            follow_symlinks=opened.place.dir_fd is None,
        ).st_mode
    except FileNotFoundError:
        return
    os.fchmod(fd, stat.S_IMODE(mode))


_copy_mode = aiofiles.os.wrap(_copy_mode_sync)


def _size_sync(fd: int) -> int:
    return os.fstat(fd).st_size


_size = aiofiles.os.wrap(_size_sync)
_truncate = aiofiles.os.wrap(os.ftruncate)


class _Opened:
    """A file a step opened, the path it reports and, for the atomic writer, the
    directory and the temporary file's name. ``close()`` (also what a cancelled open
    gets) closes it and removes a temporary file that was not committed."""

    __slots__ = ("file", "path", "place", "temp")

    def __init__(self, file: Any, path: str, place: Place | None = None, temp: str = "") -> None:
        self.file = file
        self.path = path
        self.place = place
        self.temp = temp

    def commit(self) -> None:
        """Rename the temporary file over the target (in their directory)."""
        assert self.place is not None
        dir_fd = self.place.dir_fd
        os.replace(self.temp, self.place.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        self.temp = ""
        self.place.close()

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            if self.place is not None:
                try:
                    if self.temp:
                        os.unlink(self.temp, dir_fd=self.place.dir_fd)
                except FileNotFoundError:
                    pass
                finally:
                    self.place.close()


async def _write_chunks(file: Any, payload: Chunks) -> None:
    for chunk in payload:
        view = memoryview(chunk)
        for start in range(0, len(view), CHUNK):
            await file.write(view[start : start + CHUNK])


def _read_csv_header_sync(fd: int, encoding: str) -> list[str] | None:
    """The header of the CSV file open at ``fd`` (read with ``pread``: the file offset
    of an ``O_APPEND`` descriptor does not matter)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    text = ""
    offset = 0
    while "\n" not in text:
        block = os.pread(fd, 65536, offset)
        text += decoder.decode(block, final=not block)
        if not block:
            break
        offset += len(block)
    return csv_header(text.split("\n", 1)[0])


_read_csv_header = aiofiles.os.wrap(_read_csv_header_sync)


async def clean_temp_files(
    path: str | os.PathLike[str], *, older_than: float = 3600.0
) -> list[str]:
    """Remove the temporary files an atomic ``files.writer`` leaves when its process is
    killed while writing (``kill -9``, a power cut; any other failure removes its own):
    those of the file ``path``, or of every file in the directory ``path``, last
    modified more than ``older_than`` seconds ago (so a write in progress elsewhere is
    left alone). Returns the paths removed."""
    where = as_path_str(path, "path", "files.clean_temp_files()")
    return await aiofiles.os.wrap(stale_temp_files)(where, older_than)


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
    csv_escape_formulas: bool = False,
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
        csv_escape_formulas: with ``"csv"``, prefix with ``'`` every ``str`` cell that
            starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, so a
            spreadsheet shows it as text instead of running it as a formula.
        key: the parameter the records come from instead of ``data``.
    """
    return Writer(
        path, format, mode, atomic, encoding, base_dir, makedirs, key, csv_escape_formulas
    )
