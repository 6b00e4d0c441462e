"""JSON in and out: strict JSON (no ``NaN`` or ``Infinity``, text that is valid UTF-8),
results and error records."""

from __future__ import annotations

import json
import sys
from typing import Any

from .errors import PROG

__all__ = [
    "NotJSONError",
    "error_record",
    "json_line",
    "loads",
    "not_utf8",
    "print_json",
    "to_json",
]


class NotJSONError(ValueError):
    """A value that strict JSON cannot hold: ``NaN``, ``Infinity``, ``-Infinity``."""


def _refuse_constant(name: str) -> Any:
    raise NotJSONError(f"{name} is not JSON (strict JSON has no NaN or Infinity)")


def loads(text: str) -> Any:
    """Parse strict JSON: the ``NaN``/``Infinity`` Python's json accepts are refused.
    Raises ValueError (bad JSON, an integer over Python's digit limit, NaN) or
    RecursionError (nesting deeper than the interpreter allows)."""
    return json.loads(text, parse_constant=_refuse_constant)


def _str_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _str_keys(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_str_keys(v) for v in value]
    return value


def to_json(value: Any, indent: int | None = None, ensure_ascii: bool = False) -> str:
    """Strict JSON text for ``value``; what JSON cannot hold otherwise is written as
    ``str(value)`` (dates, paths, objects; dict keys become strings). Raises
    :class:`NotJSONError` for ``NaN`` and the infinities."""
    kw: dict[str, Any] = {"default": str, "ensure_ascii": ensure_ascii, "indent": indent}
    try:
        try:
            return json.dumps(value, allow_nan=False, **kw)
        except TypeError:  # keys that are not str/int/float/bool/None
            return json.dumps(_str_keys(value), allow_nan=False, **kw)
    except ValueError as error:
        if str(error).startswith("Out of range float"):
            raise NotJSONError(
                f"the result holds NaN or Infinity, which strict JSON cannot hold ({error})"
            ) from None
        return json.dumps(str(value), ensure_ascii=ensure_ascii)  # a circular reference


def json_line(value: Any) -> bytes:
    """One line of UTF-8 JSON for ``value``. Raises :class:`NotJSONError` or
    UnicodeEncodeError (a lone surrogate such as ``"\\ud800"`` in a string)."""
    return (to_json(value) + "\n").encode("utf-8")


def not_utf8(error: UnicodeEncodeError) -> ValueError:
    """Say which text of a result UTF-8 cannot hold (a lone surrogate such as ``\ud800``)."""
    bad = error.object[error.start : error.end]
    return ValueError(
        f"the result holds text that is not valid Unicode ({bad!a}: {error.reason}), "
        f"which UTF-8 cannot hold"
    )


def print_json(value: Any, indent: int | None = None) -> bool:
    """Print ``value`` as one JSON document on stdout; what strict UTF-8 JSON cannot hold
    is said on stderr instead, and gives False."""
    try:
        text = to_json(value, indent)
        text.encode("utf-8")
    except NotJSONError as error:
        print(f"{PROG}: the result cannot be written: {error}", file=sys.stderr)
        return False
    except UnicodeEncodeError as error:
        print(f"{PROG}: the result cannot be written: {not_utf8(error)}", file=sys.stderr)
        return False
    print(text, flush=True)
    return True


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
