"""Exceptions the pack raises for what the user gave it.

Every one derives from :class:`~asyncdataflow.DataFlowError`: a bad factory argument is a
:class:`~asyncdataflow.DataFlowDefinitionError` (raised when the step is made), a bad value
a step gets while the flow runs is a :class:`~asyncdataflow.DataFlowRunError`.
"""

from __future__ import annotations

from asyncdataflow.exceptions import DataFlowDefinitionError, DataFlowRunError


class PackDefinitionError(DataFlowDefinitionError, ValueError, TypeError):
    """A pack factory (``http.reader(...)``, ``mysql.writer(...)``, ...) got an argument
    it cannot use. Raised when the factory is called, before any I/O."""


class StepArgumentError(DataFlowRunError, ValueError, TypeError):
    """A pack step got a value it cannot use while the flow runs (a path that is not a
    path, rows that are not rows, a URL with an unencoded password, ...). Raised before
    the step does any I/O with it; the message names the step and what to give instead.
    It is a ``ValueError`` and a ``TypeError`` too, for code written before it existed."""
