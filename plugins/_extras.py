"""Each integration imports its own library, installed with its extra
(``pip install "asyncdataflow[http]"``); :func:`needs` turns the library missing into an
error that names the extra to install."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def needs(extra: str, library: str, *, only: tuple[str, ...] = ()) -> Iterator[None]:
    """Around the imports of ``asyncdataflow.plugins.<extra>``'s own library: an
    ``ImportError`` becomes one saying that the plugin needs ``library`` and how to
    install it. With ``only`` (top-level module names), a module missing that is none of
    them (a dependency of the library itself) is raised as it is."""
    try:
        yield
    except ImportError as error:
        missing = (error.name or "").partition(".")[0]
        if only and isinstance(error, ModuleNotFoundError) and missing not in only:
            raise
        raise ImportError(
            f'asyncdataflow.plugins.{extra} needs {library}: pip install "asyncdataflow[{extra}]"'
        ) from error
