"""What hooks are told about a run and a step: small, frozen, slotted objects."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .options import CallOptions

_counter = itertools.count(1)
_prefix = ""


def _reseed() -> None:
    """A new prefix (pid and a random part) and counter: at import, and in every child
    process forked after it, which would otherwise repeat the parent's ids."""
    global _counter, _prefix
    _counter = itertools.count(1)
    _prefix = f"{os.getpid():x}-{os.urandom(4).hex()}"


_reseed()
if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reseed)


def _new_run_id() -> str:
    return f"{_prefix}-{next(_counter)}"


@dataclass(frozen=True, slots=True)
class StepInfo(CallOptions):
    """One step of a compiled flow, as the hooks see it.

    Attributes:
        name: the display name: ``step(..., name=...)``, else the callable's qualified name.
        path: its place in the definition, e.g. ``definition[2][0]``.
        parent: the path of the block that holds it (``definition`` for a top-level step).
        func: the callable that is called (options and inline marks removed).
        is_async: whether it is awaited on the loop (else it runs in the executor, or
            inline when marked with :func:`asyncdataflow.inline`).
        inline: a sync step marked to run on the loop.
        params: every parameter the flow may feed it, by flow-side name.
        required: the parameters without default; all must be in the input for it to run.
        timeout: seconds, or ``None``.
        retry: the retry policy in force (its own, else the flow's default), or ``None``.
        limit: at most this many calls at once across all runs of the flow, or ``None``.
        rate: its :class:`~asyncdataflow.Rate` (calls a second), or ``None``.
        breaker: its :class:`~asyncdataflow.Breaker`, or ``None``.
        source: ``"async"`` or ``"sync"`` for a source (a generator function whose every
            yielded dict starts a record), else ``None``.
        window: a source's window (records in flight at once), else ``None``.
        dead_letter: the dead-letter sink a failed record goes to (its own, else the
            flow's default), or ``None``.
    """

    name: str
    path: str
    parent: str
    func: Callable[..., Any] = field(repr=False)
    is_async: bool
    inline: bool
    params: tuple[str, ...]
    required: tuple[str, ...]
    source: str | None = None
    window: int | None = None
    dead_letter: Any = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run of a flow: one call, or one iteration of an infinity loop.

    Attributes:
        id: unique in this process and across processes (pid, random part, counter).
        kwargs: the call's keyword arguments.
        iteration: the loop iteration (from 1), or ``None`` outside a loop.
        record: where in a stream the step runs: the index (from 0) of its record in
            each source it runs under, outermost first; ``()`` outside any record. The
            run of a record's steps is a copy of the flow's run with the same ``id``.
    """

    kwargs: Mapping[str, Any] = field(repr=False)
    iteration: int | None = None
    id: str = field(default_factory=_new_run_id)
    record: tuple[int, ...] = ()
