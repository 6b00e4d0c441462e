"""The pack's one vocabulary: readers return their records under ``data``, writers take
them from ``data``, and every reader and writer factory takes ``key=`` to use another
name. Each pack step declares its output keys in ``__asyncdataflow_outputs__`` (read by
the compiler) so that a flow's wiring can be checked when it is built.
"""

from __future__ import annotations

import keyword
import string
from collections.abc import Callable
from typing import Any

from asyncdataflow.exceptions import DataFlowDefinitionError

#: The name records travel under between the pack's readers and writers.
DATA = "data"

#: The attribute the compiler reads for a step's output keys.
OUTPUTS_ATTR = "__asyncdataflow_outputs__"


def check_key(owner: str, key: object) -> str:
    """``key`` when it can be a parameter name, else ``DataFlowDefinitionError``."""
    if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
        raise DataFlowDefinitionError(
            f"{owner}: key={key!r} must be a Python identifier (it is the name the records "
            "travel under in the flow's data), e.g. key='orders'"
        )
    return key


def format_fields(
    template: str,
    bad_template: Callable[[ValueError], Exception],
    check: Callable[[str, str, str | None], None],
) -> tuple[str, ...]:
    """The ``{field}`` names of a ``str.format`` template (a file path's, a URL's), in
    order of first appearance: each becomes a parameter of the step. Raises
    ``bad_template(error)`` for a template that does not parse; ``check(field, spec,
    conversion)`` raises for a field the caller refuses."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise bad_template(error) from None
    fields: list[str] = []
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        check(field, spec or "", conversion)
        if field not in fields:
            fields.append(field)
    return tuple(fields)


def declare_outputs(step: Any, *keys: str) -> None:
    """Record the keys every call of ``step`` returns."""
    setattr(step, OUTPUTS_ATTR, tuple(keys))


def unencoded_userinfo(url: str) -> bool:
    """Whether ``url`` looks like ``scheme://user:pass/word@host``: a user and password
    with an unencoded ``/``, ``?`` or ``#``, which every URL parser reads as a host and a
    port followed by a path (so the password would be shown as part of the path)."""
    _scheme, sep, rest = url.partition("://")
    if not sep:
        return False
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    return ":" in authority and "@" not in authority and "@" in tail


def without_userinfo(url: str) -> str:
    """``url`` with everything before its last ``@`` after the scheme replaced by
    ``***``, for messages about a URL whose password may be anywhere in it."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}" if sep else "***"


USERINFO_HINT = (
    "its user or password holds an unencoded '/', '?' or '#', so it would be read as a "
    "host and port followed by a path; percent-encode them in the user and password "
    "('/' as %2F, '?' as %3F, '#' as %23, '@' as %40)"
)
