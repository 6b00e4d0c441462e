"""A module whose flow cannot be built: `asyncdataflow check` reports why (exit 1)."""

from __future__ import annotations

from typing import Any, TypedDict

from asyncdataflow import DataFlow


class Rows(TypedDict):
    rows: list[int]


async def load(path: str) -> Rows:
    return {"rows": [1, 2]}


async def save(rowz: list[int]) -> dict[str, Any]:
    return {"saved": len(rowz)}


broken = DataFlow((load, save), name="broken")
