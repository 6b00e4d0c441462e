"""Dead letters at run time: what a step with a sink does when it fails for good, and how
a source's record that failed that way is dropped so the stream goes on."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

from .durable import DeadLetter
from .exceptions import DataFlowFunctionResultError

if TYPE_CHECKING:
    from ._hooks import Hooks
    from .flow import DataFlow
    from .info import RunInfo, StepInfo

#: set while a source's record runs in this context: a failed step then hands its
#: failure to the record (which writes the letter with the record's input) instead of
#: writing a letter itself
IN_RECORD: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "asyncdataflow_in_record", default=False
)

#: set while ``flow.replay`` runs letters again: a step that fails for good then writes
#: no letter (the one being replayed stays in its sink) and its error goes on
REPLAYING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "asyncdataflow_replaying", default=False
)

#: what a dropped record leaves in place of its output (compared by identity)
DROPPED: dict[str, Any] = {}


class DeadLettered(Exception):
    """A record's step failed for good and has a dead-letter sink: the record catches it,
    writes the letter and is dropped. Never reaches the caller."""

    def __init__(self, error: Exception, step: StepInfo, attempts: int) -> None:
        super().__init__(f"dead letter: {type(error).__name__} in {step.name}")
        self.error = error
        self.step = step
        self.attempts = attempts


def letterable(error: BaseException) -> bool:
    """Whether a step's final failure goes to its sink: an ``Exception`` of the step's,
    not a cancellation or exit, and not a wrong result type (a bug in the flow, which
    every record would hit)."""
    return isinstance(error, Exception) and not isinstance(
        error, (DataFlowFunctionResultError, DeadLettered)
    )


async def post(
    hooks: Hooks,
    flow: DataFlow,
    run: RunInfo | None,
    step: StepInfo,
    error: Exception,
    data: Any,
    attempts: int,
    record: tuple[int, ...] = (),
    source: str | None = None,
) -> DeadLetter:
    """Write the letter for ``error`` to the step's sink and tell the plugins."""
    letter = DeadLetter.from_error(
        error,
        flow=flow.name,
        step=step.name,
        path=step.path,
        input=data,
        attempts=attempts,
        record=record,
        source=source,
    )
    await step.dead_letter.put(letter)
    hooks.emit("on_dead_letter", flow=flow, run=run, step=step, letter=letter)
    return letter
