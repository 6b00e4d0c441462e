"""Opening files for the steps: confined to ``base_dir`` without a race, safe against
cancellation, and the temporary files of the atomic writer.

With ``base_dir`` a path is never opened by name from the root: it is walked component by
component from a descriptor of ``base_dir``, each directory opened relative to the one
before with ``O_NOFOLLOW``, and a symbolic link met on the way is read and resolved here,
within ``base_dir`` (as ``openat2(RESOLVE_BENEATH)`` would, but also for links with an
absolute target inside ``base_dir``). A directory swapped for a link between two steps
makes the open fail; it never leads outside. The final file is opened (or created)
relative to its directory's descriptor with ``O_NOFOLLOW`` too.

Everything here is blocking; the steps call it in a worker thread, through
:func:`in_thread`, which closes what a cancelled call opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import stat
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ._paths import PathOutsideBaseDirError

#: Symbolic links followed for one path at most (Linux's own limit).
MAX_LINKS = 40
#: Longest file name (bytes) on the file systems Python runs on.
NAME_MAX = 255
TEMP_SUFFIX = ".tmp"
_TOKEN_HEX = 12
#: ``.<name>.<12 hex>.tmp``, or ``.<shortened name>~<16 hex>.<12 hex>.tmp`` for long names.
TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class _Closable(Protocol):
    def close(self) -> None: ...


T = TypeVar("T", bound=_Closable)


@dataclass(slots=True)
class Place:
    """Where a file is: its directory's descriptor (``None`` without ``base_dir``: then
    ``name`` is the whole path) and its name there; ``path`` is what the step reports."""

    dir_fd: int | None
    name: str
    path: str

    @property
    def flags(self) -> int:
        """Open flags every open of this place adds."""
        return os.O_CLOEXEC | (_NOFOLLOW if self.dir_fd is not None else 0)

    def sibling(self, name: str) -> str:
        """A name beside the file, for the calls that take ``dir_fd=self.dir_fd``."""
        if self.dir_fd is not None:
            return name
        return os.path.join(os.path.dirname(self.name), name)

    def open(self, flags: int, mode: int = 0o666, name: str | None = None) -> int:
        return os.open(
            self.name if name is None else name, flags | self.flags, mode, dir_fd=self.dir_fd
        )

    def close(self) -> None:
        """Close the directory's descriptor (once; later calls do nothing)."""
        if self.dir_fd is not None and self.dir_fd >= 0:
            fd, self.dir_fd = self.dir_fd, -1
            os.close(fd)


def locate(
    path: str,
    base_real: str | None,
    *,
    makedirs: bool,
    step: str,
    base_dir: str | None = None,
    shown: str | None = None,
) -> Place:
    """The place of ``path`` (relative to ``base_real`` when given, confined to it);
    missing parent directories are created when ``makedirs``."""
    if base_real is None:
        directory = os.path.dirname(path)
        if makedirs and directory:
            try:
                os.makedirs(directory, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as error:
                raise _not_a_directory(step, path, directory) from error
        return Place(None, path, path)
    return _beneath(path, base_real, makedirs, step, base_dir or base_real)


def _beneath(path: str, base_real: str, makedirs: bool, step: str, base_dir: str) -> Place:
    def outside() -> PathOutsideBaseDirError:
        resolved = os.path.realpath(os.path.join(base_real, path))
        return PathOutsideBaseDirError(step, path, base_dir, resolved)

    def relative(target: str) -> list[str]:
        """``target`` (absolute or relative to base_real) as components below it."""
        if os.path.isabs(target):
            target = os.path.relpath(os.path.normpath(target), base_real)
        target = os.path.normpath(target)
        if target == ".." or target.startswith("../"):
            raise outside()
        return [p for p in target.split("/") if p not in ("", ".")]

    todo = deque(relative(path))
    if not todo:
        raise IsADirectoryError(errno.EISDIR, f"{step}: {path!r} is base_dir itself", path)
    if makedirs:
        os.makedirs(base_real, exist_ok=True)
    stack = [os.open(base_real, _DIR_FLAGS)]
    names: list[str] = []
    links = 0
    try:
        while True:
            part = todo.popleft()
            if part == "..":  # only from a link's target: go up our own way
                if not names:
                    raise outside()
                os.close(stack.pop())
                names.pop()
                continue
            try:
                info: os.stat_result | None = os.stat(part, dir_fd=stack[-1], follow_symlinks=False)
            except FileNotFoundError:
                info = None
            if info is not None and stat.S_ISLNK(info.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, f"{step}: too many symbolic links in {path!r}")
                target = os.readlink(part, dir_fd=stack[-1])
                if os.path.isabs(target):
                    for fd in stack[1:]:
                        os.close(fd)
                    del stack[1:], names[:]
                if os.path.isabs(target):
                    parts = relative(target)
                else:  # relative: its ".." go up the directories opened here
                    parts = [p for p in target.split("/") if p not in ("", ".")]
                todo.extendleft(reversed(parts))
                if not todo:
                    raise IsADirectoryError(errno.EISDIR, f"{step}: {path!r} is a directory", path)
                continue
            if not todo:  # the file itself: the caller opens (or creates) it
                place = Place(stack.pop(), part, os.path.join(base_real, *names, part))
                return place
            if info is None:
                if not makedirs:
                    raise FileNotFoundError(
                        errno.ENOENT, f"{step}: no directory {part!r} on the way to", path
                    )
                try:
                    os.mkdir(part, 0o777, dir_fd=stack[-1])
                except FileExistsError:
                    pass  # made meanwhile by another writer: open it below
            try:
                fd = os.open(part, _DIR_FLAGS | _NOFOLLOW, dir_fd=stack[-1])
            except NotADirectoryError as error:
                raise _not_a_directory(step, path, os.path.join(*names, part)) from error
            stack.append(fd)
            names.append(part)
    finally:
        for fd in stack:
            os.close(fd)


def _not_a_directory(step: str, target: str, directory: str) -> NotADirectoryError:
    # "File exists" would not say what is wrong: a file where a directory should be.
    return NotADirectoryError(
        errno.ENOTDIR,
        f"{step}: cannot use {target!r}: a part of {directory!r} is a file, not a "
        "directory; remove it or choose another path",
        directory,
    )


_cleanups: set[asyncio.Future[Any]] = set()


async def in_thread(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in a worker thread. If the caller is cancelled meanwhile, the call
    still ends in its thread, and what it returns is closed before the cancellation goes
    on: when the cancelled call is over, nothing it opened is open."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, func, *args)
    try:
        return await asyncio.shield(future)
    except BaseException:
        cleanup = asyncio.ensure_future(_close_when_done(future))
        _cleanups.add(cleanup)
        cleanup.add_done_callback(_cleanups.discard)
        with contextlib.suppress(BaseException):
            await asyncio.shield(cleanup)  # cancelled again: it still runs to its end
        raise


async def _close_when_done(future: asyncio.Future[Any]) -> None:
    await asyncio.wait({future})
    if not future.cancelled() and future.exception() is None:
        await asyncio.get_running_loop().run_in_executor(None, future.result().close)


# --- temporary files of the atomic writer -----------------------------------------------


def temp_prefix(name: str) -> str:
    """The start of the temporary files' names for a target named ``name``:
    ``.<name>.``, or for a name too long for that, a shortened name and a hash of it
    (so every target has its own prefix and no name exceeds 255 bytes)."""
    prefix = f".{name}."
    room = NAME_MAX - _TOKEN_HEX - len(TEMP_SUFFIX)
    if len(os.fsencode(prefix)) <= room:
        return prefix
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    keep = os.fsencode(name)[: room - len(digest) - 3].decode("utf-8", "ignore")
    return f".{keep}~{digest}."


def temp_name(name: str, token: str) -> str:
    return f"{temp_prefix(name)}{token}{TEMP_SUFFIX}"


def stale_temp_files(path: str, older_than: float) -> list[str]:
    """Remove the atomic writer's temporary files left by a process that was killed
    while writing (``kill -9``, a power cut): those of the target file ``path``, or of
    every file in ``path`` when it is a directory, last modified more than
    ``older_than`` seconds ago. Returns the paths removed."""
    if os.path.isdir(path):
        directory, prefix = path, None
    else:
        directory, prefix = os.path.dirname(path) or ".", temp_prefix(os.path.basename(path))
    limit = time.time() - older_than
    removed: list[str] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if not TEMP_NAME.match(name) or (prefix is not None and not name.startswith(prefix)):
                continue
            try:
                if (
                    not entry.is_file(follow_symlinks=False)
                    or entry.stat(follow_symlinks=False).st_mtime > limit
                ):
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue  # renamed into place or removed meanwhile
            removed.append(entry.path)
    return sorted(removed)
