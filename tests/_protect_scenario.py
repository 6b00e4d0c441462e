"""One run of every rate= and breaker= event, with no server and no sleep: shared by
tests/test_hooks.py and tests/test_protect_plugins.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asyncdataflow import Breaker, DataFlow, Rate, step
from asyncdataflow._protect import breaker_for, bucket_for
from asyncdataflow.exceptions import DataFlowCircuitOpenError


class Throttled(Exception):
    """What the API says when it wants fewer calls."""

    retry_after = 0.05


async def api(n: int) -> dict[str, int]:
    if n == 1:
        raise Throttled("slow down")
    if n in (2, 3):
        raise ConnectionError("down")
    return {"m": n}


async def scenario(plugins: list[Any]) -> DataFlow:
    """Events, in order: the rate is lowered (Throttled), the breaker opens (two
    ConnectionErrors), a call fails at once, the breaker half-opens and closes (a trial
    that succeeds), the rate recovers one step."""
    rate = Rate(100, on=(Throttled,))
    breaker = Breaker(failures=2, reset_after=30, on=(ConnectionError,))
    flow = DataFlow(
        (step(api, name="api", rate=rate, breaker=breaker),), name="svc", plugins=plugins
    )
    loop = asyncio.get_running_loop()
    await flow(n=0)
    with pytest.raises(Throttled):
        await flow(n=1)
    for n in (2, 3):
        with pytest.raises(ConnectionError):
            await flow(n=n)
    with pytest.raises(DataFlowCircuitOpenError):
        await flow(n=4)
    breaker_for(breaker, loop).retry_at = loop.time()  # as if reset_after went by
    await flow(n=5)
    bucket_for(rate, loop).next_recover = loop.time()  # as if a second went by
    await flow(n=6)
    return flow
