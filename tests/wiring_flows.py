"""Flows for the `asyncdataflow check` tests: one clean, one with a near miss that only a
call argument could fill, and a module whose flow cannot be built (wiring_broken.py)."""

from __future__ import annotations

from typing import Any, TypedDict

from asyncdataflow import DataFlow


class Rows(TypedDict):
    rows: list[int]


async def load(path: str) -> Rows:
    return {"rows": [1, 2]}


async def save(rows: list[int]) -> dict[str, Any]:
    return {"saved": len(rows)}


async def save_typo(rowz: list[int]) -> dict[str, Any]:
    return {"saved": len(rowz)}


clean = DataFlow((load, save), name="clean")
# with "all" a call could pass rowz=..., so the flow builds; check still sees the typo
near_miss = DataFlow((load, save_typo), args_visibility="all", name="near_miss")
