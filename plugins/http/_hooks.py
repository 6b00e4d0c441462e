"""The HTTP pack's pluggy plugin: honour a server's ``Retry-After``, in retries and in the
rate of a ``step(..., rate=...)``.

Loaded through the ``asyncdataflow`` entry point ``http``. It must stay cheap to import
and must not need aiohttp: it looks aiohttp up in ``sys.modules`` when a step fails (an
aiohttp error can only exist once aiohttp has been imported).
"""

from __future__ import annotations

import sys
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

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


def _response_error(error: BaseException) -> Any:
    """``error`` if it is a 429 or 503 ``aiohttp.ClientResponseError``, else ``None``."""
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None or not isinstance(error, aiohttp.ClientResponseError):
        return None
    return error if error.status in RETRY_AFTER_STATUSES else None


def _retry_after(error: Any) -> float | None:
    return parse_retry_after(error.headers.get("Retry-After")) if error.headers else None


@hookimpl
def step_slow_down(error: BaseException) -> float | None:
    """A 429 or 503 response says "slow down" to a step with ``rate=``: pause for its
    ``Retry-After``. A 429 without one only lowers the rate (0 seconds of pause); a 503
    without one is an outage, not a slow-down (a ``breaker=`` deals with those)."""
    response = _response_error(error)
    if response is None:
        return None
    seconds = _retry_after(response)
    if seconds is None:
        return 0.0 if response.status == 429 else None
    return seconds


@hookimpl(tryfirst=True)
def step_retry_delay(step: StepInfo, error: BaseException, attempt: int) -> float | None:
    """For a 429 or 503 ``aiohttp.ClientResponseError`` with a ``Retry-After`` header, wait
    what the header says, capped by the policy's ``max_delay`` (and only if the policy
    retries this error at all). Otherwise answer nothing: the built-in retry plugin
    answers from the policy."""
    policy = step.retry
    if not isinstance(policy, Retry):
        return None
    response = _response_error(error)
    seconds = None if response is None else _retry_after(response)
    if seconds is None:
        return None
    return policy.delay(error, attempt, retry_after=seconds)
