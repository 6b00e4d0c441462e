"""Every exception the library raises. A step's own exceptions are never wrapped: they
propagate unchanged, with a PEP 678 note naming the step and its place."""

from __future__ import annotations

__all__ = [
    "ArgsMapperError",
    "ArgsMapperInputKeyError",
    "ArgsMapperOutputKeyError",
    "DataFlowCallError",
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
