"""The seed's request broker: routing by arguments picks the branches each request needs.

    python examples/seed_broker.py

    (receive_request,
     dispatch_request,
     ((ask_system_a, transform_data_a),      # concurrent: two sequential branches
      (ask_system_b, transform_data_b)),
     compose_response)

``dispatch_request`` returns the arguments of only the branches that should run
(``query_a`` and/or ``query_b``); a branch whose first step lacks its arguments is not
taken as a whole. The flow uses ``args_visibility="all"``, so ``compose_response`` sees the
request read by ``receive_request`` as well as the parts the branches produced.

A small plugin, attached to this flow only, records which steps ran and which were not
taken in each run. The four requests run at once with ``flow.map``: one for system A, one
for B, one for both, and one for neither, which fails with ``DataFlowRoutingError`` (at
least one branch of a concurrent block must be taken).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

from asyncdataflow import DataFlow, RunInfo, StepInfo, hookimpl

SYSTEM_A = {"42": {"name": "Ann", "city": "Lyon"}, "7": {"name": "Bob", "city": "Oslo"}}
SYSTEM_B = {"42": [19.5, 5.0], "7": [3.25]}


async def receive_request(message: str) -> dict[str, Any]:
    """Parse an incoming message."""
    return {"request": json.loads(message)}


async def dispatch_request(request: dict[str, Any]) -> dict[str, Any]:
    """Prepare the arguments of only the branches this request needs."""
    out: dict[str, Any] = {}
    if "a" in request["systems"]:
        out["query_a"] = request["customer"]
    if "b" in request["systems"]:
        out["query_b"] = request["customer"]
    return out


async def ask_system_a(query_a: str) -> dict[str, Any]:
    await asyncio.sleep(0.02)  # a slow third system
    return {"raw_a": SYSTEM_A[query_a]}


def transform_data_a(raw_a: dict[str, str]) -> dict[str, Any]:
    """A sync step: it runs in a thread, off the event loop."""
    return {"customer": f"{raw_a['name']} ({raw_a['city']})"}


async def ask_system_b(query_b: str) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    return {"raw_b": SYSTEM_B[query_b]}


async def transform_data_b(raw_b: list[float]) -> dict[str, Any]:
    return {"balance": sum(raw_b)}


async def compose_response(
    request: dict[str, Any], customer: str | None = None, balance: float | None = None
) -> dict[str, Any]:
    response: dict[str, Any] = {"id": request["id"]}
    if customer is not None:
        response["customer"] = customer
    if balance is not None:
        response["balance"] = balance
    return {"response": response}


class Trace:
    """Which steps ran, and which were not taken, per request message."""

    def __init__(self) -> None:
        self.ran: dict[str, list[str]] = defaultdict(list)
        self.not_taken: dict[str, list[str]] = defaultdict(list)

    @hookimpl
    def before_step_run(self, run: RunInfo, step: StepInfo) -> None:
        self.ran[run.kwargs["message"]].append(step.name)

    @hookimpl
    def on_step_skipped(self, run: RunInfo, step: StepInfo) -> None:
        self.not_taken[run.kwargs["message"]].append(step.name)


async def main() -> None:
    trace = Trace()
    flow = DataFlow(
        (
            receive_request,
            dispatch_request,
            ((ask_system_a, transform_data_a), (ask_system_b, transform_data_b)),
            compose_response,
        ),
        args_visibility="all",
        plugins=[trace],
        name="broker",
    )
    order = [s.name for s in flow.steps]  # definition order, to print steps stably
    requests = [
        {"id": 1, "customer": "42", "systems": ["a"]},
        {"id": 2, "customer": "42", "systems": ["b"]},
        {"id": 3, "customer": "7", "systems": ["a", "b"]},
        {"id": 4, "customer": "7", "systems": []},
    ]
    messages = [json.dumps(r) for r in requests]
    results = flow.map([{"message": m} for m in messages], concurrency=4, return_exceptions=True)
    i = 0
    async for result in results:
        message, request = messages[i], requests[i]
        i += 1
        print(f"request {request['id']} for systems {request['systems']}:")
        if isinstance(result, BaseException):
            print(f"  error: {type(result).__name__}")
        else:
            print(f"  response: {result['response']}")
        for what, steps in (("ran", trace.ran), ("not taken", trace.not_taken)):
            names = sorted(steps[message], key=order.index)
            print(f"  {what}: {', '.join(names) or '-'}")


if __name__ == "__main__":
    asyncio.run(main())
