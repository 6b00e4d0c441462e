"""A DataFlow pickles as its definition and options and is compiled again where it is
unpickled; the pack's steps pickle as their configuration, never their sessions or pools."""

from __future__ import annotations

import inspect
import pickle
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import pytest

from asyncdataflow import DataFlow, Retry, args_mapper, step
from asyncdataflow.plugins import files, http, mysql


def add_one(x: int) -> dict[str, int]:
    return {"y": x + 1}


async def twice(y: int) -> dict[str, int]:
    return {"z": y * 2}


def square_of(v: int) -> int:
    return v * v


def flow_with_every_option() -> DataFlow:
    return DataFlow(
        (
            step(add_one, timeout=5, name="add"),
            (twice,),
            DataFlow((args_mapper(square_of, input={"v": "z"}, output="w"),)),
        ),
        infinity_loop=False,
        interval=0.5,
        args_visibility="all",
        plugins=(),
        name="everything",
        retry=Retry(attempts=3),
    )


async def test_a_flow_pickles_as_definition_and_options_and_is_compiled_again() -> None:
    flow = flow_with_every_option()
    copy = pickle.loads(pickle.dumps(flow))
    assert copy is not flow
    assert isinstance(copy, DataFlow)
    assert copy.source == flow.source  # the same plan, generated afresh
    assert copy._body is not flow._body
    assert await copy(x=1) == await flow(x=1) == {"x": 1, "y": 2, "z": 4, "w": 16}
    for name, param in inspect.signature(DataFlow).parameters.items():
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            assert getattr(copy, name) == getattr(flow, name), name


def test_every_keyword_of_dataflow_is_pickled() -> None:
    """A new DataFlow(...) option must be an attribute of the same name, or pickling
    (asyncdataflow.dask, process pools) would lose it."""
    flow = flow_with_every_option()
    _, (_, _, options) = flow.__reduce__()
    keywords = [
        name
        for name, p in inspect.signature(DataFlow).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    assert sorted(options) == sorted(keywords)


def test_a_flow_with_an_executor_refuses_to_pickle_saying_why() -> None:
    with ThreadPoolExecutor(1) as pool:
        flow = DataFlow((add_one,), executor=pool, name="pooled")
        with pytest.raises(TypeError, match=r"flow 'pooled' has executor=.*without executor="):
            pickle.dumps(flow)


async def test_pack_steps_pickle_as_their_configuration_after_opening_a_session(
    tmp_path: Any,
) -> None:
    reader = http.reader("http://127.0.0.1:9/items/{i}", headers={"X-A": "1"}, timeout=3)
    reader._sessions.get()  # opens this loop's session, as a first call would
    copy = pickle.loads(pickle.dumps(reader))
    assert repr(copy) == repr(reader)
    assert inspect.signature(copy) == inspect.signature(reader)
    assert copy._sessions is not reader._sessions
    await reader.aclose()
    await copy.aclose()

    writer = mysql.writer("t", url="mysql://root@127.0.0.1:3306/test", mode="insert")
    assert repr(pickle.loads(pickle.dumps(writer))) == repr(writer)
    target = files.writer(str(tmp_path / "{day}.jsonl"), format="jsonl")
    assert repr(pickle.loads(pickle.dumps(target))) == repr(target)


async def test_a_step_given_the_users_own_session_does_not_pickle() -> None:
    async with aiohttp.ClientSession() as session:
        reader = http.reader("http://127.0.0.1:9/x", session=session)
        with pytest.raises(Exception, match="pickle"):
            pickle.dumps(reader)
