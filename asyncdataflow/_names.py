"""One helper for every "did you mean" of the library: the routing error, the wiring
error, the skip warning, ``asyncdataflow check`` and the CLI's missing arguments."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable

#: how alike two names must be (difflib's ratio) to be worth a hint in an error message
HINT = 0.6
#: how alike two names must be to count as a near miss (a likely typo): ``rows``/``rowz``
#: (0.75), ``customer``/``customers``; not ``id``/``ip`` (0.5) nor ``a``/``b``
NEAR_MISS = 0.75


def closest(
    name: str,
    candidates: Iterable[str],
    *,
    exclude: Collection[str] = (),
    cutoff: float = HINT,
) -> str | None:
    """The candidate spelled most like ``name``, or ``None``.

    ``name`` itself and the names in ``exclude`` are never suggested: a step that takes
    both ``data_a`` and ``data_b`` does not have a typo in ``data_a`` because ``data_b``
    is there.
    """
    pool = [c for c in candidates if isinstance(c, str) and c != name and c not in exclude]
    found = difflib.get_close_matches(name, pool, n=1, cutoff=cutoff)
    return found[0] if found else None


def did_you_mean(name: str, candidates: Iterable[str], *, exclude: Collection[str] = ()) -> str:
    """``"; did you mean 'rows'?"`` or ``""``."""
    close = closest(name, candidates, exclude=exclude)
    return f"; did you mean {close!r}?" if close else ""
