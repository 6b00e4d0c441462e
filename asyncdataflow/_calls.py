"""How a step is called: a sync step in a worker thread or process."""

from __future__ import annotations

from typing import Any


def call_sync(func: Any, /, **kwargs: Any) -> Any:
    """Call a sync step in a worker thread or process. A StopIteration cannot cross into
    an asyncio future (the run would hang), so it becomes a RuntimeError, as PEP 479 does
    for a coroutine."""
    try:
        return func(**kwargs)
    except StopIteration as exc:
        raise RuntimeError("step raised StopIteration") from exc
