"""The seed's merge: two sources read concurrently, merged into one destination.

    python examples/seed_merge.py

``source`` is written once, without the flow in mind; ``functools.partial`` binds which
endpoint each copy reads (a bound value is never overridden by flow data), and
``args_mapper(..., output={'data': 'data_a'})`` renames its output so the two concurrent
outputs do not collide when they are merged. ``merge`` zips them, and ``destination``
(endpoint bound with ``partial`` too) writes the result. The three queries run at once.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from asyncdataflow import DataFlow, args_mapper

#: The simulated systems: endpoint -> query -> rows.
SYSTEMS: dict[str, dict[str, list[int]]] = {
    "endpoint_a": {"query_1": [1, 2, 3], "query_2": [4, 5], "query_3": [6]},
    "endpoint_b": {"query_1": [10, 20, 30], "query_2": [40, 50], "query_3": [60]},
}

#: The simulated destination: endpoint -> the rows written to it.
WRITTEN: dict[str, list[tuple[int, int]]] = {"endpoint_c": []}


async def source(endpoint: str, query: str) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    return {"data": SYSTEMS[endpoint][query]}


async def merge(data_a: list[int], data_b: list[int]) -> dict[str, Any]:
    return {"data": list(zip(data_a, data_b, strict=True))}


async def destination(endpoint: str, data: list[tuple[int, int]]) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    WRITTEN[endpoint].extend(data)
    return {"status": 0, "rows": len(data)}


source_a = args_mapper(partial(source, endpoint="endpoint_a"), output={"data": "data_a"})
source_b = args_mapper(partial(source, endpoint="endpoint_b"), output={"data": "data_b"})
dest = partial(destination, endpoint="endpoint_c")


async def main() -> None:
    flow = DataFlow(((source_a, source_b), merge, dest), name="merge")
    queries = ["query_1", "query_2", "query_3"]
    for query in queries:  # one at a time first: each run's result
        result = await flow(query=query)
        print(f"{query}: {result}")
    print(f"written to endpoint_c: {WRITTEN['endpoint_c']}")

    # then all three at once, as the seed does with create_task
    results = await asyncio.gather(*(flow(query=query) for query in queries))
    print(f"three at once: {results}")
    print(f"rows in endpoint_c now: {len(WRITTEN['endpoint_c'])}")


if __name__ == "__main__":
    asyncio.run(main())
