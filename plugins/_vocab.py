"""The pack's one vocabulary: readers return their records under ``data``, writers take
them from ``data``, and every reader and writer factory takes ``key=`` to use another
name. Each pack step declares its output keys in ``__asyncdataflow_outputs__`` (read by
the compiler) so that a flow's wiring can be checked when it is built.
"""

from __future__ import annotations

import keyword
from typing import Any

from asyncdataflow.exceptions import DataFlowDefinitionError

#: The name records travel under between the pack's readers and writers.
DATA = "data"

#: The attribute the compiler reads for a step's output keys.
OUTPUTS_ATTR = "__asyncdataflow_outputs__"


def check_key(owner: str, key: object) -> str:
    """``key`` when it can be a parameter name, else ``DataFlowDefinitionError``."""
    if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
        raise DataFlowDefinitionError(
            f"{owner}: key={key!r} must be a Python identifier (it is the name the records "
            "travel under in the flow's data), e.g. key='orders'"
        )
    return key


def declare_outputs(step: Any, *keys: str) -> None:
    """Record the keys every call of ``step`` returns."""
    setattr(step, OUTPUTS_ATTR, tuple(keys))
