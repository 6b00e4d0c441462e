"""HTTP sources and destinations for a DataFlow, on aiohttp (``pip install
"asyncdataflow[http]"``).

- :func:`reader` returns a step that requests a URL and returns ``{"data": body}``.
- :func:`writer` returns a step that sends its ``data`` and returns
  ``{"status": int, "response": body}``.

aiohttp is imported when ``reader`` or ``writer`` is first looked up, not when this
package is imported: the pack's pluggy plugin (``asyncdataflow.plugins.http._hooks``, the
``Retry-After`` rule) is loaded by every flow through an entry point and must stay cheap,
and must load even where aiohttp is not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import StepArgumentError
from ._url import add_secret_names

if TYPE_CHECKING:
    from ._steps import (
        DEFAULT_MAX_SIZE,
        Reader,
        ResponseTooLargeError,
        SelectError,
        StreamReader,
        Writer,
        reader,
        writer,
    )

__all__ = [
    "DEFAULT_MAX_SIZE",
    "Reader",
    "ResponseTooLargeError",
    "SelectError",
    "StepArgumentError",
    "StreamReader",
    "Writer",
    "add_secret_names",
    "reader",
    "writer",
]
_LAZY = frozenset(__all__) - {"add_secret_names", "StepArgumentError"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import _steps  # raises ImportError naming the extra when aiohttp is missing

        return getattr(_steps, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
