"""Checkpoints at run time: which source a flow's store tracks, and committing its
positions in order. Flows without ``checkpoint=`` never reach this module."""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Any

from ._compiler import Block, Fn
from .durable import AtLeastOnceWarning, CheckpointStore, RecordCommit, Turns, check_name
from .exceptions import DataFlowDefinitionError, DataFlowRunError

if TYPE_CHECKING:
    from .flow import DataFlow

_TOP = re.compile(r"definition\[\d+\]")


class Checkpoint:
    """The store, the flow's name and the place of the source whose positions it keeps
    (the first source at the top level of the definition)."""

    __slots__ = ("name", "path", "positions", "running", "store", "writer")

    def __init__(self, flow: DataFlow, store: Any, name: str | None) -> None:
        if not isinstance(store, CheckpointStore):
            raise DataFlowDefinitionError(
                f"DataFlow: checkpoint={store!r:.80} is not a checkpoint store (it needs "
                f"async load(name), commit(name, positions) and aclose()); use e.g. "
                f"asyncdataflow.plugins.files.checkpoints(path)"
            )
        if name is None:
            raise DataFlowDefinitionError(
                "DataFlow: checkpoint= needs name='...': the store keeps positions under "
                "the flow's name, which must stay the same from one process to the next"
            )
        self.name = check_name("DataFlow", name)
        self.store = store
        sources = [s.path for s in flow.steps if s.source and _TOP.fullmatch(s.path)]
        if not sources:
            raise DataFlowDefinitionError(
                f"DataFlow {name!r}: checkpoint= needs a source (a generator step) at the "
                f"top level of the definition (definition[N]); this flow has none"
            )
        self.path: str = sources[0]
        self.positions: dict[str, Any] = {}
        self.running = False
        self.writer = self._writer(flow)

    def _writer(self, flow: DataFlow) -> Any:
        """The record's last step, when it can commit positions in its own transaction
        (``joins_checkpoint(store)``); a step that could but is not last is warned of."""
        last: Fn | Block | None = flow.plan.items[-1]
        while isinstance(last, Block):  # a nested flow runs its items one after another
            if last.concurrent and len(last.items) > 1:
                last = None  # several branches finish in any order: none is last
            else:
                last = last.items[0] if last.concurrent else last.items[-1]
        final = None
        if last is not None and last.info.path != self.path:
            final = _joins(last.info.func, self.store)
        for info in flow.steps:
            func = _joins(info.func, self.store)
            if func is not None and func is not final:
                warnings.warn(
                    f"DataFlow {self.name!r}: step {info.name!r} at {info.path} could write "
                    f"each record exactly once with the flow's checkpoint store, but it is "
                    f"not the record's last step, so its records are written at least once "
                    f"(again after a restart); make it the last step of the definition for "
                    f"exactly once",
                    AtLeastOnceWarning,
                    stacklevel=4,
                )
        return final

    def turns(self) -> Turns:
        """The commit order of one run of the tracked source (after :meth:`load`)."""
        return Turns(self.positions)

    def record(self, turns: Turns | None, index: int, position: Any) -> RecordCommit:
        return RecordCommit(self.store, self.name, self.path, self.writer, index, position, turns)

    def begin(self) -> None:
        if self.running:
            raise DataFlowRunError(
                f"DataFlow {self.name!r}: a run of this flow is already going on; a flow with "
                f"checkpoint= runs one at a time (two runs would both start after the same "
                f"position and write its records twice): await the first run, or give each "
                f"concurrent flow its own name="
            )
        self.running = True

    async def load(self) -> Any:
        """The tracked source's last committed position (``None`` when none)."""
        self.positions = dict(await self.store.load(self.name))
        return self.positions.get(self.path)

    async def commit(self, position: Any) -> None:
        self.positions[self.path] = position
        await self.store.commit(self.name, self.positions)


def _joins(func: Any, store: Any) -> Any:
    """``func`` (or what it wraps) when it commits positions in its own transaction."""
    while func is not None:
        joins = getattr(func, "joins_checkpoint", None)
        if joins is not None and callable(joins) and joins(store) is True:
            return func
        func = getattr(func, "__wrapped__", None)
    return None
