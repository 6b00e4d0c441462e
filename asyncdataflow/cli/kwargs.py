"""The flow's keyword arguments on the command line: ``key=value`` and ``key:=JSON``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .errors import UsageError

__all__ = ["parse_kwargs"]


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
                kwargs[key] = json.loads(value)
            except json.JSONDecodeError as error:
                raise UsageError(
                    f"{item!r}: the value after := is not JSON ({error}); quote strings "
                    f"('{key}:=\"text\"') or use {key}=text"
                ) from None
        else:
            kwargs[key] = value
    return kwargs
