"""Every exception the library raises. A step's own exceptions are never wrapped: they
propagate unchanged, with a PEP 678 note naming the step and its place."""

from __future__ import annotations

__all__ = [
    "ArgsMapperError",
    "ArgsMapperInputKeyError",
    "ArgsMapperOutputKeyError",
    "DataFlowCallError",
    "DataFlowCircuitOpenError",
    "DataFlowDefinitionError",
    "DataFlowEmptyError",
    "DataFlowError",
    "DataFlowFunctionArgsError",
    "DataFlowFunctionResultError",
    "DataFlowMergeResultError",
    "DataFlowNotCallableError",
    "DataFlowNotPicklableError",
    "DataFlowNotTupleError",
    "DataFlowRoutingError",
    "DataFlowRunError",
    "DataFlowSkipWarning",
    "DataFlowWiringError",
]


class DataFlowError(Exception):
    """Base of every asyncdataflow exception."""


class DataFlowDefinitionError(DataFlowError):
    """The definition is wrong; raised when ``DataFlow(...)`` is built."""


class DataFlowNotTupleError(DataFlowDefinitionError, TypeError):
    """A list, set, dict, ... stands where a tuple is expected."""


class DataFlowEmptyError(DataFlowDefinitionError, ValueError):
    """An empty tuple in the definition."""


class DataFlowNotCallableError(DataFlowDefinitionError, TypeError):
    """An item that is neither callable nor a tuple."""


class DataFlowFunctionArgsError(DataFlowDefinitionError, TypeError):
    """A step with ``*args``, ``**kwargs`` or positional-only parameters."""


class DataFlowNotPicklableError(DataFlowDefinitionError, TypeError):
    """A flow cannot be sent to other processes (``asyncdataflow.dask.map``): a step, an
    option or a plugin cannot be pickled. Raised before anything is sent."""


class DataFlowRunError(DataFlowError):
    """Something went wrong while a flow ran (not inside a step)."""


class DataFlowCallError(DataFlowRunError, TypeError):
    """A flow was called with positional arguments, or ``map`` got an input that is not a
    mapping of keyword arguments."""


class DataFlowFunctionResultError(DataFlowRunError, TypeError):
    """A step returned something other than a dict or ``None``."""


class DataFlowMergeResultError(DataFlowRunError, ValueError):
    """Two outputs put unequal values under the same key."""


class DataFlowRoutingError(DataFlowRunError, LookupError):
    """No step could be taken where one must be."""


class DataFlowCircuitOpenError(DataFlowRunError):
    """A step's circuit breaker (``step(..., breaker=...)``) is open: the call failed at
    once without reaching the callee. The message names the step and when the breaker
    lets a trial call through.

    Attributes:
        step: the step's display name.
        retry_in: seconds until the breaker lets one trial call through (0 while a trial
            call is under way).
    """

    step: str = ""
    retry_in: float = 0.0


class ArgsMapperError(DataFlowError):
    """``args_mapper`` was misused, or a mapped output does not fit its declaration."""


class ArgsMapperInputKeyError(ArgsMapperError, KeyError):
    """``input=`` names a parameter the function does not have."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ArgsMapperOutputKeyError(ArgsMapperError, KeyError):
    """``output={...}`` lists a key the function's returned dict lacks."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DataFlowWiringError(DataFlowDefinitionError, LookupError):
    """A step can never be taken: one of its required parameters is produced on no path
    into it (the outputs of the steps before it are all declared and none has it).

    Attributes:
        problems: ``(place, parameter)`` for every such step, in definition order, e.g.
            ``(("definition[1]", "rowz"),)``.
    """

    def __init__(self, message: str, problems: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems

    def __str__(self) -> str:  # LookupError's KeyError cousins repr(); this one does not
        return str(self.args[0]) if self.args else ""


class DataFlowSkipWarning(DataFlowError, UserWarning):
    """A later step of a sequential block was not taken while the data held a name close
    to one it lacks (``rows`` for ``rowz``): likely a typo, not routing. A ``UserWarning``
    (given with :func:`warnings.warn`, so warning filters apply), and a ``DataFlowError``
    like everything in this module."""
