"""step(rate=...) and step(breaker=...): against a real aiohttp server on 127.0.0.1 that
records when each request arrived; the assertions are on what the server saw."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import asyncdataflow
from asyncdataflow import Breaker, DataFlow, Rate, Retry, hookimpl, step
from asyncdataflow._protect import HALF_OPEN, breaker_for, bucket_for
from asyncdataflow.exceptions import (
    DataFlowCircuitOpenError,
    DataFlowDefinitionError,
    DataFlowRunError,
)
from asyncdataflow.plugins import http

ROOT = Path(__file__).resolve().parent.parent
Behaviour = Callable[[web.Request, int, float], Awaitable[web.StreamResponse]]


async def ok(request: web.Request, n: int, now: float) -> web.StreamResponse:
    return web.json_response({"n": int(request.match_info["n"])})


class Server:
    """Answers GET /item/{n} with what ``behaviour`` says; records arrival times and
    statuses (``time.monotonic()``, the clock the client's loop uses too)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.statuses: list[int] = []
        self.behaviour: Behaviour = ok
        self.base = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        self.times.append(now)
        response = await self.behaviour(request, len(self.times), now)
        self.statuses.append(response.status)
        return response

    @property
    def url(self) -> str:
        return self.base + "/item/{n}"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.router.add_get("/item/{n}", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    srv.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield srv
    finally:
        await runner.cleanup()


def slack(rate: int) -> int:
    """Requests the server may see in one second beyond ``rate + burst``: a request sent on
    time can reach it a little late, next to ones sent after it (a tenth of a second's
    worth, at least one). A limiter that is off by its burst, or absent, is far above."""
    return max(1, rate // 10)


def busiest_second(times: list[float]) -> int:
    """The most requests in any window of one second."""
    times = sorted(times)
    most, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 1.0:
            lo += 1
        most = max(most, hi - lo + 1)
    return most


async def map_all(flow: DataFlow, n: int, concurrency: int = 50) -> list[dict[str, Any]]:
    return [r async for r in flow.map(({"n": i} for i in range(n)), concurrency=concurrency)]


class Events:
    """Records on_rate_change and on_breaker_change."""

    def __init__(self) -> None:
        self.rate: list[dict[str, Any]] = []
        self.breaker: list[dict[str, Any]] = []

    @hookimpl
    def on_rate_change(
        self, step: Any, rate: float, previous: float, pause: float, error: Any
    ) -> None:
        self.rate.append(
            {
                "rate": rate,
                "previous": previous,
                "pause": pause,
                "error": error,
                "at": time.monotonic(),
            }
        )

    @hookimpl
    def on_breaker_change(self, state: str, previous: str, retry_in: Any, error: Any) -> None:
        self.breaker.append(
            {"state": state, "previous": previous, "retry_in": retry_in, "at": time.monotonic()}
        )


# --- rate= ---------------------------------------------------------------------------------


@pytest.mark.slow  # paced by the rate or the breaker's clock: seconds on purpose
async def test_rate_20_over_200_calls_never_more_than_rate_plus_burst_in_a_second(
    server: Server,
) -> None:
    reader = step(http.reader(server.url), rate=Rate(20, burst=5))
    started = time.monotonic()
    async with DataFlow((reader,)) as flow:
        results = await map_all(flow, 200)
    elapsed = time.monotonic() - started
    assert [r["data"]["n"] for r in results] == list(range(200))
    assert len(server.times) == 200
    assert busiest_second(server.times) <= 20 + 5 + slack(20)
    # and it is a limit, not a no-op: 195 calls beyond the burst at 20 a second
    assert elapsed >= 195 / 20 * 0.95


@pytest.mark.slow  # paced by the rate or the breaker's clock: seconds on purpose
async def test_429_with_retry_after_pauses_every_caller_and_every_input_succeeds(
    server: Server,
) -> None:
    blocked = {"from": 0.0, "until": 0.0}

    async def throttles(request: web.Request, n: int, now: float) -> web.StreamResponse:
        if n == 31 or blocked["from"] <= now < blocked["until"]:
            if n == 31:
                blocked["from"], blocked["until"] = now, now + 1.0
            return web.Response(status=429, headers={"Retry-After": "1"})
        return await ok(request, n, now)

    server.behaviour = throttles
    events = Events()
    reader = step(
        http.reader(server.url),
        rate=Rate(20, burst=1),
        retry=Retry(attempts=5, backoff=0.01),
    )
    async with DataFlow((reader,), plugins=[events]) as flow:
        results = await map_all(flow, 60, concurrency=10)
    assert [r["data"]["n"] for r in results] == list(range(60))
    t429 = blocked["from"]
    # requests already on the wire when the 429 was sent may still arrive just after it
    during = [t for t in server.times if t429 + 0.1 < t < t429 + 1.0]
    assert during == []
    assert server.statuses.count(429) == sum(1 for t in server.times if t429 <= t < t429 + 1.0)
    assert busiest_second(server.times) <= 20 + 1 + slack(20)
    limited = [e for e in events.rate if e["error"] is not None]
    assert limited
    assert limited[0]["pause"] == 1.0
    assert limited[0]["previous"] == 20
    assert limited[0]["rate"] == 10


@pytest.mark.slow  # paced by the rate or the breaker's clock: seconds on purpose
async def test_shared_across_50_concurrent_runs_and_two_flows_holding_the_step(
    server: Server,
) -> None:
    reader = step(http.reader(server.url), rate=Rate(40, burst=2))
    started = time.monotonic()
    async with DataFlow((reader,), name="a") as a, DataFlow((reader,), name="b") as b:
        ra, rb = await asyncio.gather(map_all(a, 60, 50), map_all(b, 60, 50))
    elapsed = time.monotonic() - started
    assert len(ra) == len(rb) == 60
    assert len(server.times) == 120
    assert busiest_second(server.times) <= 40 + 2 + slack(40)
    assert elapsed >= 118 / 40 * 0.95  # one bucket for both flows, not one each


async def test_waiting_for_a_token_counts_against_timeout(server: Server) -> None:
    reader = step(http.reader(server.url), rate=Rate(1), timeout=0.3)
    async with DataFlow((reader,)) as flow:
        await flow(n=1)
        with pytest.raises(TimeoutError):
            await flow(n=2)
    assert len(server.times) == 1


async def test_cancelled_token_waiters_hold_no_token_and_no_slot(server: Server) -> None:
    rate = Rate(2, burst=1)
    reader = step(http.reader(server.url), rate=rate, limit=1)
    async with DataFlow((reader,)) as flow:
        await flow(n=0)  # takes the only token
        loop = asyncio.get_running_loop()
        bucket = bucket_for(rate, loop)
        tasks = [asyncio.create_task(flow(n=i)) for i in range(1, 6)]
        while not bucket.waiters:  # one holds the slot and waits for the token
            await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert not bucket.waiters
        # the next call gets the next token (half a second after the first), and the
        # slot: nothing the cancelled ones waited for is kept
        result = await asyncio.wait_for(flow(n=9), timeout=5)
        assert result == {"data": {"n": 9}}
        assert len(server.times) == 2
        # a token every half second: five cancelled waiters holding tokens would be 2.5 s
        assert server.times[1] - server.times[0] < 2.0


async def test_listed_exception_with_retry_after_pauses_and_recovers_step_by_step() -> None:
    class Throttled(Exception):
        retry_after = 0.2

    calls: list[float] = []

    async def api(n: int) -> dict[str, int]:
        calls.append(time.monotonic())
        if n == 3:
            raise Throttled("slow down")
        return {"m": n}

    events = Events()
    rate = Rate(50, on=(Throttled,))
    flow = DataFlow((step(api, rate=rate),), plugins=[events])
    for n in range(3):
        await flow(n=n)
    with pytest.raises(Throttled):
        await flow(n=3)
    await flow(n=4)
    assert calls[4] - calls[3] >= 0.2 * 0.95  # paused for retry_after
    assert events.rate[0]["pause"] == 0.2
    assert events.rate[0]["rate"] == 25
    bucket = bucket_for(rate, asyncio.get_running_loop())
    bucket.next_recover = bucket.loop.time()  # a second went by, without a sleep here
    await flow(n=5)
    assert events.rate[-1]["error"] is None
    assert events.rate[-1]["previous"] == 25
    assert events.rate[-1]["rate"] == 30


# --- breaker= ------------------------------------------------------------------------------


def down_for(seconds: float, after: int) -> tuple[Behaviour, dict[str, float]]:
    """A server that answers 503 (no Retry-After) for ``seconds`` from request ``after``."""
    window = {"from": 0.0, "until": 0.0}

    async def behaviour(request: web.Request, n: int, now: float) -> web.StreamResponse:
        if n == after:
            window["from"], window["until"] = now, now + seconds
        if window["from"] <= now < window["until"]:
            return web.Response(status=503)
        return await ok(request, n, now)

    return behaviour, window


@pytest.mark.slow  # paced by the rate or the breaker's clock: seconds on purpose
async def test_breaker_opens_after_5_failures_sends_one_trial_then_normal_traffic(
    server: Server,
) -> None:
    server.behaviour, _ = down_for(2.5, after=11)
    events = Events()
    reset_after = 1.0
    reader = step(
        http.reader(server.url),
        limit=1,
        breaker=Breaker(failures=5, reset_after=reset_after, on=(aiohttp.ClientResponseError,)),
        retry=Retry(attempts=10, backoff=0.01, max_delay=0.02),
    )
    async with DataFlow((reader,), plugins=[events]) as flow:
        results = await map_all(flow, 40, concurrency=10)
    # with a retry policy every input succeeds in the end
    assert sorted(r["data"]["n"] for r in results) == list(range(40))
    statuses, times = server.statuses, server.times
    first_fail = statuses.index(503)
    failed = [t for t, s in zip(times, statuses, strict=True) if s == 503]
    # 5 failures in a row open it; each later request while it is down is a lone trial,
    # a whole reset_after after the one before
    assert statuses[first_fail : first_fail + 5] == [503] * 5
    trials = failed[5:]
    assert 1 <= len(trials) <= 2
    before = [failed[4], *trials]
    for prev, trial in zip(before, trials, strict=False):
        assert trial - prev >= reset_after * 0.95
    recovered = statuses.index(200, first_fail)
    assert times[recovered] - failed[-1] >= reset_after * 0.95
    # then normal traffic: everything after the successful trial is answered
    assert set(statuses[recovered:]) == {200}
    assert len(statuses) == 40 + len(failed)
    states = [(e["previous"], e["state"]) for e in events.breaker]
    assert states[0] == ("closed", "open")
    assert states[-1] == ("half_open", "closed")
    assert states[1:-1] == [("open", "half_open"), ("half_open", "open")] * len(trials) + [
        ("open", "half_open")
    ]


async def test_open_breaker_fails_at_once_without_a_retry_policy(server: Server) -> None:
    server.behaviour, _ = down_for(60, after=1)
    reader = step(
        http.reader(server.url), name="users", breaker=Breaker(failures=2, reset_after=30)
    )
    async with DataFlow((reader,), name="export") as flow:
        for n in range(2):
            with pytest.raises(aiohttp.ClientResponseError):
                await flow(n=n)
        started = time.monotonic()
        with pytest.raises(DataFlowCircuitOpenError) as info:
            await flow(n=3)
    assert time.monotonic() - started < 1.0  # at once, not after any wait
    assert len(server.times) == 2  # it never reached the server
    error = info.value
    assert isinstance(error, DataFlowRunError)
    assert error.step == "users"
    assert 29 < error.retry_in <= 30
    text = str(error)
    assert "'users' at definition[0]" in text
    assert "2 failure(s) in a row" in text
    assert "trial call through in 30.0 s" in text
    assert "UTC" in text
    assert any("step 'users'" in note and "'export'" in note for note in error.__notes__)


async def test_breaker_shared_across_50_concurrent_runs_and_two_flows(server: Server) -> None:
    server.behaviour, _ = down_for(60, after=1)
    breaker = Breaker(failures=5, reset_after=30)
    reader = step(http.reader(server.url), breaker=breaker, limit=1)
    async with DataFlow((reader,), name="a") as a, DataFlow((reader,), name="b") as b:
        runs = [a(n=i) for i in range(25)] + [b(n=i) for i in range(25)]
        outcomes = await asyncio.gather(*runs, return_exceptions=True)
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds.count("ClientResponseError") == 5
    assert kinds.count("DataFlowCircuitOpenError") == 45
    assert len(server.times) == 5


async def test_cancelled_trial_frees_the_trial_and_the_slot(server: Server) -> None:
    release = asyncio.Event()
    arrived = asyncio.Event()
    mode = {"fail": True}

    async def behaviour(request: web.Request, n: int, now: float) -> web.StreamResponse:
        if mode["fail"]:
            return web.Response(status=500)
        if n == 3:  # the first trial hangs until the test lets go
            arrived.set()
            await release.wait()
        return await ok(request, n, now)

    server.behaviour = behaviour
    breaker = Breaker(failures=2, reset_after=0.2)
    events = Events()
    reader = step(http.reader(server.url), breaker=breaker, limit=1)
    async with DataFlow((reader,), plugins=[events]) as flow:
        for n in range(2):
            with pytest.raises(aiohttp.ClientResponseError):
                await flow(n=n)
        mode["fail"] = False
        state = breaker_for(breaker, asyncio.get_running_loop())
        while state.loop.time() < state.retry_at:  # until it may half-open
            await asyncio.sleep(state.retry_at - state.loop.time())
        trial = asyncio.create_task(flow(n=2))
        await arrived.wait()
        assert state.state == HALF_OPEN
        assert state.trial
        trial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trial
        release.set()
        assert state.state == HALF_OPEN
        assert not state.trial
        # the next call is the trial, gets the slot, and closes the breaker
        assert await asyncio.wait_for(flow(n=7), timeout=5) == {"data": {"n": 7}}
    assert state.state == "closed"
    assert [e["state"] for e in events.breaker] == ["open", "half_open", "closed"]


async def test_callers_with_a_retry_policy_wait_while_a_trial_is_under_way() -> None:
    """Without limit=: while the trial runs, the others wait, none reaches the callee."""
    gate = asyncio.Event()
    entered: list[int] = []
    down = {"on": True}

    async def api(n: int) -> dict[str, int]:
        entered.append(n)
        if down["on"]:
            raise ConnectionError("down")
        if len(entered) == 3:  # the trial
            await gate.wait()
        return {"m": n}

    breaker = Breaker(failures=2, reset_after=0.1)
    retried = step(api, breaker=breaker, retry=Retry(attempts=2, backoff=0))
    flow = DataFlow((retried,))
    with pytest.raises(ConnectionError):
        await flow(n=0)  # two attempts: opens it
    down["on"] = False
    state = breaker_for(breaker, asyncio.get_running_loop())
    runs = [asyncio.create_task(flow(n=i)) for i in range(1, 11)]
    while not (state.trial and len(state.waiters) == 9):
        await asyncio.sleep(0.01)
    assert len(entered) == 3  # only the trial got through
    gate.set()
    results = await asyncio.gather(*runs)
    assert sorted(r["m"] for r in results) == list(range(1, 11))
    assert len(entered) == 12


# --- definitions ---------------------------------------------------------------------------


async def noop(x: int) -> None:
    return None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate=0: give calls a second"),
        ({"rate": "fast"}, "rate='fast'"),
        ({"rate": True}, "rate=True"),
        ({"breaker": 5}, "give an asyncdataflow.Breaker"),
    ],
)
def test_bad_options_name_the_step(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(DataFlowDefinitionError, match=message):
        step(noop, name="fetch", **kwargs)
    with pytest.raises(DataFlowDefinitionError, match=r"step\('fetch'\)"):
        step(noop, name="fetch", **kwargs)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Rate(-1), "per_second"),
        (lambda: Rate(10, burst=0), "burst"),
        (lambda: Rate(10, floor=20), "floor"),
        (lambda: Rate(10, on=(int,)), "not an exception type"),
        (lambda: Breaker(failures=0), "failures"),
        (lambda: Breaker(reset_after=0), "reset_after"),
    ],
)
def test_bad_rate_or_breaker(make: Callable[[], object], message: str) -> None:
    with pytest.raises(DataFlowDefinitionError, match=message):
        make()


def test_options_combine_and_are_exported() -> None:
    s = step(step(noop, rate=20), breaker=Breaker())
    assert isinstance(s.rate, Rate)
    assert s.rate.per_second == 20
    assert s.rate.burst == 1
    assert s.rate.floor == 2.0
    assert isinstance(s.breaker, Breaker)
    assert asyncdataflow.Rate is Rate
    assert asyncdataflow.Breaker is Breaker
    (fn,) = [node for node in DataFlow((s,)).walk() if hasattr(node, "info")]
    assert fn.info.rate is s.rate
    assert fn.info.breaker is s.breaker


# --- docs/protect.md -----------------------------------------------------------------------


@pytest.mark.slow  # paced by the rate or the breaker's clock: seconds on purpose
def test_docs_example_prints_what_the_docs_show(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "protect.md").read_text(encoding="utf-8")
    section = text.split("## An example: the HTTP reader", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    shown = section.split("prints\n\n```\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "protect_example.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == shown
