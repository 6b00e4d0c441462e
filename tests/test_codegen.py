"""The generated code: parameter names that look like its own locals, guards that
test and fetch in one lookup, KeyErrors that are not missing arguments, notes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asyncdataflow import DataFlow, Retry, step


async def test_a_call_argument_named_self_reaches_the_step():
    async def method_like(self):
        return {"got": self}

    assert await DataFlow((method_like,))(self=1) == {"got": 1}


NAMES = ("d", "r", "run", "init", "c", "n", "e", "a_x", "x", "func", "fn", "_note", "EXEC")


def _make(names: tuple[str, ...], is_async: bool, out: str) -> Any:
    args = ", ".join(names)
    body = f"return {{{out!r}: ({args},)}}"
    src = f"{'async ' if is_async else ''}def f({args}):\n    {body}\n"
    ns: dict[str, Any] = {}
    exec(src, ns)
    return ns["f"]


@pytest.mark.parametrize("is_async", [True, False])
@pytest.mark.parametrize("instrumented", [False, True])
async def test_parameters_named_like_generated_locals_reach_the_step(is_async, instrumented):
    def wrap(f: Any) -> Any:
        return step(f, limit=2) if instrumented else f

    first = wrap(_make(NAMES, is_async, "first"))
    later = wrap(_make(NAMES, is_async, "later"))
    pairs = ((("d", "e"), "p"), (("a_x", "run"), "q"))
    both = tuple(wrap(_make(ns, is_async, o)) for ns, o in pairs)

    def spread(first=(), later=()):  # the tuple a step returned, back into named keys
        return dict(zip(NAMES, first or later, strict=True))

    values = {n: f"v_{n}" for n in NAMES}
    flow = DataFlow((first, spread, later, spread, both))
    assert await flow(**values) == {"p": ("v_d", "v_e"), "q": ("v_a_x", "v_run")}


async def test_a_later_step_whose_required_argument_is_missing_is_passed_over():
    async def a(x):
        return {"y": x}

    def needs_z(z, y=0):  # sync, required z absent: its input flows on unchanged
        raise AssertionError("must not run")

    async def b(y):
        return {"out": y}

    flow = DataFlow((a, needs_z, b))
    assert await flow(x=5) == {"out": 5}


async def test_a_key_error_raised_by_a_later_step_is_not_taken_for_a_missing_argument():
    async def a(x):
        return {"y": x}

    async def lookup(y):
        return {}["nope"]

    flow = DataFlow((a, lookup))
    with pytest.raises(KeyError, match="nope") as info:
        await flow(x=1)
    assert "definition[1]" in info.value.__notes__[0]


@pytest.mark.parametrize("instrumented", [False, True])
async def test_no_note_is_added_to_cancellation_or_exit_signals(instrumented):
    async def cancel(x):
        raise asyncio.CancelledError()

    def leave(x):
        raise SystemExit(3)

    def wrap(f: Any) -> Any:
        return step(f, timeout=5) if instrumented else f

    with pytest.raises(asyncio.CancelledError) as c_info:
        await DataFlow((wrap(cancel),))(x=1)
    assert not getattr(c_info.value, "__notes__", None)
    with pytest.raises(SystemExit) as s_info:
        await DataFlow((wrap(leave),))(x=1)
    assert not getattr(s_info.value, "__notes__", None)


async def test_lean_and_instrumented_paths_give_the_same_result_for_a_sync_step():
    def shape(a, b=10):
        return {"sum": a + b}

    lean = DataFlow((shape,))
    instrumented = DataFlow((step(shape, timeout=5, limit=3, retry=Retry(attempts=2)),))
    for kwargs in ({"a": 1}, {"a": 1, "b": 2}):
        assert await lean(**kwargs) == await instrumented(**kwargs)
