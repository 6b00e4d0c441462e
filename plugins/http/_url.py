"""URL templates and redaction of secrets (no aiohttp import: the hooks module uses it too).

A template is a URL with ``{field}`` names (``http://api/users/{user_id}/orders``); each
field is a flow-side parameter of the step, filled in URL-quoted (``/`` becomes ``%2F``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from asyncdataflow.exceptions import DataFlowDefinitionError

REDACTED = "***"

# Header and query-parameter names whose values are secrets: Authorization,
# Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key, X-Auth-Token, api_key, access_token,
# client_secret, password, session ids, signatures.
_SECRET_NAME = re.compile(
    r"auth|cookie|token|secret|passw|api[-_]?key|apikey|session|signature|credential|"
    r"^key$|^sig$",
    re.IGNORECASE,
)

_formatter = string.Formatter()


def is_secret_name(name: str) -> bool:
    """Whether a header or query-parameter name carries a secret value."""
    return _SECRET_NAME.search(name) is not None


def template_fields(template: str, *, where: str) -> tuple[str, ...]:
    """The ``{field}`` names of a URL template, in order of first appearance.

    Raises DataFlowDefinitionError for a field that is not a plain identifier (``{}``,
    ``{0}``, ``{a.b}``, ``{a!r}``, ``{a:>3}``) or for an unbalanced brace.
    """
    try:
        parsed = list(_formatter.parse(template))
    except ValueError as e:
        raise DataFlowDefinitionError(
            f"{where}: bad URL template {redact_url(template)!r}: {e}; write a field as "
            "{name} and a literal brace as {{ or }}"
        ) from None
    fields: list[str] = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "")
            shown += (f":{spec}" if spec else "") + "}"
            raise DataFlowDefinitionError(
                f"{where}: URL template field {shown} is not a plain name; write fields "
                "as {name} with a Python identifier (they become the step's parameters)"
            )
        if name not in fields:
            fields.append(name)
    return tuple(fields)


def fill_template(template: str, values: Mapping[str, Any]) -> str:
    """Fill a template's fields with URL-quoted values (every reserved character quoted)."""
    return template.format_map({k: quote(str(v), safe="") for k, v in values.items()})


def redact_url(url: object) -> str:
    """The URL as text with ``user:password@`` and secret-looking query values replaced
    by ``***``. Works on templates (braces are kept) and on yarl URLs."""
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in pairs):
            query = urlencode(
                [(k, REDACTED if is_secret_name(k) else v) for k, v in pairs], safe="{}*"
            )
    if netloc == parts.netloc and query == parts.query:
        return text
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header pairs as a dict with secret values replaced by ``***`` (for logs)."""
    return {k: (REDACTED if is_secret_name(k) else v) for k, v in headers}
