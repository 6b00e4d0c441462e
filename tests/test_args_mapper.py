"""SPEC 6: args_mapper renames inputs and names outputs, keeping the function's nature."""

from __future__ import annotations

import functools
import inspect
import threading

import pytest

from asyncdataflow import DataFlow, args_mapper, inline
from asyncdataflow.exceptions import (
    ArgsMapperError,
    ArgsMapperInputKeyError,
    ArgsMapperOutputKeyError,
    DataFlowRoutingError,
)


async def foo(a, b=2):
    return a * b


async def pair(a):
    return "src", [a]


async def as_dict(a):
    return {"source": "s", "data": [a], "extra": 0}


async def test_input_feeds_parameter_from_another_flow_key():
    bar = args_mapper(foo, input={"a": "endpoint"}, output="data")
    assert await bar(endpoint=3) == {"data": 6}
    assert await DataFlow((bar,))(endpoint=3, b=5) == {"data": 15}


def test_input_naming_a_non_parameter_raises_when_built():
    with pytest.raises(ArgsMapperInputKeyError, match="'nope'"):
        args_mapper(foo, input={"nope": "endpoint"})


async def test_output_string_wraps_the_return_value():
    assert await args_mapper(foo, output="value")(a=1) == {"value": 2}


async def test_output_list_zips_a_returned_tuple():
    mapped = args_mapper(pair, output=["source", "data"])
    assert await mapped(a=1) == {"source": "src", "data": [1]}
    mapped_t = args_mapper(pair, output=("source", "data"))
    assert await mapped_t(a=1) == {"source": "src", "data": [1]}


async def test_output_list_length_mismatch_raises():
    mapped = args_mapper(pair, output=["one", "two", "three"])
    with pytest.raises(ArgsMapperError, match="3"):
        await mapped(a=1)


async def test_output_dict_renames_and_drops_unlisted_keys():
    mapped = args_mapper(as_dict, output={"source": "source_a", "data": "data_a"})
    assert await mapped(a=1) == {"source_a": "s", "data_a": [1]}


async def test_output_dict_listed_key_missing_raises():
    mapped = args_mapper(as_dict, output={"nothere": "x"})
    with pytest.raises(ArgsMapperOutputKeyError, match="nothere"):
        await mapped(a=1)


def test_wrapper_keeps_the_async_nature():
    assert inspect.iscoroutinefunction(args_mapper(foo, output="x"))

    def sync(a):
        return a

    assert not inspect.iscoroutinefunction(args_mapper(sync, output="x"))


async def test_sync_wrapper_still_runs_in_a_thread():
    loop_thread = threading.get_ident()

    def where(a):
        return threading.get_ident()

    result = await DataFlow((args_mapper(where, output="thread"),))(a=1)
    assert result["thread"] != loop_thread


async def test_inline_mark_survives_the_wrapper():
    loop_thread = threading.get_ident()

    @inline
    def where(a):
        return threading.get_ident()

    result = await DataFlow((args_mapper(where, output="thread"),))(a=1)
    assert result["thread"] == loop_thread


def test_signature_shows_flow_side_names():
    sig = inspect.signature(args_mapper(foo, input={"a": "endpoint"}))
    assert list(sig.parameters) == ["endpoint", "b"]
    assert sig.parameters["b"].default == 2


async def test_routing_works_through_the_mapper():
    bar = args_mapper(foo, input={"a": "endpoint"}, output="data")
    with pytest.raises(DataFlowRoutingError, match="endpoint"):
        await DataFlow((bar,))(a=1)


async def test_mapper_over_partial_seed_example():
    async def source(endpoint, query):
        return {"data": [endpoint, query]}

    async def merge(data_a, data_b):
        return {"data": list(zip(data_a, data_b, strict=True))}

    source_a = args_mapper(functools.partial(source, endpoint="A"), output={"data": "data_a"})
    source_b = args_mapper(functools.partial(source, endpoint="B"), output={"data": "data_b"})
    flow = DataFlow(((source_a, source_b), merge))
    assert await flow(query="q") == {"data": [("A", "B"), ("q", "q")]}


def test_two_parameters_reading_one_key_is_refused():
    with pytest.raises(ArgsMapperError, match="same flow key"):
        args_mapper(foo, input={"a": "b"})


def test_bad_output_type_is_refused():
    with pytest.raises(ArgsMapperError):
        args_mapper(foo, output=3)  # type: ignore[arg-type]


def test_mapper_errors_share_a_base():
    assert issubclass(ArgsMapperInputKeyError, ArgsMapperError)
    assert issubclass(ArgsMapperOutputKeyError, ArgsMapperError)


@pytest.mark.parametrize("output", [(), [], {}])
def test_output_naming_no_key_is_refused_when_the_mapper_is_built(output: object) -> None:
    # () and [] used to be a SyntaxError from generated code, {} turned every result into {}
    with pytest.raises(ArgsMapperError, match="names no key"):
        args_mapper(foo, output=output)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "output",
    [["a", "a"], ("a", "b", "a"), {"x": "a", "y": "a"}],
    ids=["list", "tuple", "two-keys-to-one"],
)
def test_output_naming_one_key_twice_is_refused_when_the_mapper_is_built(
    output: object,
) -> None:
    # a duplicate name used to keep only the last value, silently
    with pytest.raises(ArgsMapperError, match="'a' twice"):
        args_mapper(foo, output=output)  # type: ignore[arg-type]


async def test_args_mapper_wraps_a_function_with_a_parameter_named_func():
    def apply(func, x):
        return func(x)

    flow = DataFlow((args_mapper(apply, output="y"),))
    assert await flow(func=abs, x=-3) == {"y": 3}


async def test_args_mapper_list_output_refuses_a_returned_dict():
    def pair():
        return {"p": 1, "q": 2}

    with pytest.raises(ArgsMapperError):
        await DataFlow((args_mapper(pair, output=["a", "b"]),))()
