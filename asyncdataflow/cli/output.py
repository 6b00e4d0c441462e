"""JSON output: results and error records."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["error_record", "to_json"]


def _str_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _str_keys(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_str_keys(v) for v in value]
    return value


def to_json(value: Any, indent: int | None = None) -> str:
    """JSON text for ``value``; what JSON cannot hold is written as ``str(value)``."""
    try:
        return json.dumps(value, default=str, ensure_ascii=False, indent=indent)
    except TypeError:  # keys that are not str/int/float/bool/None
        return json.dumps(_str_keys(value), default=str, ensure_ascii=False, indent=indent)
    except ValueError:  # a circular reference
        return json.dumps(str(value), ensure_ascii=False)


def error_record(error: BaseException) -> dict[str, Any]:
    """``{"type", "message", "notes"?}`` for a failure, as ``map`` writes it."""
    cls = type(error)
    name = cls.__qualname__
    if cls.__module__ != "builtins":
        name = f"{cls.__module__}.{name}"
    record: dict[str, Any] = {"type": name, "message": str(error)}
    notes = getattr(error, "__notes__", None)
    if notes:
        record["notes"] = [str(n) for n in notes]
    return record
