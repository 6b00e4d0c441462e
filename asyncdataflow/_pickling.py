"""Steps that hold per-process state (sessions, pools, locks) pickle as their configuration."""

from __future__ import annotations

from typing import Any, Self


class PicklesAsConfig:
    """Base of the integration pack's steps: an instance pickles as its class and the
    arguments it was built with, and is built again where it is unpickled (a Dask worker,
    a process pool). What it opened at run time (HTTP sessions, database pools, locks) is
    never pickled: the copy opens its own on first use, and ``aclose()`` closes them.

    Arguments that cannot be pickled (a session or pool passed in by the user) make
    pickling fail, as they should: they belong to the process that made them.
    """

    _config: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        self = super().__new__(cls)
        self._config = (args, kwargs)
        return self

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        args, kwargs = self._config
        return (_rebuild, (type(self), args, kwargs))


def _rebuild(cls: type[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return cls(*args, **kwargs)
