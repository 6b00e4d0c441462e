"""Dead letters: a record a step fails on after its retries goes to a sink and the stream
goes on; `flow.replay(sink)` runs the letters again and removes the ones that succeed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from _mysql_server import Tables, sql

from asyncdataflow import DataFlow, Retry, hookimpl, step
from asyncdataflow.durable import DeadLetter
from asyncdataflow.exceptions import DataFlowCallError, DataFlowDefinitionError
from asyncdataflow.plugins import files, mysql

BAD = {13, 101, 222, 500, 613, 777, 999}


async def numbers(count: int) -> Any:
    for n in range(count):
        yield {"n": n}


class Shape:
    """Fails on the BAD numbers until fixed."""

    def __init__(self) -> None:
        self.fixed = False
        self.calls = 0

    async def __call__(self, n: int) -> dict[str, Any]:
        self.calls += 1
        if n in BAD and not self.fixed:
            raise ValueError(f"cannot shape {n}")
        return {"data": [{"n": n, "square": n * n}]}


class Collect:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    async def __call__(self, data: list[dict[str, Any]]) -> dict[str, Any]:
        self.rows.extend(data)
        return {"written": len(data)}


class Seen:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    @hookimpl
    def on_dead_letter(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


@pytest.mark.parametrize("window", [1, 8])
async def test_bad_records_go_to_the_sink_and_the_stream_goes_on(
    tmp_path: Path, window: int
) -> None:
    shape, out, seen = Shape(), Collect(), Seen()
    sink = files.dead_letters(tmp_path / "dead.jsonl")
    retry = Retry(attempts=2, backoff=0, on=ValueError)
    flow = DataFlow(
        (step(numbers, window=window), step(shape, name="shape", retry=retry), out),
        name="copy",
        dead_letter=sink,
        plugins=[seen],
    )
    started = time.time()
    result = await flow(count=1000)
    assert result == {"written": 1}  # the last record's output
    assert len(out.rows) == 993
    assert {r["n"] for r in out.rows} == set(range(1000)) - BAD
    letters = [x async for x in sink.letters()]
    assert sorted(x.input["n"] for x in letters) == sorted(BAD)
    for x in letters:
        assert (x.flow, x.step, x.path, x.source) == (
            "copy",
            "shape",
            "definition[1]",
            "definition[0]",
        )
        assert x.error_type == "ValueError"
        assert x.message == f"cannot shape {x.input['n']}"
        assert x.attempts == 2
        assert x.record == (x.input["n"],)
        assert started <= x.time <= time.time()
        assert any("raised by step 'shape' at definition[1]" in n for n in x.notes)
        assert any(f"in record {x.input['n']}" in n for n in x.notes)
        assert x.id is not None
    assert sorted(x.input["n"] for x in seen.letters) == sorted(BAD)

    shape.fixed = True
    done = await flow.replay(sink)
    assert (done.succeeded, done.failed) == (7, ())
    assert len(out.rows) == 1000
    assert [x async for x in sink.letters()] == []


async def test_into_mysql_with_a_mysql_sink_and_replay(mysql_url: str, tables: Tables) -> None:
    dest = tables.create("n INT PRIMARY KEY, square BIGINT", prefix="dest")
    sink = mysql.dead_letters(url=mysql_url, table=tables.name("dead"))
    shape = Shape()
    flow = DataFlow(
        (step(numbers, window=4), shape, mysql.writer(dest, url=mysql_url)),
        name="to-mysql",
        dead_letter=sink,
    )
    async with flow:
        await flow(count=1000)
        assert sql(f"SELECT COUNT(*) FROM `{dest}`", url=mysql_url) == [(993,)]
        letters = [x async for x in sink.letters()]
        assert sorted(x.input["n"] for x in letters) == sorted(BAD)
        shape.fixed = True
        done = await flow.replay(sink)
        assert done.succeeded == 7
        assert [x async for x in sink.letters()] == []
    assert sql(f"SELECT COUNT(*), SUM(n) FROM `{dest}`", url=mysql_url) == [(1000, 499500)]


async def test_a_letter_that_fails_again_stays_with_its_error(tmp_path: Path) -> None:
    sink = files.dead_letters(tmp_path / "dead.jsonl")
    flow = DataFlow((step(numbers), Shape(), Collect()), name="f", dead_letter=sink)
    await flow(count=20)
    done = await flow.replay(sink)
    assert done.succeeded == 0
    assert [str(e) for _, e in done.failed] == ["cannot shape 13"]
    assert [x.input for x in [x async for x in sink.letters()]] == [{"n": 13}]


async def test_a_replay_that_fails_again_writes_no_second_letter_through_a_step_s_sink(
    tmp_path: Path,
) -> None:
    sink = files.dead_letters(tmp_path / "dead.jsonl")
    in_stream = DataFlow((step(numbers), step(Shape(), dead_letter=sink)), name="s")
    await in_stream(count=20)
    outside = DataFlow((step(Shape(), dead_letter=sink),), name="o")
    with pytest.raises(ValueError, match="cannot shape 101"):
        await outside(n=101)
    before = [x async for x in sink.letters()]
    for flow in (in_stream, outside, in_stream):
        done = await flow.replay(sink)
        assert (done.succeeded, len(done.failed)) == (0, 1)
    assert [x async for x in sink.letters()] == before


async def test_outside_a_stream_the_letter_holds_the_call_and_the_error_propagates(
    tmp_path: Path,
) -> None:
    sink = files.dead_letters(tmp_path / "dead.jsonl")
    shape = Shape()
    flow = DataFlow((step(shape, dead_letter=sink),), name="one")
    with pytest.raises(ValueError, match="cannot shape 13") as info:
        await flow(n=13)
    assert any("written to dead letters" in n for n in info.value.__notes__)
    (letter,) = [x async for x in sink.letters()]
    assert (letter.input, letter.record, letter.source) == ({"n": 13}, (), None)
    shape.fixed = True
    assert (await flow.replay(sink)).succeeded == 1
    assert [x async for x in sink.letters()] == []


async def test_letters_of_other_flows_are_left_alone(tmp_path: Path) -> None:
    sink = files.dead_letters(tmp_path / "dead.jsonl")
    a = DataFlow((step(numbers), Shape()), name="a", dead_letter=sink)
    await a(count=20)
    b = DataFlow((step(numbers), Shape()), name="b")
    assert (await b.replay(sink)).succeeded == 0
    assert len([x async for x in sink.letters()]) == 1


async def test_a_wrong_result_type_is_a_bug_not_a_dead_letter(tmp_path: Path) -> None:
    from asyncdataflow.exceptions import DataFlowFunctionResultError

    async def broken(n: int) -> Any:
        return [n]

    sink = files.dead_letters(tmp_path / "dead.jsonl")
    flow = DataFlow((step(numbers), broken), dead_letter=sink)
    with pytest.raises(DataFlowFunctionResultError):
        await flow(count=3)
    assert [x async for x in sink.letters()] == []


def test_dead_letter_on_a_source_or_a_non_sink_is_refused(tmp_path: Path) -> None:
    sink = files.dead_letters(tmp_path / "dead.jsonl")
    with pytest.raises(DataFlowDefinitionError, match="a source's failure ends its stream"):
        DataFlow((step(numbers, dead_letter=sink), Shape()))
    with pytest.raises(DataFlowDefinitionError, match="is not a dead-letter sink"):
        step(Shape(), dead_letter="dead.jsonl")
    with pytest.raises(DataFlowDefinitionError, match="is not a dead-letter sink"):
        DataFlow((Shape(),), dead_letter=object())


async def test_replay_of_a_record_from_a_nested_source_says_what_to_do(tmp_path: Path) -> None:
    sink = files.dead_letters(tmp_path / "dead.jsonl")
    # a sequential branch (source, then a step) in a concurrent block
    flow = DataFlow((((step(numbers), Shape()),),), name="nested", dead_letter=sink)
    await flow(count=20)
    with pytest.raises(DataFlowCallError, match="top level of a definition"):
        await flow.replay(sink)


async def test_a_flow_closes_its_sinks(tmp_path: Path) -> None:
    closed: list[str] = []

    class Sink:
        async def put(self, letter: DeadLetter) -> None: ...

        async def letters(self) -> Any:  # pragma: no cover - not iterated here
            yield

        async def remove(self, ids: Any) -> None: ...

        async def aclose(self) -> None:
            closed.append("sink")

    async with DataFlow((Shape(),), dead_letter=Sink()):
        pass
    assert closed == ["sink"]
