"""asyncdataflow.plugins.log: stdlib logging records for runs and steps."""

from __future__ import annotations

import asyncio
import linecache
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import asyncdataflow
from asyncdataflow import DataFlow, Retry, step
from asyncdataflow.plugins import log

SECRET = "hunter2-do-not-log"


async def login(user: str, password: str) -> dict[str, Any]:
    return {"token": f"token-for-{password}"}


async def fetch(token: str) -> dict[str, Any]:
    return {"rows": [token]}


async def never(missing_key: str) -> dict[str, Any]:  # pragma: no cover - never taken
    return {}


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self, rows: list[str]) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"failure {self.calls}")
        return {"count": len(rows)}


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Records of ``asyncdataflow.run`` at DEBUG; the logger is restored afterwards."""
    logger = logging.getLogger(log.LOGGER_NAME)
    handler = Capture()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def events(records: list[logging.LogRecord]) -> list[tuple[str, int, str | None]]:
    return [(r.adf_event, r.levelno, getattr(r, "adf_step", None)) for r in records]  # type: ignore[attr-defined]


def flow_with_retry(flaky: Flaky) -> DataFlow:
    return DataFlow(
        (
            login,
            (fetch, never),
            step(flaky, name="count", retry=Retry(attempts=3, backoff=0.001, jitter=False)),
        ),
        name="secrets",
        plugins=[log],
    )


async def test_levels_and_order_of_a_run_with_a_skip_and_a_retry(
    records: list[logging.LogRecord],
) -> None:
    flow = flow_with_retry(Flaky(1))
    assert await flow(user="ann", password=SECRET) == {"count": 1}
    D, W = logging.DEBUG, logging.WARNING
    assert events(records) == [
        ("run_started", D, None),
        ("step_started", D, "login"),
        ("step_finished", D, "login"),
        ("step_skipped", D, "never"),
        ("step_started", D, "fetch"),
        ("step_finished", D, "fetch"),
        ("step_started", D, "count"),
        ("step_attempt_failed", D, "count"),
        ("step_retry", W, "count"),
        ("step_started", D, "count"),
        ("step_finished", D, "count"),
        ("run_finished", D, None),
    ]
    assert all(r.name == "asyncdataflow.run" for r in records)
    run_ids = {r.adf_run_id for r in records}  # type: ignore[attr-defined]
    assert len(run_ids) == 1
    assert None not in run_ids
    assert {r.adf_flow for r in records} == {"secrets"}  # type: ignore[attr-defined]

    by_event = {(r.adf_event, getattr(r, "adf_attempt", None)): r for r in records}  # type: ignore[attr-defined]
    retry = by_event[("step_retry", 1)]
    assert retry.adf_path == "definition[2]"  # type: ignore[attr-defined]
    assert retry.adf_delay == 0.001  # type: ignore[attr-defined]
    assert retry.adf_error == "ConnectionError"  # type: ignore[attr-defined]
    assert "failure 1" in retry.getMessage()
    finished = by_event[("step_finished", 2)]
    assert finished.adf_step == "count"  # type: ignore[attr-defined]
    assert finished.adf_duration >= 0  # type: ignore[attr-defined]
    assert finished.adf_keys == ("count",)  # type: ignore[attr-defined]
    skipped = by_event[("step_skipped", None)]
    assert skipped.adf_missing == ("missing_key",)  # type: ignore[attr-defined]
    assert skipped.adf_path == "definition[1][1]"  # type: ignore[attr-defined]
    assert by_event[("run_finished", None)].adf_duration > 0  # type: ignore[attr-defined]


async def test_a_failure_is_an_error_record_with_the_traceback(
    records: list[logging.LogRecord],
) -> None:
    flaky = Flaky(5)
    with pytest.raises(ConnectionError) as caught:
        await flow_with_retry(flaky)(user="ann", password=SECRET)
    errors = [r for r in records if r.levelno == logging.ERROR]
    assert [r.adf_event for r in errors] == ["step_failed", "run_failed"]  # type: ignore[attr-defined]
    step_failed, run_failed = errors
    assert step_failed.adf_attempt == 3  # type: ignore[attr-defined]
    assert step_failed.exc_info is not None
    assert step_failed.exc_info[1] is caught.value
    assert run_failed.adf_error == "ConnectionError"  # type: ignore[attr-defined]
    assert [r.adf_attempt for r in records if r.adf_event == "step_retry"] == [1, 2]  # type: ignore[attr-defined]
    assert all(r.levelno == logging.WARNING for r in records if r.adf_event == "step_retry")  # type: ignore[attr-defined]


async def test_a_step_without_a_policy_fails_at_error_on_its_first_attempt(
    records: list[logging.LogRecord],
) -> None:
    async def fails(x: int) -> dict[str, Any]:
        raise KeyError("k")

    with pytest.raises(KeyError):
        await DataFlow((fails,), plugins=[log])(x=1)
    assert [e for e in events(records) if e[1] >= logging.WARNING] == [
        (
            "step_failed",
            logging.ERROR,
            "test_a_step_without_a_policy_fails_at_error_on_its_first_attempt.<locals>.fails",
        ),
        ("run_failed", logging.ERROR, None),
    ]


async def test_values_of_inputs_and_outputs_are_never_logged(
    records: list[logging.LogRecord],
) -> None:
    await flow_with_retry(Flaky(1))(user="ann", password=SECRET)
    assert records
    for record in records:
        text = record.getMessage() + repr(vars(record))
        assert SECRET not in text
        assert "token-for" not in text
    # key names are fine
    started = next(r for r in records if r.adf_event == "run_started")  # type: ignore[attr-defined]
    assert started.adf_keys == ("user", "password")  # type: ignore[attr-defined]


async def test_it_never_configures_logging() -> None:
    logger = logging.getLogger(log.LOGGER_NAME)
    root = logging.getLogger()
    before = (list(logger.handlers), logger.level, list(root.handlers), root.level)
    await DataFlow((login,), plugins=[log])(user="a", password="b")
    assert (list(logger.handlers), logger.level, list(root.handlers), root.level) == before


async def test_registered_globally_it_logs_every_flow(
    records: list[logging.LogRecord],
) -> None:
    asyncdataflow.register_plugin(log)
    try:
        await DataFlow((login,), name="one")(user="a", password="b")
        await DataFlow((login,), name="two")(user="a", password="b")
    finally:
        asyncdataflow.unregister_plugin(log)
    assert [r.adf_flow for r in records if r.adf_event == "run_finished"] == ["one", "two"]  # type: ignore[attr-defined]
    records.clear()
    await DataFlow((login,))(user="a", password="b")
    assert records == []


async def test_above_debug_nothing_but_retries_and_failures_is_emitted(
    records: list[logging.LogRecord],
) -> None:
    logging.getLogger(log.LOGGER_NAME).setLevel(logging.WARNING)
    await flow_with_retry(Flaky(1))(user="ann", password=SECRET)
    assert events(records) == [("step_retry", logging.WARNING, "count")]


async def test_above_error_a_failing_run_emits_nothing(
    records: list[logging.LogRecord],
) -> None:
    logging.getLogger(log.LOGGER_NAME).setLevel(logging.CRITICAL)
    with pytest.raises(ConnectionError):
        await flow_with_retry(Flaky(5))(user="ann", password=SECRET)
    assert records == []


async def test_each_record_names_the_hook_that_logged_it_as_its_source(
    records: list[logging.LogRecord],
) -> None:
    with pytest.raises(ConnectionError):
        await flow_with_retry(Flaky(5))(user="ann", password=SECRET)
    hook = {
        "run_started": "before_flow_run",
        "step_started": "before_step_run",
        "step_finished": "after_step_run",
        "step_skipped": "on_step_skipped",
        "step_attempt_failed": "on_step_error",
        "step_retry": "on_step_retry",
        "step_failed": "on_step_error",
        "run_failed": "after_flow_run",
    }
    assert {r.adf_event for r in records} == set(hook)  # type: ignore[attr-defined]
    for record in records:
        assert record.pathname == log.__file__
        assert record.funcName == hook[record.adf_event]  # type: ignore[attr-defined]
        # the line of the hook that logs it
        assert "_log(" in linecache.getline(record.pathname, record.lineno)


async def test_cancellation_and_loop_iterations_are_debug(
    records: list[logging.LogRecord],
) -> None:
    async def slow(x: int) -> dict[str, Any]:
        await asyncio.sleep(10)
        return {}  # pragma: no cover

    task = asyncio.ensure_future(DataFlow((slow,), plugins=[log])(x=1))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [e[:2] for e in events(records)][-2:] == [
        ("step_cancelled", logging.DEBUG),
        ("run_cancelled", logging.DEBUG),
    ]
    records.clear()

    count = {"n": 0}

    async def tick(x: int) -> dict[str, Any]:
        count["n"] += 1
        if count["n"] == 2:
            loop_flow.stop()
        return {"n": count["n"]}

    loop_flow = DataFlow((tick,), infinity_loop=True, plugins=[log])
    await loop_flow(x=0)
    iterations = [r for r in records if r.adf_event == "loop_iteration"]  # type: ignore[attr-defined]
    assert [r.adf_iteration for r in iterations] == [1, 2]  # type: ignore[attr-defined]
    assert all(r.levelno == logging.DEBUG for r in iterations)


async def test_a_dead_letter_is_a_warning_naming_the_record(
    records: list[logging.LogRecord], tmp_path: Any
) -> None:
    from asyncdataflow.plugins import files

    async def rows() -> Any:
        for n in range(3):
            yield {"n": n}

    async def shape(n: int) -> dict[str, Any]:
        if n == 1:
            raise ValueError("bad row")
        return {}

    sink = files.dead_letters(tmp_path / "dead.jsonl")
    flow = DataFlow((rows, step(shape, name="shape")), name="dl", plugins=[log], dead_letter=sink)
    await flow()
    (letter,) = [r for r in records if r.adf_event == "dead_letter"]  # type: ignore[attr-defined]
    assert letter.levelno == logging.WARNING
    assert letter.adf_step == "shape"
    assert letter.adf_record == (1,)
    assert "record [1] input written to dead letters" in letter.getMessage()
