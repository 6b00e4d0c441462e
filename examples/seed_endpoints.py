"""The seed's introduction: ``source(endpoint) -> destination(source, data)``, run for three
endpoints at once.

    python examples/seed_endpoints.py

The endpoints are simulated: each answers after a short ``asyncio.sleep`` with data kept in
memory, and the destination is a dict standing in for a database. One ``DataFlow`` serves
all three endpoints: a flow holds no per-call state, so the runs never see each other's
data. ``flow.map`` runs them (at most ``concurrency`` at a time) and yields the results in
input order; ``asyncio.gather`` over ``flow(...)`` calls, as in the seed, works too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asyncdataflow import DataFlow

#: What each simulated endpoint serves, and how long it takes to answer (seconds).
ENDPOINTS: dict[str, tuple[list[int], float]] = {
    "endpoint1": ([1, 2, 3, 4, 5, 6], 0.03),
    "endpoint2": ([10, 20, 30], 0.01),
    "endpoint3": ([7, 7, 7, 7], 0.02),
}

#: The simulated destination: a table per source.
DATABASE: dict[str, list[int]] = {}

in_flight = 0
most_in_flight = 0


async def source(endpoint: str) -> dict[str, Any]:
    """Fetch the endpoint's data."""
    global in_flight, most_in_flight
    in_flight += 1
    most_in_flight = max(most_in_flight, in_flight)
    data, latency = ENDPOINTS[endpoint]
    await asyncio.sleep(latency)
    in_flight -= 1
    return {"source": endpoint, "data": list(data)}


async def destination(source: str, data: list[int]) -> dict[str, Any]:
    """Store the data under its source's name."""
    await asyncio.sleep(0.005)
    DATABASE[source] = data
    return {"status": 0, "source": source, "rows": len(data)}


async def main() -> None:
    flow = DataFlow((source, destination), name="endpoints")

    print("flow.map over three endpoints, at most 3 at a time:")
    inputs = [{"endpoint": name} for name in ENDPOINTS]
    async for result in flow.map(inputs, concurrency=3):
        print(f"  {result}")
    print(f"sources in flight at once: {most_in_flight}")
    print("database:")
    for table in sorted(DATABASE):
        print(f"  {table}: {DATABASE[table]}")

    print("asyncio.gather, as in the seed:")
    results = await asyncio.gather(*(flow(endpoint=name) for name in ENDPOINTS))
    for result in results:
        print(f"  {result}")


if __name__ == "__main__":
    asyncio.run(main())
