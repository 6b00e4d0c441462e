"""Step options: retry policies, timeouts, concurrency limits and names."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from asyncdataflow import DataFlow, Retry, step
from asyncdataflow.exceptions import (
    DataFlowDefinitionError,
)


class Flaky:
    """Fails ``failures`` times with ``error`` and then returns the attempt number."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self.errors: list[Exception] = []

    async def __call__(self, x: int) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            error = self.error(f"failure {self.calls}")
            self.errors.append(error)
            raise error
        return {"y": x * 2, "attempt": self.calls}


FAST = Retry(attempts=3, backoff=0.001, jitter=False)


async def test_a_step_failing_twice_then_succeeding_returns_its_result() -> None:
    flaky = Flaky(2)
    flow = DataFlow((step(flaky, retry=FAST),))
    assert await flow(x=21) == {"y": 42, "attempt": 3}
    assert flaky.calls == 3


async def test_when_attempts_run_out_the_last_error_propagates_with_a_note() -> None:
    flaky = Flaky(5)
    flow = DataFlow((step(flaky, name="flaky", retry=FAST),), name="retrying")
    with pytest.raises(ConnectionError) as caught:
        await flow(x=1)
    assert flaky.calls == 3
    assert caught.value is flaky.errors[-1]
    assert str(caught.value) == "failure 3"
    notes = caught.value.__notes__
    assert any("3 attempt(s) made" in n for n in notes), notes
    assert any("'flaky'" in n and "'retrying'" in n for n in notes), notes


async def test_an_exception_not_listed_is_not_retried() -> None:
    flaky = Flaky(1, error=KeyError)
    policy = Retry(attempts=5, backoff=0.001, on=(ConnectionError, TimeoutError))
    with pytest.raises(KeyError) as caught:
        await DataFlow((step(flaky, retry=policy),))(x=1)
    assert flaky.calls == 1
    assert caught.value is flaky.errors[0]
    assert any("1 attempt(s) made" in n for n in caught.value.__notes__)


async def test_a_subclass_of_a_listed_exception_is_retried() -> None:
    flaky = Flaky(1, error=ConnectionRefusedError)
    # a bare type is accepted (the annotation says tuple: /tmp/requests-plugins.md #2)
    policy = Retry(attempts=2, backoff=0, on=ConnectionError)
    assert policy.on == (ConnectionError,)
    assert await DataFlow((step(flaky, retry=policy),))(x=1) == {"y": 2, "attempt": 2}


async def test_the_flow_default_applies_to_steps_without_their_own() -> None:
    default = Flaky(2)
    own = Flaky(1)

    async def relay(y: int, attempt: int) -> dict[str, Any]:
        return {"x": y}

    flow = DataFlow(
        (default, relay, step(own, retry=Retry(attempts=1))),
        retry=FAST,
    )
    with pytest.raises(ConnectionError):
        await flow(x=1)
    assert default.calls == 3  # the flow's policy: three attempts
    assert own.calls == 1  # its own policy: one attempt
    assert flow.steps[0].retry == FAST
    assert flow.steps[1].retry == FAST
    assert flow.steps[2].retry == Retry(attempts=1)


async def test_backoff_waits_between_attempts() -> None:
    flaky = Flaky(2)
    policy = Retry(attempts=3, backoff=0.05, jitter=False)
    started = time.perf_counter()
    await DataFlow((step(flaky, retry=policy),))(x=1)
    # 0.05 after the first failure, 0.1 after the second
    assert time.perf_counter() - started >= 0.15


def test_delay_is_exponential_capped_and_jittered() -> None:
    policy = Retry(attempts=10, backoff=0.1, max_delay=0.5, jitter=False)
    error = ConnectionError()
    assert [policy.delay(error, n) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert policy.delay(error, 10) is None  # no attempt left
    assert Retry(on=(ConnectionError,)).delay(KeyError(), 1) is None
    assert policy.delay(error, 1, retry_after=3.0) == 0.5  # capped
    assert policy.delay(error, 1, retry_after=0.25) == 0.25

    jittered = Retry(attempts=10, backoff=0.2, max_delay=30, jitter=True)
    delays = [jittered.delay(error, 3) for _ in range(200)]
    assert all(d is not None and 0.4 <= d <= 0.8 for d in delays)
    assert len(set(delays)) > 100


def test_bad_options_are_definition_errors() -> None:
    with pytest.raises(DataFlowDefinitionError, match="attempts"):
        Retry(attempts=0)
    with pytest.raises(DataFlowDefinitionError, match="backoff"):
        Retry(backoff=-1)
    with pytest.raises(DataFlowDefinitionError, match="timeout"):
        step(Flaky(0), timeout=0)
    with pytest.raises(DataFlowDefinitionError, match="limit"):
        step(Flaky(0), limit=0)


async def test_a_timeout_fires_with_timeout_error_and_a_note() -> None:
    async def slow(x: int) -> dict[str, Any]:
        await asyncio.sleep(10)
        return {}  # pragma: no cover

    flow = DataFlow((step(slow, name="slow", timeout=0.05),), name="timed")
    started = time.perf_counter()
    with pytest.raises(TimeoutError) as caught:
        await flow(x=1)
    assert time.perf_counter() - started < 2
    assert any("'slow'" in n and "'timed'" in n for n in caught.value.__notes__)


async def test_a_timeout_is_per_attempt_and_retried() -> None:
    calls = {"n": 0}

    async def slow_then_fast(x: int) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] < 3:
            await asyncio.sleep(10)
        return {"n": calls["n"]}

    flow = DataFlow(
        (
            step(
                slow_then_fast, timeout=0.05, retry=Retry(attempts=3, backoff=0, on=(TimeoutError,))
            ),
        )
    )
    assert await flow(x=1) == {"n": 3}


async def test_a_fast_step_is_not_affected_by_its_timeout() -> None:
    async def quick(x: int) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"y": x}

    assert await DataFlow((step(quick, timeout=5),))(x=3) == {"y": 3}


async def test_a_limit_is_never_exceeded_by_50_concurrent_runs() -> None:
    state = {"now": 0, "peak": 0, "calls": 0}

    async def guarded(x: int) -> dict[str, Any]:
        state["now"] += 1
        state["calls"] += 1
        state["peak"] = max(state["peak"], state["now"])
        try:
            await asyncio.sleep(0.005)
        finally:
            state["now"] -= 1
        return {"y": x}

    async def free(y: int) -> dict[str, Any]:
        return {"z": y}

    flow = DataFlow((step(guarded, limit=2), free))
    results = await asyncio.gather(*(flow(x=i) for i in range(50)))
    assert results == [{"z": i} for i in range(50)]
    assert state["calls"] == 50
    assert state["peak"] == 2


async def test_a_limit_is_shared_by_map_runs_and_holds_for_sync_steps() -> None:

    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def blocking(x: int) -> dict[str, Any]:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.002)
        with lock:
            state["now"] -= 1
        return {"y": x}

    flow = DataFlow((step(blocking, limit=2),))
    results = [r async for r in flow.map(({"x": i} for i in range(50)), concurrency=50)]
    assert results == [{"y": i} for i in range(50)]
    assert state["peak"] == 2


async def test_step_options_combine_and_name_the_step() -> None:
    flaky = Flaky(1)
    combined = step(step(flaky, name="named", retry=FAST), timeout=1)
    flow = DataFlow((combined,))
    (info,) = flow.steps
    assert (info.name, info.timeout, info.retry, info.limit) == ("named", 1, FAST, None)
    assert await flow(x=1) == {"y": 2, "attempt": 2}


async def test_a_reraised_exception_object_gets_the_retry_note_only_once():
    shared = ConnectionError("pool is down")

    async def connect(x):
        raise shared

    flow = DataFlow((step(connect, retry=Retry(attempts=1)),))
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await flow(x=1)
    assert len(shared.__notes__) == len(set(shared.__notes__))


async def test_a_nested_flow_keeps_its_own_default_retry():
    calls = [0]

    async def flaky():
        calls[0] += 1
        if calls[0] < 3:
            raise ConnectionError("transient")
        return {"ok": True}

    inner = DataFlow((flaky,), retry=Retry(attempts=3, backoff=0))
    assert await DataFlow((inner,))() == {"ok": True}


async def test_cancelling_during_a_retry_pause_stops_at_once_without_retrying():
    attempts = [0]

    async def fails(x):
        attempts[0] += 1
        raise ConnectionError("down")

    flow = DataFlow((step(fails, retry=Retry(attempts=5, backoff=10, jitter=False)),))
    task = asyncio.ensure_future(flow(x=1))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert attempts == [1]


def test_refusal_says_why_the_policy_does_not_retry() -> None:
    policy = Retry(attempts=2, on=(ConnectionError,))
    assert policy.refusal(ConnectionError(), 1) is None
    assert policy.refusal(ConnectionError(), 2) == (
        "gave up: 2 attempt(s) made (Retry(attempts=2))"
    )
    assert policy.refusal(KeyError(), 1) == (
        "not retried: KeyError is not listed in Retry(on=(ConnectionError,)); 1 attempt(s) made"
    )
    assert policy.delay(KeyError(), 1) is None
