"""The seed's request broker, drawn.

receive_request -> dispatch_request -> ((ask_system_a, transform_data_a),
(ask_system_b, transform_data_b)) -> compose_response

``dispatch_request`` returns the arguments of only the branches the request asks for;
the other branch is not taken. The ``TypedDict`` return annotations tell ``graph`` which
keys each step returns.

    python examples/broker_graph.py                        # run it, print the Mermaid graph
    asyncdataflow run broker_graph:broker 'request:={"query": "x", "systems": ["a"]}'
    asyncdataflow graph broker_graph:broker                # Mermaid text
    asyncdataflow graph broker_graph:broker --output broker.svg   # needs Graphviz

(run the asyncdataflow commands from examples/, or with examples/ on PYTHONPATH)
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from asyncdataflow import DataFlow
from asyncdataflow.graph import to_mermaid


class Received(TypedDict):
    query: str
    systems: list[str]


class Dispatched(TypedDict, total=False):
    query_a: str
    query_b: str


class AnswerA(TypedDict):
    raw_a: dict[str, Any]


class AnswerB(TypedDict):
    raw_b: dict[str, Any]


class DataA(TypedDict):
    data_a: list[str]


class DataB(TypedDict):
    data_b: list[str]


class Response(TypedDict):
    response: dict[str, Any]


async def receive_request(request: dict[str, Any]) -> Received:
    return {"query": request["query"], "systems": list(request.get("systems", ["a", "b"]))}


async def dispatch_request(query: str, systems: list[str]) -> Dispatched:
    out: Dispatched = {}
    if "a" in systems:
        out["query_a"] = query
    if "b" in systems:
        out["query_b"] = query
    return out


async def ask_system_a(query_a: str) -> AnswerA:
    await asyncio.sleep(0.01)  # stands in for an HTTP call
    return {"raw_a": {"hits": [f"a:{query_a}:1", f"a:{query_a}:2"]}}


async def transform_data_a(raw_a: dict[str, Any]) -> DataA:
    return {"data_a": [hit.upper() for hit in raw_a["hits"]]}


async def ask_system_b(query_b: str) -> AnswerB:
    await asyncio.sleep(0.01)  # stands in for a database query
    return {"raw_b": {"rows": [[query_b, 1]]}}


async def transform_data_b(raw_b: dict[str, Any]) -> DataB:
    return {"data_b": [f"{name}={n}" for name, n in raw_b["rows"]]}


def compose_response(data_a: list[str] | None = None, data_b: list[str] | None = None) -> Response:
    return {"response": {"a": data_a, "b": data_b}}


broker = DataFlow(
    (
        receive_request,
        dispatch_request,
        ((ask_system_a, transform_data_a), (ask_system_b, transform_data_b)),
        compose_response,
    ),
    name="broker",
)


async def main() -> None:
    print(await broker(request={"query": "books", "systems": ["a"]}))
    print(to_mermaid(broker), end="")


if __name__ == "__main__":
    asyncio.run(main())
