"""A step's result checked into a dict, and dicts merged: a step's output into the data
before it, and the outputs of concurrent branches into one."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from .exceptions import DataFlowFunctionResultError, DataFlowMergeResultError
from .info import StepInfo

Data = dict[str, Any]


def check_result(result: Any, info: StepInfo) -> Data:
    if result is None:
        return {}
    if isinstance(result, Mapping):  # a dict subclass too: a plain copy, so that a
        return dict(result)  # defaultdict's __missing__ cannot fake a present key
    hint = ""
    if inspect.iscoroutine(result):
        result.close()
        hint = (
            " It returned a coroutine: the function is sync but produced an awaitable; "
            "declare it `async def` so the flow awaits it."
        )
    raise DataFlowFunctionResultError(
        f"step {info.name!r} at {info.path} returned {type(result).__name__}, not a dict "
        f"or None.{hint} To name a plain return value, wrap the step: "
        f"args_mapper(func, output='name') (or output=['a', 'b'] for a tuple)."
    )


def _differs(a: Any, b: Any) -> bool:
    if a is b:
        return False
    try:
        return bool(a != b)
    except Exception:
        return True


def merge(left: Data, right: Data, left_name: str, right_name: str) -> Data:
    """A new dict with both; an unequal value under a shared key raises."""
    if not right:
        return left
    if not left:
        return right
    out = dict(left)
    for key, value in right.items():
        if key in out and _differs(out[key], value):
            raise DataFlowMergeResultError(
                f"key {key!r} has unequal values from {left_name} ({out[key]!r:.80}) and "
                f"{right_name} ({value!r:.80}); rename one with args_mapper(..., "
                f"output={{...}}) or drop it"
            )
        out[key] = value
    return out


def merge_branches(results: list[Data], names: list[str]) -> Data:
    out = results[0]
    name = names[0]
    for r, n in zip(results[1:], names[1:], strict=True):
        out = merge(out, r, name, n)
        name = f"{name} + {n}" if out is not r else n
    return out
