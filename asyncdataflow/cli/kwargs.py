"""The flow's keyword arguments on the command line: ``key=value`` and ``key:=JSON``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import UsageError
from .output import loads

__all__ = ["parse_kwargs"]


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def parse_kwargs(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` gives the string ``value``; ``key:=JSON`` gives the parsed JSON."""
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        as_json = key.endswith(":")
        key = key.removesuffix(":")
        if not sep or not key.isidentifier():
            raise UsageError(
                f"{item!r}: expected key=value (a string) or key:=JSON, with key a "
                f"Python identifier, e.g. name=Ada or count:=3"
            )
        if key in kwargs:
            raise UsageError(f"{item!r}: {key!r} is given twice")
        if as_json:
            try:
                kwargs[key] = loads(value)
            except RecursionError:
                raise UsageError(
                    f"{key}:=...: the JSON value is nested deeper than Python can parse; "
                    f"pass it in a file and read it in the flow"
                ) from None
            except ValueError as error:
                raise UsageError(
                    f"{_shorten(item)!r}: the value after := is not strict JSON ({error}); "
                    f"quote strings ('{key}:=\"text\"') or use {key}=text"
                ) from None
        else:
            kwargs[key] = value
    return kwargs
