"""Durable runs: what a checkpoint store and a dead-letter sink promise.

A **checkpoint store** keeps, per flow name, the last committed position of each of the
flow's sources (``{"definition[0]": <position>}``). Positions are JSON values (numbers,
strings, lists, dicts): the last key read, the next page, a byte offset. A flow built
with ``checkpoint=store`` and ``name=...`` loads them when a run starts and commits a
record's position, in order, when the record's last step has finished.

A **dead-letter sink** keeps the records a step could not process after its retries, as
:class:`DeadLetter` objects, so that the stream goes on and the letters can be replayed.

The integration pack has both for JSON files (``asyncdataflow.plugins.files.checkpoints``,
``asyncdataflow.plugins.files.dead_letters``) and for MySQL tables
(``asyncdataflow.plugins.mysql.checkpoints``, ``asyncdataflow.plugins.mysql.dead_letters``).
A plugin package adds another store or sink by implementing the protocols below; nothing
needs registering.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import time as _time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from .exceptions import DataFlowDefinitionError, DataFlowRunError

__all__ = [
    "AtLeastOnceWarning",
    "CheckpointStore",
    "DeadLetter",
    "DeadLetterSink",
    "Record",
    "RecordCommit",
    "check_position",
    "current_record",
    "resume_position",
]

Positions = dict[str, Any]


class Record(dict[str, Any]):
    """What a source yields to mark a record with its position: a dict (the record's
    data) with a ``position``.

    ``yield Record({"data": rows}, position=last_id)`` starts a record exactly as
    ``yield {"data": rows}`` does; in a flow with ``checkpoint=``, ``position`` (a JSON
    value: the last key read, the next page, a byte offset) is committed when the record
    and every record before it have finished, and handed back by
    :func:`resume_position` when the flow runs again. Without ``checkpoint=`` the
    position is ignored; a caller iterating the source itself gets dicts.
    """

    __slots__ = ("position",)

    def __init__(self, data: Mapping[str, Any] | None = None, /, position: Any = None) -> None:
        super().__init__(() if data is None else data)
        self.position = position

    def __reduce__(self) -> Any:
        return (Record, (dict(self), self.position))


_RESUME: contextvars.ContextVar[Any] = contextvars.ContextVar("asyncdataflow_resume", default=None)


def resume_position() -> Any:
    """The last committed position of the source being started, or ``None`` (no
    checkpoint, or nothing committed yet).

    Call it in the source's body before its first ``yield`` (the value is set while the
    flow opens and advances that source): a source that supports resuming starts after
    that position.
    """
    return _RESUME.get()


class RecordCommit:
    """The commit of one record's position, handed to the step that may make it part of
    its own transaction (see :func:`current_record`).

    A flow whose checkpoint store lives in the same database as its last step's writes
    (``mysql.checkpoints`` with a ``mysql.writer`` on the same server and database) lets
    that writer commit the record's rows and its position in one transaction; a restarted
    flow then finds every record either written with its position or not at all.

    Attributes:
        store: the flow's checkpoint store.
        name: the flow's name (the store's key).
        position: this record's position.
        positions: what to store under ``name`` once this record is committed (every
            tracked position, this record's included).
        writer: the step object allowed to commit in its transaction: the record's last
            step, when it said yes to ``joins_checkpoint(store)``; else ``None``.
        unsure: for the writer's own use across its attempts (a retry): ``True`` while
            an earlier attempt's COMMIT may have landed, which the next attempt must ask
            the store about before it writes again.

    The writer calls :meth:`wait_turn` before it commits (records commit in order), then
    :meth:`committed` once its transaction (rows and positions) has committed. A record
    whose writer did not commit its position is committed by the flow when it finishes,
    in its own transaction.
    """

    __slots__ = (
        "_turns", "done", "index", "name", "path", "position", "store", "unsure", "writer",
    )  # fmt: skip

    def __init__(
        self, store: Any, name: str, path: str, writer: Any, index: int, position: Any, turns: Any
    ) -> None:
        self.store = store
        self.name = name
        self.path = path
        self.writer = writer
        self.index = index
        self.position = position
        self._turns: Turns | None = turns
        self.done = False
        self.unsure = False  # set by a writer while its COMMIT's outcome is unknown

    @property
    def positions(self) -> Positions:
        base = {} if self._turns is None else self._turns.positions
        return {**base, self.path: self.position}

    async def wait_turn(self, ahead: int = 0) -> None:
        """Return once at most ``ahead`` records before this one are still uncommitted
        (``0``: every earlier record is committed, this one may commit)."""
        turns = self._turns
        if turns is not None and self.index - turns.upto - 1 > ahead:
            await turns.wait(self.index - 1 - ahead)

    def committed(self) -> None:
        """Tell the flow this record's position is committed (with the writer's rows)."""
        self.done = True
        if self._turns is not None:
            self._turns.positions[self.path] = self.position
            self._turns.advance(self.index)


class Turns:
    """The order in which one source run's records commit: ``upto`` is the index of the
    last record whose position is committed; waiters wake as it moves."""

    __slots__ = ("positions", "upto", "waiters")

    def __init__(self, positions: Positions, upto: int = -1) -> None:
        self.positions = positions  # the checkpoint's positions, shared
        self.upto = upto
        self.waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def wait(self, index: int) -> None:
        """Until record ``index`` (and every one before it) is committed."""
        if self.upto >= index:
            return
        future = asyncio.get_running_loop().create_future()
        self.waiters.append((index, future))
        await future

    def advance(self, index: int) -> None:
        if index <= self.upto:
            return
        self.upto = index
        ready = [w for w in self.waiters if w[0] <= index]
        if ready:
            self.waiters = [w for w in self.waiters if w[0] > index]
            for _, future in ready:
                if not future.done():
                    future.set_result(None)


_RECORD: contextvars.ContextVar[RecordCommit | None] = contextvars.ContextVar(
    "asyncdataflow_record", default=None
)


def current_record() -> RecordCommit | None:
    """The commit of the record being processed, when the flow has ``checkpoint=`` and
    the record carries a position; ``None`` otherwise. A writer checks
    ``record.writer is self`` before making the position part of its transaction."""
    return _RECORD.get()


@runtime_checkable
class CheckpointStore(Protocol):
    """Where a flow's source positions survive a restart.

    ``load(name)`` returns the positions committed under ``name`` (``{}`` when none);
    ``commit(name, positions)`` replaces them as one atomic step (after a crash the store
    holds either the old positions or the new ones); ``aclose()`` releases what the store
    opened (the flow's ``aclose()`` calls it).
    """

    async def load(self, name: str) -> Positions: ...

    async def commit(self, name: str, positions: Mapping[str, Any]) -> None: ...

    async def aclose(self) -> None: ...


class AtLeastOnceWarning(UserWarning):
    """A step that could write each record exactly once with the flow's checkpoint
    (it said yes to ``joins_checkpoint(store)``) is not the record's last step, so its
    records are written at least once."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record a step could not process after its retries.

    Attributes:
        flow: the flow's name.
        step: the step's display name.
        path: the step's place in the definition, e.g. ``definition[2]``.
        input: the step's input for that record (what a replay feeds the flow again).
        error_type: the exception's qualified type name, e.g. ``ValueError``.
        message: ``str(exception)``.
        notes: the exception's notes (which step, which record, retries made).
        attempts: how many attempts were made.
        time: when it was written, in seconds since the epoch (UTC).
        record: the record's index in each enclosing source, outermost first (``()``
            outside a stream).
        source: the place of the source whose record it is (``None`` outside a
            stream): a replay runs the record through the steps after that source.
        id: the sink's identifier for the letter (set by the sink when read back).
    """

    flow: str
    step: str
    path: str
    input: dict[str, Any]
    error_type: str
    message: str
    notes: tuple[str, ...] = ()
    attempts: int = 1
    time: float = field(default_factory=_time.time)
    record: tuple[int, ...] = ()
    source: str | None = None
    id: str | None = None

    @classmethod
    def from_error(
        cls,
        error: BaseException,
        *,
        flow: str,
        step: str,
        path: str,
        input: Mapping[str, Any],
        attempts: int,
        record: tuple[int, ...] = (),
        source: str | None = None,
    ) -> DeadLetter:
        kind = type(error)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else (f"{kind.__module__}.{kind.__qualname__}")
        )
        return cls(
            flow=flow,
            step=step,
            path=path,
            input=dict(input),
            error_type=name,
            message=str(error),
            notes=tuple(str(n) for n in getattr(error, "__notes__", ())),
            attempts=attempts,
            record=tuple(record),
            source=source,
        )

    def to_json(self) -> str:
        """One line of JSON (values JSON cannot hold are written as their ``repr``)."""
        out = asdict(self)
        if self.id is None:
            out.pop("id")
        return json.dumps(out, default=repr, ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes, id: str | None = None) -> DeadLetter:
        raw = json.loads(text)
        return cls(
            flow=raw["flow"],
            step=raw["step"],
            path=raw["path"],
            input=dict(raw["input"]),
            error_type=raw["error_type"],
            message=raw["message"],
            notes=tuple(raw.get("notes", ())),
            attempts=int(raw.get("attempts", 1)),
            time=float(raw.get("time", 0.0)),
            record=tuple(raw.get("record", ())),
            source=raw.get("source"),
            id=raw.get("id", id),
        )


@runtime_checkable
class DeadLetterSink(Protocol):
    """Where dead letters go.

    ``put(letter)`` stores one letter durably before it returns; ``letters()`` yields the
    stored letters (each with its ``id`` set) oldest first; ``remove(ids)`` deletes
    letters (a replay removes those that now succeed); ``aclose()`` releases what the sink
    opened.
    """

    async def put(self, letter: DeadLetter) -> None: ...

    def letters(self) -> AsyncIterator[DeadLetter]: ...

    async def remove(self, ids: Iterable[str]) -> None: ...

    async def aclose(self) -> None: ...


def check_position(owner: str, source: str, position: Any) -> Any:
    """``position`` if JSON can store it exactly (``None``, bool, int, finite float, str,
    and lists or str-keyed dicts of those); else :class:`DataFlowRunError` naming the
    source."""
    stack = [position]
    while stack:
        value = stack.pop()
        if value is None or isinstance(value, (bool, int, str)):
            continue
        if isinstance(value, float) and math.isfinite(value):
            continue
        if isinstance(value, (list, tuple)):
            stack.extend(value)
            continue
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            stack.extend(value.values())
            continue
        raise DataFlowRunError(
            f"{owner}: source {source} marked a record with position {value!r:.80} "
            f"({type(value).__name__}), which a checkpoint cannot store; positions are "
            f"JSON values (numbers, str, lists, dicts with str keys)"
        )
    return position


def check_name(owner: str, name: Any) -> str:
    """A checkpoint name: a non-empty str of at most 191 characters (a MySQL key)."""
    if not isinstance(name, str) or not name or len(name) > 191:
        raise DataFlowDefinitionError(
            f"{owner}: a checkpoint name must be a non-empty str of at most 191 "
            f"characters, got {name!r:.80}; give the flow name='...'"
        )
    return name
