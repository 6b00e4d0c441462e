"""The notes a step's exception carries: which step raised it, and why it was not
retried."""

from __future__ import annotations

import asyncio

from .info import StepInfo
from .options import Retry

_NO_NOTE = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


def note(error: BaseException, info: StepInfo, flow_name: str) -> None:
    """Say which step raised ``error``, once (a step may re-raise one stored exception)."""
    if isinstance(error, _NO_NOTE):
        return
    text = f"asyncdataflow: raised by step {info.name!r} at {info.path} of flow {flow_name!r}"
    if text not in getattr(error, "__notes__", ()):
        error.add_note(text)


def retry_note(policy: Retry, error: BaseException, attempt: int) -> str:
    if not isinstance(error, policy.on):
        on = policy.on if isinstance(policy.on, tuple) else (policy.on,)
        names = ", ".join(t.__name__ for t in on)
        return (
            f"asyncdataflow: not retried: {type(error).__name__} is not listed in "
            f"Retry(on=({names},)); {attempt} attempt(s) made"
        )
    if attempt >= policy.attempts:
        return (
            f"asyncdataflow: gave up: {attempt} attempt(s) made (Retry(attempts={policy.attempts}))"
        )
    return f"asyncdataflow: a step_retry_delay hook declined to retry; {attempt} attempt(s) made"
