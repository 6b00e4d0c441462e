"""``select=``: a dotted path to the records inside a decoded JSON body."""

from __future__ import annotations

from typing import Any

from asyncdataflow.exceptions import DataFlowRunError

from .._errors import PackDefinitionError
from ._url import redact_url


class SelectError(DataFlowRunError, LookupError):
    """A response body does not hold what ``select=`` names."""


def parse_select(owner: str, select: object) -> tuple[str, ...]:
    """The segments of a ``select=`` path (``"result.items"``); ``()`` for ``None``."""
    if select is None:
        return ()
    if not isinstance(select, str) or not select or any(not p for p in select.split(".")):
        raise PackDefinitionError(
            f"{owner}: select={select!r} must be a dotted path of keys into the JSON body, "
            "e.g. select='items' or select='result.items' (a number indexes a list)"
        )
    return tuple(select.split("."))


def select_path(body: Any, path: tuple[str, ...], step: str, url: object) -> Any:
    """The part of ``body`` that ``path`` names; :class:`SelectError` naming the segment
    that is missing and what is there instead."""
    node = body
    for depth, segment in enumerate(path):
        where = ".".join(path[: depth + 1])
        if isinstance(node, dict):
            if segment in node:
                node = node[segment]
                continue
            found = f"keys {sorted(map(str, node))[:20]}"
        elif isinstance(node, list):
            if segment.isdigit() and int(segment) < len(node):
                node = node[int(segment)]
                continue
            found = f"a list of {len(node)} items"
        else:
            found = f"a {type(node).__name__}"
        raise SelectError(
            f"{step}: select={'.'.join(path)!r}: the JSON body of {redact_url(url)} has no "
            f"{where!r} (found {found} there); fix select= or use format='json' without it "
            "to see the whole body"
        )
    return node
