"""asyncdataflow: turn a tuple of async and sync functions into one coroutine.

>>> flow = DataFlow((source, (transform_a, transform_b), destination))
>>> result = await flow(endpoint="...")  # doctest: +SKIP
"""

from __future__ import annotations

from . import exceptions
from .args_mapper import args_mapper
from .flow import DataFlow
from .hookspecs import hookimpl
from .info import RunInfo, StepInfo
from .options import Retry, inline, step
from .plugin_manager import get_plugin_manager, register_plugin, unregister_plugin

__version__ = "0.1.0"

__all__ = [
    "DataFlow",
    "Retry",
    "RunInfo",
    "StepInfo",
    "__version__",
    "args_mapper",
    "exceptions",
    "get_plugin_manager",
    "hookimpl",
    "inline",
    "register_plugin",
    "step",
    "unregister_plugin",
]
