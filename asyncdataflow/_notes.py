"""The note a step's exception carries: which step raised it."""

from __future__ import annotations

import asyncio

from .info import StepInfo

_NO_NOTE = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


def note(error: BaseException, info: StepInfo, flow_name: str) -> None:
    """Say which step raised ``error``, once (a step may re-raise one stored exception)."""
    if isinstance(error, _NO_NOTE):
        return
    text = f"asyncdataflow: raised by step {info.name!r} at {info.path} of flow {flow_name!r}"
    if text not in getattr(error, "__notes__", ()):
        error.add_note(text)
