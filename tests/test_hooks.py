"""The hooks: which are called, in which order, with which arguments; global and per-flow
plugins; failing observers; the retry decision hook; and no hook cost without plugins."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import re
import runpy
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _protect_scenario import Throttled, scenario

import asyncdataflow
from asyncdataflow import DataFlow, Rate, Retry, hookimpl, hookspecs, step
from asyncdataflow.exceptions import (
    DataFlowFunctionResultError,
)
from asyncdataflow.info import RunInfo, StepInfo

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
DOC_EXAMPLES = re.findall(r"```python\n(.*?)```", DOCS, flags=re.S)
CURRENT_STEP: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "CURRENT_STEP", default=None
)


def hook_names() -> list[str]:
    return sorted(
        name
        for name, func in vars(hookspecs).items()
        if callable(func) and hasattr(func, f"{hookspecs.PROJECT_NAME}_spec")
    )


class Recorder:
    """Implements every observer hook with every argument, and records the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def names(self) -> list[tuple[str, str | None]]:
        return [(n, kw["step"].name if "step" in kw else None) for n, kw in self.calls]

    def of(self, hook: str) -> list[dict[str, Any]]:
        return [kw for n, kw in self.calls if n == hook]

    @hookimpl
    def before_flow_run(self, flow: Any, run: Any, kwargs: Any) -> None:
        self.calls.append(("before_flow_run", {"flow": flow, "run": run, "kwargs": kwargs}))

    @hookimpl
    def after_flow_run(self, flow: Any, run: Any, result: Any, error: Any, duration: float) -> None:
        self.calls.append(
            (
                "after_flow_run",
                {"flow": flow, "run": run, "result": result, "error": error, "duration": duration},
            )
        )

    @hookimpl
    def before_step_run(self, flow: Any, run: Any, step: Any, attempt: int, input: Any) -> None:
        CURRENT_STEP.set(step.name)
        self.calls.append(
            (
                "before_step_run",
                {
                    "flow": flow,
                    "run": run,
                    "step": step,
                    "attempt": attempt,
                    "input": dict(input),
                    "task": asyncio.current_task(),
                },
            )
        )

    @hookimpl
    def after_step_run(
        self, flow: Any, run: Any, step: Any, result: Any, duration: float, attempt: int
    ) -> None:
        self.calls.append(
            (
                "after_step_run",
                {
                    "flow": flow,
                    "run": run,
                    "step": step,
                    "result": result,
                    "duration": duration,
                    "attempt": attempt,
                    "task": asyncio.current_task(),
                },
            )
        )

    @hookimpl
    def on_step_error(
        self,
        flow: Any,
        run: Any,
        step: Any,
        error: Any,
        attempt: int,
        duration: float,
        final: bool,
        delay: float | None,
    ) -> None:
        self.calls.append(
            (
                "on_step_error",
                {
                    "flow": flow,
                    "run": run,
                    "step": step,
                    "error": error,
                    "attempt": attempt,
                    "duration": duration,
                    "final": final,
                    "delay": delay,
                    "task": asyncio.current_task(),
                },
            )
        )

    @hookimpl
    def on_step_skipped(self, flow: Any, run: Any, step: Any, missing: Any, available: Any) -> None:
        self.calls.append(
            (
                "on_step_skipped",
                {
                    "flow": flow,
                    "run": run,
                    "step": step,
                    "missing": missing,
                    "available": available,
                },
            )
        )

    @hookimpl
    def on_step_retry(
        self, flow: Any, run: Any, step: Any, error: Any, attempt: int, delay: float
    ) -> None:
        self.calls.append(
            (
                "on_step_retry",
                {
                    "flow": flow,
                    "run": run,
                    "step": step,
                    "error": error,
                    "attempt": attempt,
                    "delay": delay,
                },
            )
        )

    @hookimpl
    def after_loop_iteration(
        self, flow: Any, run: Any, iteration: int, result: Any, error: Any, duration: float
    ) -> None:
        self.calls.append(
            (
                "after_loop_iteration",
                {
                    "flow": flow,
                    "run": run,
                    "iteration": iteration,
                    "result": result,
                    "error": error,
                    "duration": duration,
                },
            )
        )


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A Recorder registered for every flow, always unregistered afterwards."""
    rec = Recorder()
    asyncdataflow.register_plugin(rec)
    try:
        yield rec
    finally:
        asyncdataflow.unregister_plugin(rec)


# -- the steps of the reference flow --------------------------------------------------


async def start(x: int) -> dict[str, Any]:
    return {"y": x + 1}


async def left(y: int) -> dict[str, Any]:
    return {"left": y * 10}


def in_thread(y: int) -> dict[str, Any]:
    return {
        "thread": threading.current_thread() is not threading.main_thread(),
        "seen": CURRENT_STEP.get(),
    }


async def never(q: int) -> dict[str, Any]:  # pragma: no cover - never taken
    return {"q": q}


class Boom(Exception):
    pass


def make_flaky(failures: int) -> Any:
    calls = {"n": 0}

    async def flaky(left: int, thread: bool, seen: str) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise ConnectionError(f"flaky failure {calls['n']}")
        return {"total": left}

    return flaky


async def boom(total: int) -> dict[str, Any]:
    raise Boom("boom")


def reference_flow(plugins: tuple[Any, ...] = ()) -> DataFlow:
    return DataFlow(
        (
            start,
            (left, in_thread, never),
            step(make_flaky(1), name="flaky", retry=Retry(attempts=3, backoff=0.001, jitter=False)),
            boom,
        ),
        name="reference",
        plugins=plugins,
    )


async def test_every_hook_in_order_with_its_arguments(recorder: Recorder) -> None:
    flow = reference_flow()
    with pytest.raises(Boom) as caught:
        await flow(x=1)

    assert recorder.names() == [
        ("before_flow_run", None),
        ("before_step_run", "start"),
        ("after_step_run", "start"),
        ("on_step_skipped", "never"),
        ("before_step_run", "left"),
        ("after_step_run", "left"),
        ("before_step_run", "in_thread"),
        ("after_step_run", "in_thread"),
        ("before_step_run", "flaky"),
        ("on_step_error", "flaky"),
        ("on_step_retry", "flaky"),
        ("before_step_run", "flaky"),
        ("after_step_run", "flaky"),
        ("before_step_run", "boom"),
        ("on_step_error", "boom"),
        ("after_flow_run", None),
    ]
    # one flow, one run object, throughout
    run = recorder.calls[0][1]["run"]
    assert isinstance(run, RunInfo)
    assert run.kwargs == {"x": 1}
    assert run.iteration is None
    for _, kw in recorder.calls:
        assert kw["flow"] is flow
        assert kw["run"] is run

    assert recorder.of("before_flow_run")[0]["kwargs"] == {"x": 1}

    starts = recorder.of("before_step_run")
    assert [(s["step"].name, s["attempt"], s["input"]) for s in starts] == [
        ("start", 1, {"x": 1}),
        ("left", 1, {"y": 2}),
        ("in_thread", 1, {"y": 2}),
        ("flaky", 1, {"left": 20, "thread": True, "seen": "in_thread"}),
        ("flaky", 2, {"left": 20, "thread": True, "seen": "in_thread"}),
        ("boom", 1, {"total": 20}),
    ]
    for s in starts:
        assert isinstance(s["step"], StepInfo)
    paths = {s["step"].name: (s["step"].path, s["step"].parent) for s in starts}
    assert paths == {
        "start": ("definition[0]", "definition"),
        "left": ("definition[1][0]", "definition[1]"),
        "in_thread": ("definition[1][1]", "definition[1]"),
        "flaky": ("definition[2]", "definition"),
        "boom": ("definition[3]", "definition"),
    }

    done = recorder.of("after_step_run")
    assert [(d["step"].name, d["result"], d["attempt"]) for d in done] == [
        ("start", {"y": 2}, 1),
        ("left", {"left": 20}, 1),
        ("in_thread", {"thread": True, "seen": "in_thread"}, 1),
        ("flaky", {"total": 20}, 2),
    ]
    assert all(isinstance(d["duration"], float) and d["duration"] >= 0 for d in done)

    # the two branches ran in their own tasks, and each hook pair in the step's task
    by_step = {s["step"].name: s["task"] for s in starts}
    assert by_step["left"] is not by_step["in_thread"]
    assert by_step["left"] is not by_step["start"]
    for d in done:
        assert d["task"] is by_step[d["step"].name]

    (skipped,) = recorder.of("on_step_skipped")
    assert skipped["step"].path == "definition[1][2]"
    assert skipped["missing"] == ("q",)
    assert skipped["available"] == ("y",)

    errors = recorder.of("on_step_error")
    assert [(e["step"].name, e["attempt"], type(e["error"])) for e in errors] == [
        ("flaky", 1, ConnectionError),
        ("boom", 1, Boom),
    ]
    assert errors[1]["error"] is caught.value
    assert all(e["duration"] >= 0 for e in errors)

    (retry,) = recorder.of("on_step_retry")
    assert retry["attempt"] == 1
    assert retry["delay"] == 0.001
    assert retry["error"] is errors[0]["error"]
    assert retry["step"].retry == Retry(attempts=3, backoff=0.001, jitter=False)

    (after,) = recorder.of("after_flow_run")
    assert after["result"] is None
    assert after["error"] is caught.value
    assert after["duration"] >= max(d["duration"] for d in done)


async def test_after_flow_run_gets_the_result(recorder: Recorder) -> None:
    flow = DataFlow((start, left), name="ok")
    result = await flow(x=4)
    assert result == {"left": 50}
    (after,) = recorder.of("after_flow_run")
    assert after["result"] == {"left": 50}
    assert after["error"] is None
    assert after["duration"] > 0


async def test_concurrent_runs_keep_their_own_run(recorder: Recorder) -> None:
    flow = DataFlow((start, (left, in_thread), step(make_flaky(0), name="flaky")))
    results = await asyncio.gather(*(flow(x=i) for i in range(20)))
    assert results == [{"total": (i + 1) * 10} for i in range(20)]

    runs = {kw["run"].id: kw["run"] for n, kw in recorder.calls if n == "before_flow_run"}
    assert len(runs) == 20
    per_run: dict[str, list[str]] = {}
    for name, kw in recorder.calls:
        run = kw["run"]
        assert runs[run.id] is run
        per_run.setdefault(run.id, []).append(name)
        x = run.kwargs["x"]
        if name == "before_step_run" and kw["step"].name in ("left", "in_thread"):
            assert kw["input"] == {"y": x + 1}
        if name == "after_step_run":
            expected = {
                "start": {"y": x + 1},
                "left": {"left": (x + 1) * 10},
                "in_thread": {"thread": True, "seen": "in_thread"},
                "flaky": {"total": (x + 1) * 10},
            }[kw["step"].name]
            assert kw["result"] == expected
    for names in per_run.values():
        assert names[0] == "before_flow_run"
        assert names[-1] == "after_flow_run"
        assert names.count("before_step_run") == 4
        assert names.count("after_step_run") == 4


async def test_a_thread_run_step_sees_context_set_in_before_step_run(
    recorder: Recorder,
) -> None:
    result = await DataFlow((in_thread,))(y=1)
    assert result == {"thread": True, "seen": "in_thread"}


async def test_after_loop_iteration_once_per_iteration(recorder: Recorder) -> None:
    count = {"n": 0}

    async def tick(x: int) -> dict[str, Any]:
        count["n"] += 1
        if count["n"] == 3:
            flow.stop()
        return {"n": count["n"]}

    flow = DataFlow((tick,), infinity_loop=True, name="loop")
    assert await flow(x=0) == {"n": 3}
    iterations = recorder.of("after_loop_iteration")
    assert [(i["iteration"], i["result"], i["error"]) for i in iterations] == [
        (1, {"n": 1}, None),
        (2, {"n": 2}, None),
        (3, {"n": 3}, None),
    ]
    assert len({i["run"].id for i in iterations}) == 3
    assert [i["run"].iteration for i in iterations] == [1, 2, 3]
    assert all(i["flow"] is flow and i["duration"] >= 0 for i in iterations)
    # each iteration is one run: its flow and step hooks carry the same run
    flow_runs = [kw["run"] for n, kw in recorder.calls if n == "before_flow_run"]
    assert [r.id for r in flow_runs] == [i["run"].id for i in iterations]


async def test_after_loop_iteration_reports_the_failure(recorder: Recorder) -> None:
    async def tick(x: int) -> dict[str, Any]:
        raise Boom("loop")

    flow = DataFlow((tick,), infinity_loop=True)
    with pytest.raises(Boom) as caught:
        await flow(x=0)
    (iteration,) = recorder.of("after_loop_iteration")
    assert iteration["iteration"] == 1
    assert iteration["result"] is None
    assert iteration["error"] is caught.value


async def test_a_block_not_taken_reports_each_of_its_steps(recorder: Recorder) -> None:
    async def a(x: int) -> dict[str, Any]:
        return {"y": x}

    async def b(q: int) -> dict[str, Any]:  # pragma: no cover - never taken
        return {}

    async def c(z: int = 0) -> dict[str, Any]:  # pragma: no cover - never taken
        return {}

    flow = DataFlow((a, (left, (b, c))))
    assert await flow(x=1) == {"left": 10}
    skipped = {kw["step"].path: kw["missing"] for kw in recorder.of("on_step_skipped")}
    # b decides the nested sequential block; c, whose block was not taken, misses nothing
    assert skipped == {"definition[1][1][0]": ("q",), "definition[1][1][1]": ()}


# -- registration -------------------------------------------------------------------


async def test_without_plugins_no_hook_is_on_the_path() -> None:
    # steps without options are called inline; nothing reports a skipped step
    flow = DataFlow((start, (left, in_thread, never)))
    source = flow.source
    assert "_skipped" not in source
    assert not re.search(r"await R\d+\(", source)
    assert await flow(x=1) == {"left": 20, "thread": True, "seen": None}
    # with a recorder, every step goes through the instrumented runner
    rec = Recorder()
    observed = DataFlow((start, (left, in_thread, never)), plugins=[rec])
    assert len(re.findall(r"await R\d+\(", observed.source)) == 4
    assert "_skipped" in observed.source


async def test_global_plugin_is_picked_up_and_dropped_by_existing_flows() -> None:
    flow = DataFlow((start,))
    await flow(x=1)
    rec = Recorder()
    asyncdataflow.register_plugin(rec)
    try:
        await flow(x=1)
        assert [n for n, _ in rec.calls] == [
            "before_flow_run",
            "before_step_run",
            "after_step_run",
            "after_flow_run",
        ]
    finally:
        asyncdataflow.unregister_plugin(rec)
    await flow(x=1)
    assert len(rec.calls) == 4
    assert "await R" not in flow.source


async def test_per_flow_plugin_sees_only_its_flow() -> None:
    rec = Recorder()
    mine = DataFlow((start,), plugins=[rec])
    other = DataFlow((start,))
    await other(x=1)
    assert rec.calls == []
    await mine(x=1)
    assert rec.calls[0][0] == "before_flow_run"
    assert all(kw["flow"] is mine for _, kw in rec.calls)


async def test_per_flow_and_global_plugins_are_both_called(recorder: Recorder) -> None:
    own = Recorder()
    await DataFlow((start,), plugins=[own])(x=1)
    assert recorder.names() == own.names()
    assert len(own.calls) == 4


class Broken:
    @hookimpl
    def before_step_run(self, step: Any) -> None:
        raise RuntimeError(f"observer broke on {step.name}")

    @hookimpl
    def after_flow_run(self) -> None:
        raise ValueError("observer broke again")


async def test_a_failing_observer_is_logged_and_never_breaks_the_run(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Broken()
    flow = DataFlow((start, left), plugins=[broken])
    with caplog.at_level(logging.ERROR, logger="asyncdataflow"):
        assert await flow(x=1) == {"left": 20}
    failures = [r for r in caplog.records if r.name == "asyncdataflow"]
    assert [r.getMessage().split(" failed in hook ")[1] for r in failures] == [
        "before_step_run",
        "before_step_run",
        "after_flow_run",
    ]
    assert all(r.exc_info is not None for r in failures)
    assert isinstance(failures[0].exc_info[1], RuntimeError)  # type: ignore[index]
    # the other plugin still saw every event
    assert [n for n, _ in recorder.calls].count("after_step_run") == 2


# -- the retry decision ---------------------------------------------------------------


async def test_step_retry_delay_first_answer_wins(recorder: Recorder) -> None:
    asked: list[tuple[str, int, type[BaseException]]] = []

    class Decider:
        @hookimpl
        def step_retry_delay(
            self, flow: Any, run: Any, step: Any, error: BaseException, attempt: int
        ) -> float | None:
            asked.append((step.name, attempt, type(error)))
            # retries a KeyError the policy does not list; leaves the rest to the policy
            return 0.0 if isinstance(error, KeyError) else None

    calls = {"n": 0}

    async def picky(x: int) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("not in the policy")
        if calls["n"] == 2:
            raise ConnectionError("in the policy")
        return {"n": calls["n"]}

    policy = Retry(attempts=5, backoff=0.002, jitter=False, on=(ConnectionError,))
    flow = DataFlow((step(picky, name="picky", retry=policy),), plugins=[Decider()])
    assert await flow(x=1) == {"n": 3}
    assert asked == [("picky", 1, KeyError), ("picky", 2, ConnectionError)]
    # the plugin's 0.0 for the KeyError, then the policy's backoff for attempt 2
    assert [r["delay"] for r in recorder.of("on_step_retry")] == [0.0, 0.004]


async def test_step_retry_delay_is_not_asked_without_a_policy() -> None:
    asked: list[int] = []

    class Decider:
        @hookimpl
        def step_retry_delay(self, attempt: int) -> float | None:
            asked.append(attempt)
            return 0.0

    async def fails(x: int) -> dict[str, Any]:
        raise Boom("no policy")

    with pytest.raises(Boom):
        await DataFlow((fails,), plugins=[Decider()])(x=1)
    assert asked == []


async def test_a_failing_retry_decider_is_logged_and_the_error_propagates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class BadDecider:
        @hookimpl(tryfirst=True)
        def step_retry_delay(self) -> float | None:
            raise RuntimeError("decider broke")

    calls = {"n": 0}

    async def fails(x: int) -> dict[str, Any]:
        calls["n"] += 1
        raise Boom("original")

    flow = DataFlow((step(fails, retry=Retry(attempts=3, backoff=0)),), plugins=[BadDecider()])
    with caplog.at_level(logging.ERROR, logger="asyncdataflow"):
        with pytest.raises(Boom, match="original"):
            await flow(x=1)
    assert calls["n"] == 1
    assert any("step_retry_delay" in r.getMessage() for r in caplog.records)


async def test_step_hooks_alone_get_a_run() -> None:
    seen: list[Any] = []

    class StepOnly:
        @hookimpl
        def before_step_run(self, run: Any) -> None:
            seen.append(run)

    await DataFlow((start, left), plugins=[StepOnly()])(x=1)
    assert len(seen) == 2
    assert isinstance(seen[0], RunInfo)
    assert seen[0] is seen[1]


# -- pluggy owns registration and dispatch -----------------------------------------


async def test_pluggys_own_register_unregister_and_set_blocked_reach_a_built_flow() -> None:
    pm = asyncdataflow.get_plugin_manager()
    flow = DataFlow((start,))
    assert await flow(x=1) == {"y": 2}
    rec = Recorder()
    pm.register(rec, name="test-recorder")
    try:
        await flow(x=1)
        assert [n for n, _ in rec.calls][:2] == ["before_flow_run", "before_step_run"]
        seen = len(rec.calls)
        pm.set_blocked("test-recorder")
        await flow(x=1)
        assert len(rec.calls) == seen
        assert "await R" not in flow.source  # rebuilt without hooks
        pm.unblock("test-recorder")
        pm.register(rec, name="test-recorder")
        await flow(x=1)
        assert len(rec.calls) == 2 * seen
    finally:
        if pm.is_registered(rec):
            pm.unregister(rec)
    await flow(x=1)
    assert len(rec.calls) == 2 * seen


async def test_hook_calls_go_through_pluggy_and_its_monitoring(recorder: Recorder) -> None:
    seen: list[tuple[str, list[str]]] = []
    own = Recorder()

    def before(hook: str, impls: Any, kwargs: Any) -> None:
        seen.append((hook, [i.plugin_name for i in impls]))

    def after(outcome: Any, hook: str, impls: Any, kwargs: Any) -> None:
        pass

    undo = asyncdataflow.get_plugin_manager().add_hookcall_monitoring(before, after)
    try:  # a flow with plugins of its own is seen by the global manager's monitoring too
        await DataFlow((start,), plugins=[own])(x=1)
    finally:
        undo()
    assert [hook for hook, _ in seen] == [
        *["before_flow_run"] * 2,
        *["before_step_run"] * 2,
        *["after_step_run"] * 2,
        *["after_flow_run"] * 2,
    ]
    assert all(len(names) == 1 for _, names in seen)  # one implementation per call
    assert len(own.calls) == len(recorder.calls) == 4


async def test_monitoring_added_after_a_flow_is_built_sees_its_next_hook_calls(
    recorder: Recorder,
) -> None:
    flow = DataFlow((start,))
    await flow(x=1)  # built, its hooks looked up
    seen: list[str] = []
    undo = asyncdataflow.get_plugin_manager().add_hookcall_monitoring(
        lambda hook, impls, kwargs: seen.append(hook), lambda *args: None
    )
    try:
        await flow(x=1)
    finally:
        undo()
    assert seen == ["before_flow_run", "before_step_run", "after_step_run", "after_flow_run"]
    await flow(x=1)  # monitoring removed: the calls go on, unseen
    assert len(seen) == 4
    assert len(recorder.of("after_flow_run")) == 3


async def test_an_implementation_gets_its_defaulted_arguments_as_pluggy_passes_them() -> None:
    got: list[tuple[Any, ...]] = []

    class Defaults:
        @hookimpl
        def after_step_run(self, step: Any, attempt: int = 0, unknown: str = "own") -> None:
            got.append((step.name, attempt, unknown))

    await DataFlow((start,), plugins=[Defaults()])(x=1)
    assert got == [("start", 1, "own")]


async def test_a_wrapper_of_the_retry_decision_wraps_it() -> None:
    answers: list[float | None] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def step_retry_delay(self) -> Any:
            answer = yield
            answers.append(answer)
            return answer

    flow = DataFlow(
        (step(make_flaky(1), retry=Retry(attempts=2, backoff=0.001, jitter=False)),),
        plugins=[Wrapper()],
    )
    assert await flow(left=1, thread=False, seen="") == {"total": 1}
    assert answers == [0.001]


async def test_run_is_never_none_also_when_only_the_retry_decision_is_asked() -> None:
    runs: list[Any] = []

    class Decider:
        @hookimpl
        def step_retry_delay(self, run: Any) -> float | None:
            runs.append(run)
            return None

    flow = DataFlow(
        (step(make_flaky(5), retry=Retry(attempts=3, backoff=0)),),
        plugins=[Decider()],
    )
    with pytest.raises(ConnectionError):
        await flow(left=1, thread=False, seen="")
    assert len(runs) == 3
    assert all(isinstance(r, RunInfo) for r in runs)
    assert runs[0] is runs[1] is runs[2]
    # without any plugin of its own the built-in decider gets a run as well
    asked: list[Any] = []

    class Spy:
        @hookimpl(tryfirst=True)
        def step_retry_delay(self, run: Any) -> None:
            asked.append(run)

    asyncdataflow.register_plugin(Spy(), name="spy")
    try:
        quiet = DataFlow((step(make_flaky(1), retry=Retry(attempts=2, backoff=0)),))
        await quiet(left=1, thread=False, seen="")
    finally:
        asyncdataflow.unregister_plugin(name="spy")
    assert len(asked) == 1
    assert isinstance(asked[0], RunInfo)


async def test_observers_are_told_the_runners_retry_decision(recorder: Recorder) -> None:
    class ReturnsANumber:
        async def __call__(self, total: int) -> Any:
            return 5

    flow = DataFlow(
        (
            step(make_flaky(1), name="flaky", retry=Retry(attempts=3, backoff=0.001, jitter=False)),
            step(ReturnsANumber(), name="bad", retry=Retry(attempts=3, backoff=0)),
        ),
    )
    with pytest.raises(asyncdataflow.exceptions.DataFlowFunctionResultError) as caught:
        await flow(left=1, thread=False, seen="")
    errors = [(kw["step"].name, kw["final"], kw["delay"]) for kw in recorder.of("on_step_error")]
    # a wrong result type is never retried, whatever the policy: final at once
    assert errors == [("flaky", False, 0.001), ("bad", True, None)]
    assert [kw["delay"] for kw in recorder.of("on_step_retry")] == [0.001]
    assert not any("retried" in n for n in getattr(caught.value, "__notes__", ()))


async def test_the_log_plugin_logs_a_wrong_result_type_under_a_policy_as_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from asyncdataflow.plugins import log

    async def returns_a_number(x: int) -> Any:
        return 5

    flow = DataFlow((step(returns_a_number, retry=Retry(attempts=3)),), plugins=[log])
    with caplog.at_level(logging.DEBUG, logger=log.LOGGER_NAME):
        with pytest.raises(asyncdataflow.exceptions.DataFlowFunctionResultError):
            await flow(x=1)
    events = [(r.levelname, r.adf_event) for r in caplog.records if r.name == log.LOGGER_NAME]
    assert ("ERROR", "step_failed") in events
    assert ("DEBUG", "step_attempt_failed") not in events


async def test_a_failing_retry_decider_is_named_in_the_note_not_a_decline() -> None:
    class BadDecider:
        @hookimpl(tryfirst=True)
        def step_retry_delay(self) -> float | None:
            raise RuntimeError("decider broke")

    async def fails(x: int) -> dict[str, Any]:
        raise Boom("original")

    flow = DataFlow((step(fails, retry=Retry(attempts=3, backoff=0)),), plugins=[BadDecider()])
    with pytest.raises(Boom) as caught:
        await flow(x=1)
    notes = caught.value.__notes__
    assert (
        "asyncdataflow: not retried: a step_retry_delay hook failed "
        "(RuntimeError: decider broke); 1 attempt(s) made"
    ) in notes
    assert not any("declined" in n for n in notes)


# -- rate= and breaker= ------------------------------------------------------------------


class Protection:
    """Records on_rate_change and on_breaker_change with every argument."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def on_rate_change(
        self,
        flow: Any,
        run: Any,
        step: Any,
        rate: float,
        previous: float,
        pause: float,
        error: BaseException | None,
    ) -> None:
        self.calls.append(("on_rate_change", dict(locals())))

    @hookimpl
    def on_breaker_change(
        self,
        flow: Any,
        run: Any,
        step: Any,
        state: str,
        previous: str,
        error: BaseException | None,
        retry_in: float | None,
    ) -> None:
        self.calls.append(("on_breaker_change", dict(locals())))


async def test_on_rate_change_and_on_breaker_change_tell_every_change_in_order() -> None:
    seen = Protection()
    flow = await scenario([seen])
    got = [
        (name, kw.get("state") or kw["rate"], kw.get("previous"), type(kw["error"]).__name__)
        for name, kw in seen.calls
    ]
    assert got == [
        ("on_rate_change", 50.0, 100.0, "Throttled"),
        ("on_breaker_change", "open", "closed", "ConnectionError"),
        ("on_breaker_change", "half_open", "open", "NoneType"),
        ("on_breaker_change", "closed", "half_open", "NoneType"),
        ("on_rate_change", 60.0, 50.0, "NoneType"),
    ]
    for _, kw in seen.calls:
        assert kw["flow"] is flow
        assert kw["step"].name == "api"
        assert isinstance(kw["run"], RunInfo)
    rate_change = seen.calls[0][1]
    assert rate_change["pause"] == Throttled.retry_after
    assert seen.calls[-1][1]["pause"] == 0.0
    opened = seen.calls[1][1]
    assert opened["retry_in"] == pytest.approx(30, abs=1)
    assert seen.calls[2][1]["retry_in"] is None


async def test_step_slow_down_decides_what_says_slow_down() -> None:
    class Quota:
        @hookimpl
        def step_slow_down(self, step: Any, error: BaseException) -> float | None:
            return 0.01 if isinstance(error, LookupError) else None

    seen = Protection()

    async def lookup(n: int) -> dict[str, int]:
        if n:
            raise KeyError(n)  # not listed in Rate(on=...), but the plugin says so
        return {"m": n}

    flow = DataFlow((step(lookup, rate=Rate(10)),), plugins=[Quota(), seen])
    await flow(n=0)
    with pytest.raises(KeyError):
        await flow(n=1)
    assert [(kw["rate"], kw["pause"]) for _, kw in seen.calls] == [(5.0, 0.01)]


async def test_a_failing_protection_observer_is_logged_and_never_breaks_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        @hookimpl
        def on_breaker_change(self) -> None:
            raise RuntimeError("observer broke")

        @hookimpl
        def on_rate_change(self) -> None:
            raise RuntimeError("observer broke")

    with caplog.at_level(logging.ERROR, logger="asyncdataflow"):
        await scenario([Broken()])
    failed = [r.getMessage() for r in caplog.records if "failed in hook" in r.getMessage()]
    assert len(failed) == 5


# -- meta: every hook is tested here and documented -------------------------------------


def test_every_hook_is_tested_here_and_documented() -> None:
    names = hook_names()
    assert names == sorted(
        [
            "before_flow_run",
            "after_flow_run",
            "before_step_run",
            "after_step_run",
            "on_step_error",
            "on_step_skipped",
            "on_step_retry",
            "after_loop_iteration",
            "step_retry_delay",
            "on_rate_change",
            "on_breaker_change",
            "on_dead_letter",
            "step_slow_down",
        ]
    )
    tests = {
        name: inspect.getsource(func)
        for name, func in globals().items()
        if name.startswith("test_") and name != "test_every_hook_is_tested_here_and_documented"
    }
    for name in names:
        assert any(name in source for source in tests.values()), f"no test names {name}"
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"def {name}({params})" in DOCS, f"docs/plugins.md lacks `def {name}({params})`"


def test_docs_have_examples() -> None:
    assert len(DOC_EXAMPLES) >= 5


@pytest.mark.parametrize("index", range(len(DOC_EXAMPLES)))
def test_docs_example_runs(index: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / f"plugins_{index}.py"
    script.write_text(DOC_EXAMPLES[index], encoding="utf-8")
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert out  # every example prints what it did
    printed = DOCS.split(DOC_EXAMPLES[index], 1)[1]
    if printed.startswith("```\n\nprints\n\n```\n"):
        # the output shown under the example, up to run ids and timings
        shown = printed.split("```\n", 3)[2].rstrip("\n").splitlines()
        got = out.rstrip("\n").splitlines()
        assert len(got) == len(shown)
        for want, line in zip(shown, got, strict=True):
            fixed = [part for part in re.split(r"\S*\.\.\.\S*|[0-9.]+s\b", want) if part]
            for part in fixed:
                assert part.strip() in line, (part, line)


async def test_a_wrong_result_type_is_reported_to_on_step_error():
    events: list[str] = []

    class Recorder:
        @hookimpl
        def before_step_run(self, step):
            events.append("before")

        @hookimpl
        def after_step_run(self, step):
            events.append("after")

        @hookimpl
        def on_step_error(self, step, error):
            events.append(type(error).__name__)

    async def returns_a_number():
        return 5

    with pytest.raises(DataFlowFunctionResultError):
        await DataFlow((returns_a_number,), plugins=[Recorder()])()
    assert events == ["before", "DataFlowFunctionResultError"]


async def test_on_dead_letter_is_told_each_letter_written(tmp_path: Path) -> None:
    from asyncdataflow.plugins import files

    seen: list[tuple[str, str, Any]] = []

    class Observer:
        @hookimpl
        def on_dead_letter(self, flow: DataFlow, run: RunInfo, step: StepInfo, letter: Any) -> None:
            seen.append((flow.name, step.name, letter.input))
            assert isinstance(run, RunInfo)

    async def records() -> Any:
        for n in range(3):
            yield {"n": n}

    async def odd_fails(n: int) -> dict[str, Any]:
        if n % 2:
            raise ValueError(n)
        return {"n": n}

    sink = files.dead_letters(tmp_path / "dead.jsonl")
    flow = DataFlow((records, odd_fails), name="f", dead_letter=sink, plugins=[Observer()])
    await flow()
    assert seen == [
        ("f", "test_on_dead_letter_is_told_each_letter_written.<locals>.odd_fails", {"n": 1})
    ]
