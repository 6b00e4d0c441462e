"""Sources: generator steps whose every yielded dict is a record for the steps after them
(records, window, order, what the block passes on, flow.stream(), flat map, closing on
failure and cancellation, and every existing feature with sources)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from asyncdataflow import DataFlow, Retry, args_mapper, hookimpl, inline, step
from asyncdataflow.exceptions import (
    DataFlowDefinitionError,
    DataFlowFunctionResultError,
    DataFlowMergeResultError,
)


class Boom(Exception):
    pass


class Ledger:
    """What a test's source and steps saw: records taken, started and finished, the
    largest number in flight, and whether the source's ``finally`` ran."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.taken = 0
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []
        self.most_in_flight = 0
        self.closed = False
        self.entered: dict[int, asyncio.Event] = {}
        self.filled = asyncio.Event()

    @property
    def in_flight(self) -> int:
        return self.taken - len(self.finished)

    def entered_event(self, i: int) -> asyncio.Event:
        return self.entered.setdefault(i, asyncio.Event())

    async def source(self, n: int) -> AsyncIterator[dict[str, Any]]:
        try:
            for i in range(n):
                # the source is advanced only when the window has room
                assert self.in_flight < self.window, (self.in_flight, self.window)
                self.taken += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                yield {"i": i}
        finally:
            self.closed = True
            self.filled.set()  # the last records need not wait for a full window

    async def first(self, i: int) -> dict[str, Any]:
        self.started.append(i)
        self.entered_event(i).set()
        if self.in_flight >= self.window:
            self.filled.set()
        await self.filled.wait()  # records overlap: the window fills up
        return {"i": i, "seen": i * 10}

    async def last(self, i: int, seen: int) -> dict[str, Any]:
        self.finished.append(i)
        return {"out": seen + 1}


# -- records, order, window -------------------------------------------------------------


@pytest.mark.parametrize("window", [1, 2, 4, 7])
async def test_every_record_runs_in_order_and_the_window_is_never_exceeded(window: int) -> None:
    ledger = Ledger(window)
    flow = DataFlow((step(ledger.source, window=window), ledger.first, ledger.last))
    outs = [r async for r in flow.stream(n=20)]
    assert outs == [{"out": i * 10 + 1} for i in range(20)]
    assert ledger.most_in_flight == window  # the window was used, and never exceeded
    assert ledger.closed


async def test_await_returns_the_last_records_output() -> None:
    ledger = Ledger(3)
    flow = DataFlow((step(ledger.source, window=3), ledger.first, ledger.last))
    assert await flow(n=5) == {"out": 41}
    assert sorted(ledger.finished) == [0, 1, 2, 3, 4]


async def test_records_that_finish_early_wait_for_earlier_ones() -> None:
    gates = [asyncio.Event() for _ in range(4)]
    finished: list[int] = []

    async def numbers() -> AsyncIterator[dict[str, int]]:
        for i in range(4):
            yield {"i": i}

    async def work(i: int) -> dict[str, int]:
        await gates[i].wait()
        finished.append(i)
        if i > 0:
            gates[i - 1].set()  # each record lets the one before it finish
        return {"i": i}

    flow = DataFlow((step(numbers, window=4), work))
    stream = flow.stream()
    first = asyncio.ensure_future(anext(stream))
    gates[3].set()
    assert await first == {"i": 0}
    assert finished == [3, 2, 1, 0]  # finished in reverse, yielded in order
    assert [r async for r in stream] == [{"i": 1}, {"i": 2}, {"i": 3}]


@pytest.mark.parametrize("window", [1, 3])
async def test_a_source_that_yields_nothing_passes_its_input_on(window: int) -> None:
    async def nothing(n: int) -> AsyncIterator[dict[str, int]]:
        for i in range(n):
            yield {"i": i}

    async def prepare(n: int) -> dict[str, int]:
        return {"n": n, "prepared": 1}

    async def after(i: int) -> dict[str, int]:
        raise AssertionError("no record, no run")

    flow = DataFlow((prepare, step(nothing, window=window), after))
    assert await flow(n=0) == {"n": 0, "prepared": 1}
    assert [r async for r in flow.stream(n=0)] == []


async def test_none_is_an_empty_record_and_other_values_are_refused() -> None:
    async def values() -> AsyncIterator[Any]:
        yield None
        yield {"a": 1}
        yield [1, 2]

    async def show(a: int = 0) -> dict[str, int]:
        return {"a": a}

    flow = DataFlow((values, show))
    got: list[Any] = []
    with pytest.raises(DataFlowFunctionResultError) as info:
        async for r in flow.stream():
            got.append(r)
    assert got == [{"a": 0}, {"a": 1}]
    assert "returned list" in str(info.value)
    assert any("after yielding 2 record(s)" in n for n in info.value.__notes__)


async def test_a_flow_without_a_source_streams_its_one_result() -> None:
    async def one(x: int) -> dict[str, int]:
        return {"y": x + 1}

    assert [r async for r in DataFlow((one,)).stream(x=1)] == [{"y": 2}]


# -- failure and cancellation ----------------------------------------------------------


class Scene:
    """20 records; record 7's step fails (or waits to be cancelled); later ones wait."""

    def __init__(self, window: int, fail: bool) -> None:
        self.ledger = Ledger(window)
        self.fail = fail
        self.record_closed: list[int] = []
        self.never = asyncio.Event()

    async def work(self, i: int, seen: int) -> dict[str, int]:
        try:
            if i == 7:
                if self.fail:
                    raise Boom(i)
                await self.never.wait()
            if i > 7:
                await self.never.wait()
            return {"i": i, "seen": seen}
        finally:
            self.record_closed.append(i)

    def flow(self) -> DataFlow:
        lg = self.ledger
        src = step(lg.source, window=lg.window, name="numbers")
        return DataFlow((src, lg.first, self.work, lg.last), name="scene")

    def check_closed(self) -> None:
        lg = self.ledger
        assert lg.closed  # the source's finally ran
        assert max(lg.started) <= 7 + lg.window - 1  # no record past the window
        assert sorted(self.record_closed) == sorted(lg.started)  # in-flight ones awaited
        assert lg.finished == list(range(7))


@pytest.mark.parametrize("window", [1, 4])
async def test_a_failing_record_closes_the_source_before_the_error_arrives(window: int) -> None:
    scene = Scene(window, fail=True)
    with pytest.raises(Boom) as info:
        await scene.flow()(n=20)
    scene.check_closed()  # checked as the exception arrives: nothing left for later
    notes = info.value.__notes__
    assert any("work'" in n and "definition[2]" in n for n in notes), notes
    assert any("record 7 " in n and "'numbers' at definition[0]" in n for n in notes), notes


@pytest.mark.parametrize("window", [1, 4])
async def test_cancelling_the_run_closes_the_source_first(window: int) -> None:
    scene = Scene(window, fail=False)
    task = asyncio.ensure_future(scene.flow()(n=20))
    await scene.ledger.entered_event(7).wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    scene.check_closed()


async def test_a_record_failure_interrupts_a_source_waiting_for_its_next_item() -> None:
    closed = asyncio.Event()
    stuck = asyncio.Event()

    async def endless() -> AsyncIterator[dict[str, int]]:
        try:
            yield {"i": 0}
            stuck.set()
            await asyncio.Event().wait()  # a feed with nothing more to say
        finally:
            closed.set()

    async def work(i: int) -> None:
        await stuck.wait()
        raise Boom(i)

    with pytest.raises(Boom) as info:
        await DataFlow((step(endless, window=2), work))()
    assert closed.is_set()
    assert any("record 0 " in n for n in info.value.__notes__)


async def test_a_failing_source_cancels_the_records_in_flight() -> None:
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def flaky() -> AsyncIterator[dict[str, int]]:
        yield {"i": 0}
        await started.wait()
        raise Boom("source")

    async def work(i: int) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    with pytest.raises(Boom) as info:
        await DataFlow((step(flaky, window=2), work))()
    assert cancelled.is_set()
    notes = info.value.__notes__
    assert any("flaky'" in n and "definition[0]" in n for n in notes), notes
    assert any("after yielding 1 record(s)" in n for n in notes), notes


async def test_leaving_stream_early_closes_the_source() -> None:
    closed = []

    async def endless() -> AsyncIterator[dict[str, int]]:
        try:
            i = 0
            while True:
                yield {"i": i}
                i += 1
        finally:
            closed.append(True)

    async def work(i: int) -> dict[str, int]:
        return {"i": i}

    flow = DataFlow((step(endless, window=3), work))
    got = []
    async with contextlib.aclosing(flow.stream()) as records:
        async for r in records:
            got.append(r["i"])
            if r["i"] == 3:
                break
    assert closed == [True]  # closed by aclose(), not later by garbage collection
    assert got == [0, 1, 2, 3]


async def test_stream_raises_the_runs_exception_unchanged() -> None:
    error = Boom("x")

    async def numbers() -> AsyncIterator[dict[str, int]]:
        yield {"i": 0}
        yield {"i": 1}

    async def work(i: int) -> dict[str, int]:
        if i == 1:
            raise error
        return {"i": i}

    got = []
    with pytest.raises(Boom) as info:
        async for r in DataFlow((numbers, work)).stream():
            got.append(r)
    assert info.value is error
    assert got == [{"i": 0}]


# -- sync sources ------------------------------------------------------------------------


async def test_a_sync_generator_is_advanced_in_a_thread_and_closed() -> None:
    threads: set[bool] = set()
    closed = threading.Event()

    def rows(n: int) -> Iterator[dict[str, int]]:
        try:
            for i in range(n):
                threads.add(threading.current_thread() is threading.main_thread())
                yield {"i": i}
        finally:
            closed.set()

    async def work(i: int) -> dict[str, int]:
        if i == 3:
            raise Boom(i)
        return {"i": i}

    flow = DataFlow((step(rows, window=2), work))
    with pytest.raises(Boom):
        await flow(n=10)
    assert closed.is_set()
    assert threads == {False}


async def test_an_inline_sync_generator_runs_on_the_loop() -> None:
    @inline
    def rows(n: int) -> Iterator[dict[str, int]]:
        for i in range(n):
            assert threading.current_thread() is threading.main_thread()
            yield {"i": i}

    async def work(i: int) -> dict[str, int]:
        return {"i": i}

    assert [r async for r in DataFlow((rows, work)).stream(n=3)] == [{"i": i} for i in range(3)]


# -- flat map, branches, nested flows ----------------------------------------------------


async def test_a_source_inside_a_record_flat_maps() -> None:
    async def pages(n: int) -> AsyncIterator[dict[str, int]]:
        for p in range(n):
            yield {"page": p}

    async def items(page: int) -> AsyncIterator[dict[str, int]]:
        for k in range(3):
            yield {"page": page, "k": k}

    async def label(page: int, k: int) -> dict[str, str]:
        return {"id": f"{page}.{k}"}

    for w1, w2 in [(1, 1), (2, 1), (1, 3), (3, 2)]:
        flow = DataFlow((step(pages, window=w1), step(items, window=w2), label))
        ids = [r["id"] async for r in flow.stream(n=4)]
        assert ids == [f"{p}.{k}" for p in range(4) for k in range(3)], (w1, w2)
        assert await flow(n=4) == {"id": "3.2"}


async def test_a_source_inside_a_concurrent_branch() -> None:
    async def numbers(n: int) -> AsyncIterator[dict[str, int]]:
        for i in range(n):
            yield {"i": i}

    async def total_of(i: int) -> dict[str, int]:
        seen.append(i)
        return {"last": i}

    async def other(n: int) -> dict[str, int]:
        return {"other": n}

    async def join(last: int, other: int) -> dict[str, int]:
        return {"sum": last + other}

    seen: list[int] = []
    flow = DataFlow((((step(numbers, window=2), total_of), other), join))
    assert await flow(n=4) == {"sum": 3 + 4}
    assert seen == [0, 1, 2, 3]
    alone = DataFlow(((numbers, other),))  # a source alone in its branch
    assert await alone(n=4) == {"i": 3, "other": 4}
    # the flow's own sequence has no source: stream() yields the one result
    assert [r async for r in flow.stream(n=2)] == [{"sum": 3}]


async def test_a_nested_flow_with_a_source_passes_on_its_last_record() -> None:
    async def numbers(n: int) -> AsyncIterator[dict[str, int]]:
        for i in range(n):
            yield {"i": i}

    async def square(i: int) -> dict[str, int]:
        return {"sq": i * i}

    async def after(sq: int) -> dict[str, int]:
        return {"final": sq}

    inner = DataFlow((numbers, square))
    outer = DataFlow((inner, after))
    assert await outer(n=4) == {"final": 9}


# -- visibility, args_mapper, routing ----------------------------------------------------


async def test_visibility_rules_apply_to_records() -> None:
    async def numbers(n: int) -> AsyncIterator[dict[str, int]]:
        for i in range(n):
            yield {"i": i}

    async def use(i: int, n: int = -1) -> dict[str, int]:
        return {"j": i + n}

    initial = DataFlow((numbers, use), args_visibility="initial")
    assert [r async for r in initial.stream(n=2)] == [{"n": 2, "j": 2}, {"n": 2, "j": 3}]
    previous = DataFlow((numbers, use))
    assert [r async for r in previous.stream(n=2)] == [{"j": -1}, {"j": 0}]
    every = DataFlow((numbers, use), args_visibility="all")
    assert await every(n=2) == {"n": 2, "i": 1, "j": 3}

    async def clash(n: int) -> AsyncIterator[dict[str, int]]:
        yield {"n": n + 1}

    with pytest.raises(DataFlowMergeResultError) as info:
        await DataFlow((clash, use), args_visibility="all")(n=1)
    assert any("record 0 " in n for n in info.value.__notes__)


async def test_args_mapper_and_partial_wrap_a_source() -> None:
    async def count(start: int, stop: int) -> AsyncIterator[int]:
        for v in range(start, stop):
            yield v

    def rows(limit: int) -> Iterator[tuple[int, int]]:
        for v in range(limit):
            yield v, v * v

    async def show(value: int) -> dict[str, int]:
        return {"value": value}

    mapped = args_mapper(functools.partial(count, start=1), input={"stop": "n"}, output="value")
    assert [r async for r in DataFlow((mapped, show)).stream(n=4)] == [
        {"value": v} for v in (1, 2, 3)
    ]
    pairs = args_mapper(rows, output=["value", "square"])
    assert await DataFlow((pairs,))(limit=3) == {"value": 2, "square": 4}


async def test_a_source_not_taken_is_passed_over() -> None:
    async def start(x: int) -> dict[str, int]:
        return {"x": x}

    async def numbers(n: int) -> AsyncIterator[dict[str, int]]:
        yield {"x": n}

    async def end(x: int) -> dict[str, int]:
        return {"end": x}

    flow = DataFlow((start, numbers, end))
    assert await flow(x=5) == {"end": 5}  # no "n": the source is passed over
    assert [r async for r in flow.stream(x=5)] == [{"end": 5}]


# -- step options, hooks, loops, map -----------------------------------------------------


async def test_limit_timeout_and_retry_on_a_records_steps() -> None:
    running = 0
    most = 0
    attempts: dict[int, int] = {}
    release = asyncio.Event()

    async def numbers(n: int) -> AsyncIterator[dict[str, int]]:
        for i in range(n):
            yield {"i": i}

    async def limited(i: int) -> dict[str, int]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        if running == 2:
            release.set()
        await release.wait()
        running -= 1
        return {"i": i}

    async def flaky(i: int) -> dict[str, int]:
        attempts[i] = attempts.get(i, 0) + 1
        if attempts[i] == 1:
            raise Boom(i)
        return {"i": i}

    async def slow(i: int) -> dict[str, int]:
        if i == 5:
            await asyncio.Event().wait()
        return {"i": i}

    retry = Retry(attempts=2, backoff=0, jitter=False)
    flow = DataFlow(
        (
            step(numbers, window=6),
            step(limited, limit=2),
            step(flaky, retry=retry),
            step(slow, timeout=0.05),
        )
    )
    with pytest.raises(TimeoutError) as info:
        await flow(n=8)
    assert most == 2
    assert all(attempts[i] == 2 for i in range(5))
    assert any("record 5 " in n for n in info.value.__notes__)


async def test_a_source_is_retried_only_before_its_first_record() -> None:
    calls = []

    async def shaky(fail_after: int) -> AsyncIterator[dict[str, int]]:
        calls.append(fail_after)
        if len(calls) == 1:
            raise Boom("before any record")
        for i in range(3):
            if i == fail_after:
                raise Boom("after records")
            yield {"i": i}

    async def work(i: int) -> dict[str, int]:
        return {"i": i}

    retry = Retry(attempts=3, backoff=0, jitter=False)
    flow = DataFlow((step(shaky, retry=retry), work))
    assert await flow(fail_after=99) == {"i": 2}
    assert len(calls) == 2  # the failure before its first record was retried

    calls.clear()
    calls.append(0)  # no failure at the start this time
    with pytest.raises(Boom) as info:
        await flow(fail_after=2)
    assert len(calls) == 2  # not started again: records 0 and 1 were passed on
    assert any("not retried" in n and "2 record(s)" in n for n in info.value.__notes__)


async def test_a_source_timeout_bounds_each_wait_for_an_item() -> None:
    async def stalls() -> AsyncIterator[dict[str, int]]:
        yield {"i": 0}
        await asyncio.Event().wait()
        yield {"i": 1}

    async def work(i: int) -> dict[str, int]:
        return {"i": i}

    with pytest.raises(TimeoutError):
        await DataFlow((step(stalls, timeout=0.05), work))()


class Seen:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, tuple[int, ...]]] = []

    @hookimpl
    def before_step_run(self, run: Any, step: Any) -> None:
        self.events.append(("start", step.name, run.record))

    @hookimpl
    def after_step_run(self, run: Any, step: Any) -> None:
        self.events.append(("end", step.name, run.record))


@pytest.mark.parametrize("window", [1, 3])
async def test_plugins_see_every_records_steps_with_its_index(window: int) -> None:
    async def pages(n: int) -> AsyncIterator[dict[str, int]]:
        for p in range(n):
            yield {"p": p}

    async def items(p: int) -> AsyncIterator[dict[str, int]]:
        for k in range(2):
            yield {"p": p, "k": k}

    async def work(p: int, k: int) -> dict[str, int]:
        return {"p": p, "k": k}

    seen = Seen()
    flow = DataFlow((step(pages, window=window), items, work), plugins=[seen])
    assert len([r async for r in flow.stream(n=3)]) == 6
    starts = sorted(e[1:] for e in seen.events if e[0] == "start")
    expected = [("items", (p,)) for p in range(3)] + [("pages", ())]
    expected += [("work", (p, k)) for p in range(3) for k in range(2)]
    assert [(name.rsplit(".", 1)[-1], rec) for name, rec in starts] == sorted(expected)
    assert len([e for e in seen.events if e[0] == "end"]) == len(starts)


async def test_infinity_loop_and_map_run_streaming_flows() -> None:
    async def numbers(n: int) -> AsyncIterator[dict[str, int]]:
        for i in range(n):
            yield {"i": i}

    async def work(i: int) -> dict[str, int]:
        if iterations and i == 0:
            flow.stop()
        return {"i": i}

    iterations: list[int] = []
    flow = DataFlow((step(numbers, window=2), work), infinity_loop=True)
    iterations.append(1)
    assert await flow(n=3) == {"i": 2}
    plain = DataFlow((step(numbers, window=2), work))
    iterations.clear()
    got = [r async for r in plain.map([{"n": 1}, {"n": 2}, {"n": 3}], concurrency=2)]
    assert got == [{"i": 0}, {"i": 1}, {"i": 2}]


# -- definition ------------------------------------------------------------------------


def test_window_is_for_sources_only() -> None:
    async def plain(x: int) -> None:
        return None

    with pytest.raises(DataFlowDefinitionError, match=r"definition\[0\].*window= is for a source"):
        DataFlow((step(plain, window=2),))
    with pytest.raises(DataFlowDefinitionError, match="window must be an int >= 1"):
        step(plain, window=0)


def test_rate_and_breaker_are_for_the_steps_a_source_feeds() -> None:
    from asyncdataflow import Breaker

    async def numbers() -> AsyncIterator[dict[str, int]]:
        yield {"i": 0}

    for options in ({"rate": 5}, {"breaker": Breaker()}):
        with pytest.raises(DataFlowDefinitionError, match=r"definition\[0\].*a source is advanced"):
            DataFlow((step(numbers, **options),))  # type: ignore[arg-type]


def test_the_graph_marks_a_source() -> None:
    async def numbers(n: int) -> AsyncIterator[dict[str, int]]:
        yield {"i": n}

    async def work(i: int) -> None:
        return None

    flow = DataFlow((step(numbers, window=4), work))
    assert "source, window 4" in flow.to_mermaid()
    assert "source, window 4" in flow.to_dot()
    assert "source, window" not in DataFlow((work,)).to_mermaid()


async def test_tracing_gives_each_records_step_its_own_span() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from asyncdataflow.plugins.tracing import TracingPlugin

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    both = asyncio.Event()
    inside = 0

    async def numbers(n: int) -> AsyncIterator[dict[str, int]]:
        for i in range(n):
            yield {"i": i}

    async def work(i: int) -> dict[str, int]:
        nonlocal inside
        inside += 1
        if inside == 2:
            both.set()
        await both.wait()  # two records' spans are open at once
        return {"i": i}

    plugin = TracingPlugin(provider)
    flow = DataFlow((step(numbers, window=2), step(work, name="work")), plugins=[plugin])
    assert await flow(n=4) == {"i": 3}
    provider.shutdown()
    spans = [s for s in exporter.get_finished_spans() if s.name == "work"]
    assert sorted(tuple(s.attributes["asyncdataflow.record"]) for s in spans) == [  # type: ignore[arg-type,index]
        (0,),
        (1,),
        (2,),
        (3,),
    ]
    assert len({s.context.span_id for s in spans}) == 4  # type: ignore[union-attr]
    assert plugin._steps == {}  # every span ended


async def test_the_log_plugin_names_the_record(caplog: pytest.LogCaptureFixture) -> None:
    from asyncdataflow.plugins import log

    async def numbers(n: int) -> AsyncIterator[dict[str, int]]:
        for i in range(n):
            yield {"i": i}

    async def work(i: int) -> dict[str, int]:
        return {"i": i}

    flow = DataFlow((numbers, step(work, name="work")), plugins=[log])
    with caplog.at_level("DEBUG", logger=log.LOGGER_NAME):
        await flow(n=2)
    records = [r.adf_record for r in caplog.records if getattr(r, "adf_step", None) == "work"]
    assert sorted(set(records)) == [(0,), (1,)]


def test_a_flow_without_sources_generates_no_stream_code() -> None:
    async def one(x: int) -> dict[str, int]:
        return {"x": x}

    async def two(x: int) -> dict[str, int]:
        return {"y": x}

    plain = DataFlow((one, (two, one), two))
    assert "emit" not in plain.source
    assert "SRC" not in plain.source
    assert "async def seq_1(d, run, init):" in plain.source

    async def numbers(n: int) -> AsyncIterator[dict[str, int]]:
        yield {"x": n}

    streaming = DataFlow((numbers, one, two))
    assert "emit=None" in streaming.source
    assert "SRC" in streaming.source
