"""Checkpoints at run time: which source a flow's store tracks, and committing its
positions in order. Flows without ``checkpoint=`` never reach this module."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .durable import CheckpointStore, check_name
from .exceptions import DataFlowDefinitionError

if TYPE_CHECKING:
    from .flow import DataFlow

_TOP = re.compile(r"definition\[\d+\]")


class Checkpoint:
    """The store, the flow's name and the place of the source whose positions it keeps
    (the first source at the top level of the definition)."""

    __slots__ = ("name", "path", "positions", "store")

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

    async def load(self) -> Any:
        """The tracked source's last committed position (``None`` when none)."""
        self.positions = dict(await self.store.load(self.name))
        return self.positions.get(self.path)

    async def commit(self, position: Any) -> None:
        self.positions[self.path] = position
        await self.store.commit(self.name, self.positions)
