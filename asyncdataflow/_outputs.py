"""What keys a step declares it returns, read once when a flow is built.

In order: ``step(func, outputs=...)``; the ``__asyncdataflow_outputs__`` attribute that
``args_mapper(..., output=...)`` and the integration pack's steps carry; a ``TypedDict``
return annotation (``-> Rows``, ``-> Rows | None``, ``-> A | B``), found through
partials, an ``args_mapper`` that only renames inputs, and a callable object's
``__call__``. Anything else is unknown: any key may come out.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from typing import Any

from .options import StepOptions

MAPPED_ATTR = "__asyncdataflow_wrapped__"
OUTPUTS_ATTR = "__asyncdataflow_outputs__"

#: (every key the step may return, the ones among them it may leave out)
Declared = tuple[tuple[str, ...] | None, frozenset[str]]
_UNKNOWN: Declared = (None, frozenset())


def declared_outputs(item: Any) -> Declared:
    """The keys ``item`` (a definition item, possibly ``step(...)``) declares."""
    if isinstance(item, StepOptions):
        if item.outputs is not None:
            return item.outputs, frozenset()
        item = item.func
    func = item
    while True:
        attr = getattr(func, OUTPUTS_ATTR, None)
        if attr is not None:
            return tuple(attr), frozenset()
        if isinstance(func, functools.partial):
            func = func.func
        elif isinstance(func, StepOptions):
            if func.outputs is not None:
                return func.outputs, frozenset()
            func = func.func
        elif hasattr(func, MAPPED_ATTR):  # an args_mapper without output=
            func = getattr(func, MAPPED_ATTR)
        else:
            break
    return _annotated(func)


def _annotated(func: Any) -> Declared:
    target: Any = func
    if not (inspect.isfunction(func) or inspect.ismethod(func)):
        target = getattr(type(func), "__call__", None)  # noqa: B004 - a callable object
    try:
        hint = typing.get_type_hints(target).get("return")
    except Exception:  # unresolvable forward references: the keys are simply unknown
        return _UNKNOWN
    if hint is None:
        return _UNKNOWN
    members = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else (hint,)
    )
    dicts = [m for m in members if m is not type(None)]
    if not dicts or not all(typing.is_typeddict(m) for m in dicts):
        return _UNKNOWN  # -> dict[str, Any], -> Rows | list: anything may come out
    keys = tuple(dict.fromkeys(k for m in dicts for k in m.__annotations__))
    # a key is sure only if every member requires it (and None, which is {}, is not one)
    sure = set.intersection(*(set(m.__annotations__) - _optional_keys(m) for m in dicts))
    if len(dicts) < len(members):
        sure = set()
    return keys, frozenset(keys) - sure


def _optional_keys(td: Any) -> set[str]:
    optional = set(getattr(td, "__optional_keys__", ()))
    # under `from __future__ import annotations` Python 3.11 sees NotRequired["x"] as a
    # string and counts the key as required: read the string
    for key, ann in td.__annotations__.items():
        text = ann.__forward_arg__ if isinstance(ann, typing.ForwardRef) else ann
        if isinstance(text, str) and text.replace("typing.", "").startswith("NotRequired["):
            optional.add(key)
    return optional
