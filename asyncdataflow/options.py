"""Per-step options that do not touch the function: name, timeout, retry policy, limit;
and the mark for a cheap sync function that may run on the loop."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ._protect import Breaker, Rate
from .exceptions import DataFlowDefinitionError

F = TypeVar("F", bound=Callable[..., Any])

INLINE_ATTR = "__asyncdataflow_inline__"


def inline(func: F) -> F:
    """Mark a cheap sync function to run on the event loop instead of in the executor.

    Use it only for functions that take microseconds (reshaping a dict): anything that
    blocks would stall every other run on the loop. Returns the function itself.
    """
    try:
        setattr(func, INLINE_ATTR, True)
    except (AttributeError, TypeError):
        raise DataFlowDefinitionError(
            f"inline(): cannot mark {func!r}; wrap it in a def or functools.partial first"
        ) from None
    return func


@dataclass(frozen=True, slots=True)
class Retry:
    """A retry policy: exponential backoff with jitter, for the listed exception types.

    Attempt ``n`` (from 1) that fails with an exception listed in ``on`` is followed by a
    pause of ``backoff * 2 ** (n - 1)`` seconds, capped at ``max_delay``; with ``jitter``
    the pause is drawn uniformly from ``[pause / 2, pause]``. After ``attempts`` attempts
    in all, the last exception propagates unchanged.

    Args:
        attempts: how many attempts in all (1 means no retry).
        backoff: the first pause, in seconds.
        max_delay: the longest pause, in seconds (also caps a server's ``Retry-After``).
        jitter: randomise each pause to spread retries of many runs.
        on: the exception types that are retried; others propagate at once.
    """

    attempts: int = 3
    backoff: float = 0.1
    max_delay: float = 30.0
    jitter: bool = True
    on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,)
    _random: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise DataFlowDefinitionError(f"Retry(attempts={self.attempts}): must be >= 1")
        if self.backoff < 0 or self.max_delay < 0:
            raise DataFlowDefinitionError("Retry: backoff and max_delay must be >= 0")
        if isinstance(self.on, type):
            object.__setattr__(self, "on", (self.on,))

    def refusal(self, error: BaseException, attempt: int) -> str | None:
        """Why this policy does not retry ``error`` after attempt ``attempt`` (the note the
        error gets), or ``None`` when it does."""
        if not isinstance(error, self.on):
            on = self.on if isinstance(self.on, tuple) else (self.on,)
            names = ", ".join(t.__name__ for t in on)
            return (
                f"not retried: {type(error).__name__} is not listed in Retry(on=({names},)); "
                f"{attempt} attempt(s) made"
            )
        if attempt >= self.attempts:
            return f"gave up: {attempt} attempt(s) made (Retry(attempts={self.attempts}))"
        return None

    def delay(
        self, error: BaseException, attempt: int, *, retry_after: float | None = None
    ) -> float | None:
        """The pause before attempt ``attempt + 1``, or ``None`` when ``error`` is not to
        be retried (see :meth:`refusal`). ``retry_after`` (a server's hint, in seconds)
        replaces the backoff, still capped by ``max_delay``."""
        if self.refusal(error, attempt) is not None:
            return None
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        pause: float = min(self.backoff * 2.0 ** (attempt - 1), self.max_delay)
        if self.jitter:
            pause = float(self._random.uniform(pause / 2, pause))
        return pause


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class CallOptions:
    """How every call of a step is made: its timeout, retry policy, limit, rate and
    breaker. :class:`StepOptions` holds them as :func:`step` was given them,
    :class:`~asyncdataflow.StepInfo` as the compiled step runs with them. Keyword-only,
    so that a subclass's own fields keep their places in its ``__init__``; no ``__eq__``
    or ``__hash__`` of its own, so that each subclass keeps its own (a ``StepOptions`` is
    compared, and a limit's semaphores are keyed, by identity)."""

    timeout: float | None = None
    retry: Retry | None = None
    limit: int | None = None
    rate: Rate | None = None
    breaker: Breaker | None = None


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class StepOptions(CallOptions):
    """What :func:`step` attaches to a callable (read by the compiler)."""

    func: Callable[..., Any]
    name: str | None = None
    outputs: tuple[str, ...] | None = None
    window: int | None = None
    dead_letter: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)


def step(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    timeout: float | None = None,
    retry: Retry | None = None,
    limit: int | None = None,
    rate: float | Rate | None = None,
    breaker: Breaker | None = None,
    outputs: Iterable[str] | None = None,
    window: int | None = None,
    dead_letter: Any = None,
) -> StepOptions:
    """Give a step a display name, a timeout (seconds; the step then fails with
    ``TimeoutError``), a retry policy, a concurrency limit shared by every run of the
    flow, a rate (``rate=20`` or ``rate=Rate(20, burst=5)``: calls a second), a circuit
    breaker (``breaker=Breaker(...)``), or the keys it returns (``outputs=("rows",
    "count")``, checked against the parameters of the steps after it when the flow is
    built), without changing the function. ``step(step(f, name="a"), timeout=1)``
    combines.

    ``window`` is for a source (a generator function, see the README's Streams section):
    at most this many of its records in flight at once (default 1).

    ``dead_letter`` is a dead-letter sink (``asyncdataflow.plugins.files.dead_letters(...)``,
    ``asyncdataflow.plugins.mysql.dead_letters(...)``): a record this step fails on after
    its retries is handed to it and the stream goes on (see docs/durable.md)."""
    keys = _output_names(func, outputs)
    if timeout is not None and timeout <= 0:
        raise DataFlowDefinitionError(f"step({name or func!r}): timeout must be > 0")
    if limit is not None and limit < 1:
        raise DataFlowDefinitionError(f"step({name or func!r}): limit must be >= 1")
    if window is not None and (not isinstance(window, int) or window < 1):
        raise DataFlowDefinitionError(
            f"step({name or func!r}): window must be an int >= 1, got {window!r}"
        )
    if rate is not None and not isinstance(rate, Rate):
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise DataFlowDefinitionError(
                f"step({name or func!r}): rate={rate!r}: give calls a second (> 0), "
                f"e.g. rate=20, or asyncdataflow.Rate(20, burst=5)"
            )
        rate = Rate(rate)
    if breaker is not None and not isinstance(breaker, Breaker):
        raise DataFlowDefinitionError(
            f"step({name or func!r}): breaker={breaker!r}: give an asyncdataflow.Breaker("
            f"failures=..., reset_after=..., on=(...))"
        )
    check_sink(f"step({name or func!r})", dead_letter)
    if isinstance(func, StepOptions):
        return StepOptions(
            func.func,
            name=name if name is not None else func.name,
            timeout=timeout if timeout is not None else func.timeout,
            retry=retry if retry is not None else func.retry,
            limit=limit if limit is not None else func.limit,
            rate=rate if rate is not None else func.rate,
            breaker=breaker if breaker is not None else func.breaker,
            outputs=keys if keys is not None else func.outputs,
            window=window if window is not None else func.window,
            dead_letter=dead_letter if dead_letter is not None else func.dead_letter,
        )
    return StepOptions(
        func,
        name=name,
        timeout=timeout,
        retry=retry,
        limit=limit,
        rate=rate,
        breaker=breaker,
        outputs=keys,
        window=window,
        dead_letter=dead_letter,
    )


def _output_names(func: Any, outputs: Iterable[str] | None) -> tuple[str, ...] | None:
    if outputs is None:
        return None
    if isinstance(outputs, str):
        outputs = (outputs,)
    keys = tuple(outputs)
    bad = [k for k in keys if not isinstance(k, str)]
    if bad:
        raise DataFlowDefinitionError(
            f"step({func!r}): outputs must be names (str), got {bad!r}; "
            f'write outputs=("rows", "count")'
        )
    return tuple(dict.fromkeys(keys))


def check_sink(owner: str, sink: Any) -> None:
    """A dead-letter sink has the methods of :class:`asyncdataflow.durable.DeadLetterSink`."""
    if sink is None:
        return
    missing = [
        m for m in ("put", "letters", "remove", "aclose") if not callable(getattr(sink, m, None))
    ]
    if missing:
        raise DataFlowDefinitionError(
            f"{owner}: dead_letter={sink!r:.80} is not a dead-letter sink (it lacks "
            f"{', '.join(missing)}); use asyncdataflow.plugins.files.dead_letters(path) or "
            f"asyncdataflow.plugins.mysql.dead_letters(url=...)"
        )
