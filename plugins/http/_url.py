"""URL templates and redaction of secrets (no aiohttp import: the hooks module uses it too).

A template is a URL with ``{field}`` names (``http://api/users/{user_id}/orders``); each
field is a flow-side parameter of the step, filled in URL-quoted (``/`` becomes ``%2F``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from asyncdataflow.exceptions import DataFlowDefinitionError

from .._errors import PackDefinitionError
from .._vocab import format_fields, unencoded_userinfo, without_userinfo

REDACTED = "***"

#: Parts of header and query-parameter names whose values are secrets: any name that
#: contains one (case-insensitively) is treated as secret: Authorization,
#: Proxy-Authorization, X-Api-Key, Ocp-Apim-Subscription-Key, DD-APPLICATION-KEY,
#: access_key, access_token, client_secret, password, pwd, session ids, signatures.
SECRET_PARTS = (
    "key",
    "token",
    "secret",
    "passw",
    "pwd",
    "auth",
    "session",
    "signature",
    "credential",
    "cookie",
)
#: Well-known secret names that contain none of the parts (compared case-insensitively).
SECRET_NAMES = frozenset({"sig", "pass", "sid", "jwt", "otp", "csrf", "xsrf"})

_SECRET_PART = re.compile("|".join(SECRET_PARTS), re.IGNORECASE)
#: Names the user added with :func:`add_secret_names` (lower case).
_added: set[str] = set()


def add_secret_names(*names: str) -> None:
    """Treat these header or query-parameter names (case-insensitively, exactly) as
    secret too, in every HTTP step of this process: their values are masked in step
    names, logs, spans and errors, and the headers are not sent on to another origin."""
    for name in names:
        if not isinstance(name, str) or not name:
            raise PackDefinitionError(
                f"http.add_secret_names() takes non-empty str names, got {name!r}"
            )
    _added.update(name.lower() for name in names)


def is_secret_name(name: str) -> bool:
    """Whether a header or query-parameter name carries a secret value."""
    lower = name.lower()
    return _SECRET_PART.search(lower) is not None or lower in SECRET_NAMES or lower in _added


def template_fields(template: str, *, where: str) -> tuple[str, ...]:
    """The ``{field}`` names of a URL template, in order of first appearance.

    Raises DataFlowDefinitionError for a field that is not a plain identifier (``{}``,
    ``{0}``, ``{a.b}``, ``{a!r}``, ``{a:>3}``) or for an unbalanced brace.
    """

    def bad_template(e: ValueError) -> DataFlowDefinitionError:
        return DataFlowDefinitionError(
            f"{where}: bad URL template {redact_url(template)!r}: {e}; write a field as "
            "{name} and a literal brace as {{ or }}"
        )

    def check(name: str, spec: str, conversion: str | None) -> None:
        if not name.isidentifier() or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "")
            shown += (f":{spec}" if spec else "") + "}"
            raise DataFlowDefinitionError(
                f"{where}: URL template field {shown} is not a plain name; write fields "
                "as {name} with a Python identifier (they become the step's parameters)"
            )

    return format_fields(template, bad_template, check)


#: What a dot segment is written as: a value of "." or ".." must fill its segment, not
#: step out of it (RFC 3986 5.2.4 would remove it, with the segment before it).
DOT_SEGMENTS = {".": "%2E", "..": "%2E%2E"}


def fill_template(template: str, values: Mapping[str, Any], dots: str = "") -> str:
    """Fill a template's fields with URL-quoted values (every reserved character quoted).

    A value that is a dot segment (``.`` or ``..``) is written as ``dots`` followed by
    ``1`` or ``2`` when ``dots`` is given (a marker the caller swaps for ``%2E`` after
    the URL is parsed, since parsing would resolve even ``%2E%2E``), else as ``%2E``s.
    """
    filled = {}
    for name, value in values.items():
        text = str(value)
        if text in DOT_SEGMENTS:
            filled[name] = f"{dots}{len(text)}" if dots else DOT_SEGMENTS[text]
        else:
            filled[name] = quote(text, safe="")
    return template.format_map(filled)


def redact_url(url: object) -> str:
    """The URL as text with ``user:password@`` and secret-looking query values replaced
    by ``***``. Works on templates (braces are kept) and on yarl URLs."""
    text = str(url)
    if unencoded_userinfo(text):
        return without_userinfo(text)
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
