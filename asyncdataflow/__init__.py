"""asyncdataflow: turn a tuple of async and sync functions into one coroutine.

>>> flow = DataFlow((source, (transform_a, transform_b), destination))
>>> result = await flow(endpoint="...")  # doctest: +SKIP
"""

from __future__ import annotations


def _map_source_pack() -> None:
    """In a source checkout the integration pack lives in ``../plugins``; pyproject.toml
    maps it onto ``asyncdataflow.plugins`` when the package is installed. Map it here too,
    so that ``python -m ...`` run from the repository root (where this directory shadows
    the installed copy) imports the same names. An installed copy has its own
    ``asyncdataflow/plugins`` and is left alone."""
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    pack = os.path.join(os.path.dirname(here), "plugins")
    init = os.path.join(pack, "__init__.py")
    if (
        "asyncdataflow.plugins" in sys.modules
        or os.path.isdir(os.path.join(here, "plugins"))
        or not os.path.isfile(init)
        or not os.path.isfile(os.path.join(os.path.dirname(here), "pyproject.toml"))
    ):
        return
    spec = importlib.util.spec_from_file_location(
        "asyncdataflow.plugins", init, submodule_search_locations=[pack]
    )
    if spec is None or spec.loader is None:  # pragma: no cover - a file we just found
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


_map_source_pack()

from . import exceptions  # noqa: E402
from ._protect import Breaker, Rate  # noqa: E402
from ._wiring import Explanation, StepWiring  # noqa: E402
from .args_mapper import args_mapper  # noqa: E402
from .durable import Record, resume_position  # noqa: E402
from .flow import DataFlow  # noqa: E402
from .hookspecs import hookimpl  # noqa: E402
from .info import RunInfo, StepInfo  # noqa: E402
from .options import Retry, inline, step  # noqa: E402
from .plugin_manager import get_plugin_manager, register_plugin, unregister_plugin  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Breaker",
    "DataFlow",
    "Explanation",
    "Rate",
    "Record",
    "Retry",
    "RunInfo",
    "StepInfo",
    "StepWiring",
    "__version__",
    "args_mapper",
    "exceptions",
    "get_plugin_manager",
    "hookimpl",
    "inline",
    "register_plugin",
    "resume_position",
    "step",
    "unregister_plugin",
]
