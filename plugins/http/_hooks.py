"""The HTTP pack's pluggy plugin: honour a server's ``Retry-After``.

Loaded through the ``asyncdataflow`` entry point ``http``. It must stay cheap to import
and must not need aiohttp: it looks aiohttp up in ``sys.modules`` when a step fails (an
aiohttp error can only exist once aiohttp has been imported).
"""

from __future__ import annotations

import sys
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from asyncdataflow.hookspecs import hookimpl
from asyncdataflow.options import Retry

if TYPE_CHECKING:
    from asyncdataflow.info import StepInfo

#: The statuses whose Retry-After header says when to come back (RFC 9110 10.2.3).
RETRY_AFTER_STATUSES = frozenset({429, 503})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds (``"120"``, a decimal
    is accepted too) or an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``; a date in the
    past gives 0). ``None`` when the value is missing or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN, inf
        return None
    return max(seconds, 0.0)


@hookimpl(tryfirst=True)
def step_retry_delay(step: StepInfo, error: BaseException, attempt: int) -> float | None:
    """For a 429 or 503 ``aiohttp.ClientResponseError`` with a ``Retry-After`` header, wait
    what the header says, capped by the policy's ``max_delay`` (and only if the policy
    retries this error at all). Otherwise answer nothing: the built-in retry plugin
    answers from the policy."""
    policy = step.retry
    if not isinstance(policy, Retry):
        return None
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None or not isinstance(error, aiohttp.ClientResponseError):
        return None
    if error.status not in RETRY_AFTER_STATUSES or not error.headers:
        return None
    seconds = parse_retry_after(error.headers.get("Retry-After"))
    if seconds is None:
        return None
    return policy.delay(error, attempt, retry_after=seconds)
