"""Protecting what a step calls: an adaptive token bucket (``step(..., rate=...)``) and a
circuit breaker (``step(..., breaker=...)``).

Both belong to their :class:`Rate` / :class:`Breaker` object (``step(f, rate=20)`` makes
one per step object), so they are shared by every run of every flow that holds the step,
and by every step given the same object. Like ``limit=``, the state lives per event loop.

A step without ``rate=`` or ``breaker=`` never reaches this module.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from .exceptions import DataFlowCircuitOpenError, DataFlowDefinitionError

if TYPE_CHECKING:
    from ._step_runner import StepRunner
    from .info import RunInfo

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "Breaker", "Rate"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

#: a slow-down answer multiplies the rate by this (once per pause)
DECREASE = 0.5
#: every RECOVER_EVERY seconds without a slow-down the rate grows by this share of
#: ``Rate.per_second``, until it is back there
RECOVER_STEP = 0.1
RECOVER_EVERY = 1.0

_Exc = type[BaseException] | tuple[type[BaseException], ...]


def _types(on: _Exc, what: str) -> tuple[type[BaseException], ...]:
    types = (on,) if isinstance(on, type) else tuple(on)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise DataFlowDefinitionError(f"{what}(on=...): {t!r} is not an exception type")
    return types


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Rate:
    """At most ``per_second`` calls a second, with bursts of up to ``burst`` calls: a
    token bucket that holds ``burst`` tokens and gains ``per_second`` of them a second.

    It adapts. A "slow down" answer pauses it for every caller and halves the rate (not
    below ``floor``); then, every second without another one, the rate grows back by a
    tenth of ``per_second``. A slow-down answer is an HTTP 429, or a 503 with
    ``Retry-After``, from the HTTP pack's steps (the pause is what ``Retry-After`` says;
    a 429 without it only lowers the rate), or an exception listed in ``on`` (the pause
    is its ``retry_after`` attribute when it has a number there, else ``pause``). Plugins
    recognise more through the ``step_slow_down`` hook.

    One bucket per ``Rate`` object (and event loop): steps given the same object share it.

    Args:
        per_second: calls a second (> 0).
        burst: calls that may go at once after a quiet spell (>= 1).
        on: exception types that mean "slow down".
        pause: seconds to pause for a listed exception without ``retry_after``.
        floor: the lowest rate it adapts down to (default: a tenth of ``per_second``).
    """

    per_second: float
    burst: int = 1
    on: _Exc = ()
    pause: float = 1.0
    floor: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.per_second, (int, float)) and 0 < self.per_second < math.inf):
            raise DataFlowDefinitionError(
                f"Rate(per_second={self.per_second!r}): give a number of calls a second > 0"
            )
        if not isinstance(self.burst, int) or self.burst < 1:
            raise DataFlowDefinitionError(f"Rate(burst={self.burst!r}): must be an int >= 1")
        if not self.pause >= 0:
            raise DataFlowDefinitionError(f"Rate(pause={self.pause!r}): must be >= 0")
        floor = self.per_second / 10 if self.floor is None else self.floor
        if not 0 < floor <= self.per_second:
            raise DataFlowDefinitionError(
                f"Rate(floor={self.floor!r}): must be > 0 and <= per_second"
            )
        object.__setattr__(self, "floor", float(floor))
        object.__setattr__(self, "on", _types(self.on, "Rate"))


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Breaker:
    """A circuit breaker: closed, open, half-open.

    Closed, calls go through; ``failures`` calls in a row that raise an exception listed
    in ``on`` open it. Open, calls fail at once with
    :class:`~asyncdataflow.exceptions.DataFlowCircuitOpenError` without reaching the
    callee. ``reset_after`` seconds later it is half-open: one trial call goes through;
    it closes the breaker when it returns (or raises an exception not listed in ``on``)
    and opens it again when it raises a listed one. A call that is cancelled counts as
    neither.

    A step whose retry policy retries ``DataFlowCircuitOpenError`` (the default
    ``Retry()`` does) does not fail on an open breaker: the call waits until the breaker
    lets it through, and the wait uses no attempt (``timeout=`` still bounds it).

    One breaker per ``Breaker`` object (and event loop): steps given the same object
    share it.

    Args:
        failures: failures in a row that open it (>= 1).
        reset_after: seconds it stays open before the trial call (> 0).
        on: the exception types that count as failures.
    """

    failures: int = 5
    reset_after: float = 30.0
    on: _Exc = (Exception,)

    def __post_init__(self) -> None:
        if not isinstance(self.failures, int) or self.failures < 1:
            raise DataFlowDefinitionError(
                f"Breaker(failures={self.failures!r}): must be an int >= 1"
            )
        if not 0 < self.reset_after < math.inf:
            raise DataFlowDefinitionError(
                f"Breaker(reset_after={self.reset_after!r}): give seconds > 0"
            )
        object.__setattr__(self, "on", _types(self.on, "Breaker"))


def _wall(loop_at: float, now: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(time.time() + loop_at - now))


class _LoopState:
    """What the state of a :class:`Rate` or :class:`Breaker` on one event loop holds:
    the spec, the loop, and the timer that wakes its waiters (``None`` when none is
    set)."""

    __slots__ = ("loop", "spec", "timer")

    def __init__(self, spec: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.spec, self.loop = spec, loop
        self.timer: asyncio.TimerHandle | None = None

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Bucket(_LoopState):
    """The token bucket of one :class:`Rate` on one event loop. Waiters are served in
    arrival order; a token is taken off when a waiter is woken, and given back if that
    waiter is cancelled before it runs."""

    __slots__ = (
        "capacity",
        "clock",
        "next_recover",
        "paused_until",
        "rate",
        "stamp",
        "tokens",
        "waiters",
    )
    spec: Rate

    def __init__(self, spec: Rate, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(spec, loop)
        self.clock = loop.time
        self.rate = float(spec.per_second)
        self.capacity = float(spec.burst)
        self.tokens = self.capacity
        self.stamp = loop.time()
        self.paused_until = -math.inf
        self.next_recover = math.inf
        self.waiters: deque[asyncio.Future[None]] = deque()

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            tokens = self.tokens + (now - self.stamp) * self.rate
            self.tokens = tokens if tokens < self.capacity else self.capacity
            self.stamp = now

    def try_take(self) -> bool:
        """Take a token if one is free and nobody waits (the fast path: no await)."""
        if self.waiters:
            return False
        now = self.clock()
        if now < self.paused_until:
            return False
        tokens = self.tokens
        if now > self.stamp:
            tokens += (now - self.stamp) * self.rate
            if tokens > self.capacity:
                tokens = self.capacity
            self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False

    async def wait(self) -> None:
        fut: asyncio.Future[None] = self.loop.create_future()
        self.waiters.append(fut)
        self._schedule()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # woken with a token: give it back
                self.tokens = min(self.capacity, self.tokens + 1.0)
                self._wake()
            else:
                try:
                    self.waiters.remove(fut)
                except ValueError:
                    pass
            raise

    def give_back(self) -> None:
        self.tokens = min(self.capacity, self.tokens + 1.0)
        if self.waiters:
            self._wake()

    def _wake(self) -> None:
        self._cancel_timer()
        now = self.loop.time()
        if now >= self.paused_until:
            self._refill(now)
            waiters = self.waiters
            while waiters and self.tokens >= 1.0:
                fut = waiters.popleft()
                if not fut.done():
                    self.tokens -= 1.0
                    fut.set_result(None)
        self._schedule()

    def _schedule(self) -> None:
        waiters = self.waiters
        while waiters and waiters[0].done():
            waiters.popleft()
        if not waiters or self.timer is not None:
            return
        now = self.loop.time()
        if now >= self.paused_until:
            self._refill(now)
        at = max(self.paused_until, self.stamp + max(0.0, 1.0 - self.tokens) / self.rate, now)
        self.timer = self.loop.call_at(at, self._wake)

    def _reschedule(self) -> None:
        self._cancel_timer()
        self._schedule()

    def slow_down(self, pause: float) -> float | None:
        """A slow-down answer: pause for ``pause`` seconds and, unless already paused,
        lower the rate. Returns the rate before, or ``None`` if it was paused already."""
        now = self.loop.time()
        previous: float | None = None
        if now >= self.paused_until:
            previous = self.rate
            self._refill(now)
            self.rate = max(self.spec.floor or 0.0, self.rate * DECREASE)
        until = now + pause
        if until > self.paused_until:
            self.paused_until = until
        # no tokens saved up across a pause: after it, calls come back one by one
        self.tokens = 0.0
        self.stamp = max(now, self.paused_until)
        self.next_recover = self.stamp + RECOVER_EVERY
        self._reschedule()
        return previous

    def recover(self) -> float | None:
        """Raise a lowered rate by the steps due; the rate before, or ``None``."""
        now = self.loop.time()
        if now < self.next_recover:
            return None
        previous = self.rate
        self._refill(now)
        steps = 1 + int((now - self.next_recover) / RECOVER_EVERY)
        top = float(self.spec.per_second)
        self.rate = min(top, self.rate + steps * RECOVER_STEP * top)
        self.next_recover = now + RECOVER_EVERY if self.rate < top else math.inf
        self._reschedule()
        return previous


class BreakerState(_LoopState):
    """The state of one :class:`Breaker` on one event loop."""

    __slots__ = ("failures", "last", "retry_at", "state", "trial", "waiters")
    spec: Breaker

    def __init__(self, spec: Breaker, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(spec, loop)
        self.state = CLOSED
        self.failures = 0
        self.last = ""
        self.retry_at = 0.0
        self.trial = False
        self.waiters: list[asyncio.Future[None]] = []

    def blocked(self, now: float) -> bool:
        state = self.state
        if state is CLOSED:
            return False
        if state is OPEN:
            return now < self.retry_at
        return self.trial

    async def wait(self) -> None:
        """Until the state may let a call through."""
        fut: asyncio.Future[None] = self.loop.create_future()
        self.waiters.append(fut)
        if self.state is OPEN and self.timer is None:
            self.timer = self.loop.call_at(self.retry_at, self._wake_all)
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()
            if fut in self.waiters:
                self.waiters.remove(fut)

    def _wake_all(self) -> None:
        self._cancel_timer()
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def open(self, error: BaseException) -> None:
        now = self.loop.time()
        self.state = OPEN
        self.trial = False
        self.last = f"{type(error).__name__}: {error}"[:200]
        self.retry_at = now + self.spec.reset_after
        self._cancel_timer()
        if self.waiters:
            self.timer = self.loop.call_at(self.retry_at, self._wake_all)

    def error(self, name: str, path: str) -> DataFlowCircuitOpenError:
        now = self.loop.time()
        if self.state is OPEN:
            retry_in = max(0.0, self.retry_at - now)
            when = (
                f"it lets one trial call through in {retry_in:.1f} s "
                f"(at {_wall(self.retry_at, now)})"
            )
        else:
            retry_in = 0.0
            when = "a trial call is under way; it closes again if that call succeeds"
        err = DataFlowCircuitOpenError(
            f"the circuit breaker of step {name!r} at {path} is open after "
            f"{self.spec.failures} failure(s) in a row (last: {self.last}); {when}"
        )
        err.step = name
        err.retry_in = retry_in
        return err


class _Ticket:
    """What one attempt was let through as."""

    __slots__ = ("admitted", "trial")

    def __init__(self, admitted: bool = False) -> None:
        self.admitted = admitted
        self.trial = False


#: the ticket of every attempt let through on the fast path (never a trial)
_ADMITTED = _Ticket(admitted=True)


_BUCKETS: WeakKeyDictionary[Rate, WeakKeyDictionary[asyncio.AbstractEventLoop, Bucket]]
_BUCKETS = WeakKeyDictionary()
_BREAKERS: WeakKeyDictionary[
    Breaker, WeakKeyDictionary[asyncio.AbstractEventLoop, BreakerState]
] = WeakKeyDictionary()


def _per_loop(table: Any, spec: Any, loop: asyncio.AbstractEventLoop, cls: Any) -> Any:
    loops = table.get(spec)
    if loops is None:
        loops = table[spec] = WeakKeyDictionary()
    state = loops.get(loop)
    if state is None:
        # a state that had a waiter or a timer holds its loop: forget closed loops
        for old in [lp for lp in loops if lp.is_closed()]:
            del loops[old]
        state = loops[loop] = cls(spec, loop)
    return state


def bucket_for(spec: Rate, loop: asyncio.AbstractEventLoop) -> Bucket:
    """The bucket of ``spec`` on ``loop`` (made on first use)."""
    bucket: Bucket = _per_loop(_BUCKETS, spec, loop, Bucket)
    return bucket


def breaker_for(spec: Breaker, loop: asyncio.AbstractEventLoop) -> BreakerState:
    """The breaker state of ``spec`` on ``loop`` (made on first use)."""
    state: BreakerState = _per_loop(_BREAKERS, spec, loop, BreakerState)
    return state


class Guard:
    """Per step runner: lets an attempt through the rate and the breaker, and tells
    them how it ended. Hook calls go through the runner's flow hooks."""

    __slots__ = (
        "_breaker", "_bucket", "_loop", "breaker", "direct", "func", "rate", "runner", "waits",
    )  # fmt: skip

    def __init__(self, runner: StepRunner) -> None:
        info = runner.info
        self.runner = runner
        self.rate: Rate | None = info.rate
        self.breaker: Breaker | None = info.breaker
        retry = info.retry
        # a policy that retries DataFlowCircuitOpenError waits for the breaker instead
        self.waits = retry is not None and issubclass(DataFlowCircuitOpenError, retry.on)
        # no limit and no timeout: an attempt let through at once is just the call
        self.direct = info.limit is None and info.timeout is None
        self.func = info.func if info.is_async else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bucket: Bucket | None = None
        self._breaker: BreakerState | None = None

    def _states(self) -> tuple[Bucket | None, BreakerState | None]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bucket = bucket_for(self.rate, loop) if self.rate is not None else None
            self._breaker = breaker_for(self.breaker, loop) if self.breaker is not None else None
            self._loop = loop
        return self._bucket, self._breaker

    async def call(self, kw: dict[str, Any], run: RunInfo | None) -> Any:
        """One attempt of the step: rate and breaker, then the call (limit, timeout).
        The timeout covers the waits for a token and for the breaker."""
        runner = self.runner
        if self.direct and self._at_once():
            try:
                if self.func is not None:
                    raw = await self.func(**kw)
                else:
                    raw = await runner._call(kw)
            except BaseException as error:
                self._failed(error, run, _ADMITTED)
                raise
            breaker = self._breaker
            if breaker is not None and breaker.failures:
                breaker.failures = 0
            return raw
        ticket = _Ticket()
        try:
            raw = await runner._timed(self._through(kw, run, ticket))
        except BaseException as error:
            if ticket.admitted:
                self._failed(error, run, ticket)
            raise
        if ticket.admitted and self._breaker is not None:
            self._succeeded(run, ticket)
        return raw

    def _at_once(self) -> bool:
        """Let an attempt through now if nothing holds it back: a closed breaker, a
        token free at the full rate (the fast path: no await, no allocation)."""
        if asyncio.get_running_loop() is not self._loop:
            self._states()
        breaker = self._breaker
        if breaker is not None and breaker.state is not CLOSED:
            return False
        bucket = self._bucket
        if bucket is not None:
            if bucket.rate < bucket.spec.per_second:
                return False  # recovering: enter() tells each step
            return bucket.try_take()
        return True

    async def _through(self, kw: dict[str, Any], run: RunInfo | None, ticket: _Ticket) -> Any:
        runner = self.runner
        limit = runner.info.limit
        if limit is None:
            await self.enter(run, ticket)
            return await runner._call(kw)
        return await runner._limited(kw, limit, lambda: self.enter(run, ticket))

    async def enter(self, run: RunInfo | None, ticket: _Ticket) -> None:
        bucket, breaker = self._states()
        while True:
            if breaker is not None and breaker.blocked(self.loop_time()):
                if not self.waits:
                    raise breaker.error(self.runner.info.name, self.runner.info.path)
                await breaker.wait()
                continue
            if bucket is not None:
                if bucket.rate < bucket.spec.per_second:
                    previous = bucket.recover()
                    if previous is not None:
                        self._tell_rate(run, bucket, previous, 0.0, None)
                if not bucket.try_take():
                    await bucket.wait()
            if breaker is None:
                ticket.admitted = True
                return
            state = breaker.state
            if state is CLOSED:
                ticket.admitted = True
                return
            now = self.loop_time()
            if not breaker.blocked(now):  # open and due, or half-open with no trial
                breaker.trial = True
                if state is OPEN:
                    breaker.state = HALF_OPEN
                    self._tell_breaker(run, breaker, OPEN, None)
                ticket.admitted = ticket.trial = True
                return
            # it opened, or another call took the trial, while this one waited for a token
            if bucket is not None:
                bucket.give_back()

    def loop_time(self) -> float:
        loop = self._loop
        assert loop is not None
        return loop.time()

    def _failed(self, error: BaseException, run: RunInfo | None, ticket: _Ticket) -> None:
        bucket, breaker = self._bucket, self._breaker
        if bucket is not None and isinstance(error, Exception):
            pause = self._slow_down(error)
            if pause is not None:
                previous = bucket.slow_down(pause)
                self._tell_rate(run, bucket, previous, pause, error)
        if breaker is None:
            return
        counts = isinstance(error, breaker.spec.on) and not isinstance(
            error, asyncio.CancelledError
        )
        if ticket.trial:
            breaker.trial = False
            if counts:
                breaker.open(error)
                self._tell_breaker(run, breaker, HALF_OPEN, error)
            elif isinstance(error, Exception):  # the callee answered
                self._close(run, breaker, error)
            else:  # cancelled: the next call is the trial
                breaker._wake_all()
            return
        if breaker.state is CLOSED:
            if counts:
                breaker.failures += 1
                if breaker.failures >= breaker.spec.failures:
                    breaker.open(error)
                    self._tell_breaker(run, breaker, CLOSED, error)
            elif isinstance(error, Exception):
                breaker.failures = 0

    def _succeeded(self, run: RunInfo | None, ticket: _Ticket) -> None:
        breaker = self._breaker
        assert breaker is not None
        if ticket.trial:
            breaker.trial = False
            self._close(run, breaker, None)
        elif breaker.state is CLOSED:
            breaker.failures = 0

    def _close(
        self, run: RunInfo | None, breaker: BreakerState, error: BaseException | None
    ) -> None:
        previous = breaker.state
        breaker.state = CLOSED
        breaker.failures = 0
        breaker._wake_all()
        if previous is not CLOSED:
            self._tell_breaker(run, breaker, previous, None)

    def _slow_down(self, error: Exception) -> float | None:
        """Seconds to pause for, if ``error`` says "slow down"; else ``None``."""
        runner = self.runner
        spec = self.rate
        assert spec is not None
        try:
            pause = runner.hooks.pm.hook.step_slow_down(step=runner.info, error=error)
        except Exception:
            from ._hooks import logger

            logger.exception("asyncdataflow: step_slow_down hook failed")
            pause = None
        if pause is None and isinstance(error, spec.on):
            hint = getattr(error, "retry_after", None)
            pause = hint if isinstance(hint, (int, float)) else spec.pause
        if pause is None:
            return None
        pause = float(pause)
        return pause if 0.0 <= pause < math.inf else spec.pause

    def _tell(self, hook: str, run: RunInfo | None, **facts: Any) -> None:
        """Call observer ``hook`` about this step (its flow, the run, the step) with
        ``facts``."""
        runner = self.runner
        runner.hooks.emit(hook, flow=runner.flow, run=run, step=runner.info, **facts)

    def _tell_rate(
        self,
        run: RunInfo | None,
        bucket: Bucket,
        previous: float | None,
        pause: float,
        error: BaseException | None,
    ) -> None:
        rate = bucket.rate
        previous = rate if previous is None else previous
        self._tell("on_rate_change", run, rate=rate, previous=previous, pause=pause, error=error)

    def _tell_breaker(
        self, run: RunInfo | None, breaker: BreakerState, previous: str, error: BaseException | None
    ) -> None:
        retry_in = None
        if breaker.state is OPEN:
            retry_in = max(0.0, breaker.retry_at - breaker.loop.time())
        self._tell(
            "on_breaker_change", run, state=breaker.state, previous=previous, error=error,
            retry_in=retry_in,
        )  # fmt: skip
