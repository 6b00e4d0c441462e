"""Flows the CLI tests run, in process through `main(argv)` or as `python -m asyncdataflow`
(imported as `cli_flows`). Importing it registers no global plugin: cli_registers does."""

from __future__ import annotations

import asyncio
import datetime
import os
from pathlib import Path
from typing import Any

from asyncdataflow import DataFlow, Record, args_mapper, hookimpl, resume_position


async def hello(name: str, punctuation: str = "!") -> dict[str, Any]:
    return {"greeting": f"hello {name}{punctuation}"}


greet = DataFlow((hello,), name="greet")


def make_greet() -> DataFlow:
    """A zero-argument factory: `run cli_flows:make_greet` builds the flow, then runs it."""
    return DataFlow((hello,), name="made")


def needs_arguments(prefix: str) -> DataFlow:
    return DataFlow((hello,))


def returns_other() -> int:
    return 42


not_a_flow = 42


async def echo(payload: Any) -> dict[str, Any]:
    return {"payload": payload, "type": type(payload).__name__}


echo_flow = DataFlow((echo,))


async def stamp() -> dict[str, Any]:
    return {"when": datetime.date(2024, 1, 2), "where": Path("/tmp")}


stamped = DataFlow((stamp,))  # values JSON cannot hold: printed with str()


async def explode(greeting: str) -> dict[str, Any]:
    raise ValueError(f"cannot send {greeting!r}")


failing = DataFlow((hello, explode))


async def square(n: int) -> dict[str, Any]:
    await asyncio.sleep(0.002 * (n % 5))  # finish out of order
    if n % 7 == 3:
        raise ValueError(f"n={n} is unlucky")
    return {"n": n, "square": n * n}


squares = DataFlow((square,), name="squares")


async def slow_square(n: int) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    return {"n": n, "square": n * n}


slow_squares = DataFlow((slow_square,))


class Ticker:
    """One loop iteration: append `start` to `marker`, sleep `nap` seconds, append `end`.
    Returns how many iterations finished; `aclose()` appends `closed`."""

    def __init__(self) -> None:
        self.done = 0
        self.marker: str | None = None

    async def __call__(self, marker: str, nap: float = 1.0) -> dict[str, Any]:
        self.marker = marker
        with open(marker, "a") as f:
            f.write("start\n")
        await asyncio.sleep(float(nap))
        self.done += 1
        with open(marker, "a") as f:
            f.write("end\n")
        return {"done": self.done}

    async def aclose(self) -> None:
        if self.marker is not None:
            with open(self.marker, "a") as f:
                f.write("closed\n")


ticker = DataFlow((Ticker(),), name="ticker")
looping = DataFlow((hello,), infinity_loop=True, interval=0.05, name="looping")
ticking = DataFlow((Ticker(),), infinity_loop=True, interval=0.01, name="ticking")

# graph: an args_mapper step with declared outputs, a partial and a nested named flow
inner = DataFlow((hello, echo), name="inner")
mapped = DataFlow(
    (args_mapper(square, input={"n": "number"}, output={"square": "name"}), (inner, stamp)),
    name="mapped",
)


class Tracer:
    @hookimpl
    def before_step_run(self) -> None:
        pass


traced = DataFlow((hello,), plugins=[Tracer()], name="traced")


class Gate:
    """A step for `map` that appends `start N` to `marker`, waits until the file `gate`
    exists, appends `end N` and returns {"n": N}; `aclose()` appends `closed`."""

    def __init__(self) -> None:
        self.marker: str | None = None

    async def __call__(self, n: int, marker: str, gate: str) -> dict[str, Any]:
        self.marker = marker
        with open(marker, "a") as f:
            f.write(f"start {n}\n")
        while not os.path.exists(gate):  # the test opens the gate when it is ready
            await asyncio.sleep(0.01)
        with open(marker, "a") as f:
            f.write(f"end {n}\n")
        return {"n": n}

    async def aclose(self) -> None:
        if self.marker is not None:
            with open(self.marker, "a") as f:
                f.write("closed\n")


gated = DataFlow((Gate(),), name="gated")


async def nan(kind: str) -> dict[str, Any]:
    return {"value": float(kind)}


not_a_number = DataFlow((nan,), name="not_a_number")  # nan, inf, -inf: not JSON


async def surrogate(text: str) -> dict[str, Any]:
    return {"text": text + "\ud800"}  # a lone surrogate: UTF-8 cannot hold it


lone_surrogate = DataFlow((surrogate,), name="lone_surrogate")


# replay: a stream whose parse step fails on number words it does not know; run it with
# make_numbers(sink) to write letters, teach it words (the fix), replay them with
# `replay cli_flows:numbers`
KNOWN_WORDS: dict[str, int] = {}
KEPT: list[int] = []


async def parse(text: str) -> dict[str, Any]:
    if text.isdigit():
        return {"n": int(text)}
    if text in KNOWN_WORDS:
        return {"n": KNOWN_WORDS[text]}
    raise ValueError(f"not a number: {text!r}")


async def save(n: int) -> None:
    KEPT.append(n)


async def texts(items: list[str]) -> Any:
    for text in items:
        yield {"text": text}


def make_numbers(sink: Any = None) -> DataFlow:
    return DataFlow((texts, parse, save), name="numbers", dead_letter=sink)


numbers = make_numbers()
unnamed_numbers = DataFlow((texts, parse, save))


# run --loop keeps checkpoint= and dead_letter=: one record per iteration, after the
# committed one; 2 goes to the dead letters, 4 ends the loop (a wrong result type is a
# bug, not a letter), and so does a 10th call whatever happened
class Ends:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, n: int) -> Any:
        self.calls += 1
        if n == 2:
            raise ValueError("two is dead-lettered")
        return [n] if n == 4 or self.calls >= 10 else {"n": n}


async def next_number() -> Any:
    after = resume_position() or 0
    yield Record({"n": after + 1}, position=after + 1)


def make_durable_counter() -> DataFlow:
    from asyncdataflow.plugins import files

    folder = Path(os.environ["ADF_TEST_DURABLE_DIR"])
    return DataFlow(
        (next_number, Ends()),
        name="counter",
        checkpoint=files.checkpoints(folder / "state.json"),
        dead_letter=files.dead_letters(folder / "dead.jsonl"),
    )
