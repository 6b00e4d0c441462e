"""asyncdataflow.graph: a flow's structure as Mermaid and Graphviz DOT text."""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, TypedDict

import pytest

from asyncdataflow import DataFlow, args_mapper, step
from asyncdataflow.graph import to_dot, to_mermaid

ROOT = Path(__file__).resolve().parent.parent


def _load_example() -> Any:
    path = ROOT / "examples" / "broker_graph.py"
    spec = importlib.util.spec_from_file_location("broker_graph", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["broker_graph"] = module  # get_type_hints resolves annotations through it
    spec.loader.exec_module(module)
    return module


broker_graph = _load_example()


class Pair(TypedDict):
    left: int
    right: int


async def split(value: int) -> Pair:
    return {"left": value, "right": value}


async def maybe(left: int) -> Pair | None:
    return None


def add(left: int, right: int, scale: int = 1) -> dict[str, int]:
    return {"total": (left + right) * scale}


async def first(x: int) -> dict[str, int]:
    return {"x": x}


async def second(x: int) -> dict[str, int]:
    return {"x": x}


async def nothing() -> None:
    return None


class Lookup:
    """A callable object: its return annotation is read from ``__call__``."""

    async def __call__(self, key: str) -> Pair:
        return {"left": 1, "right": 2}


def test_the_brokers_mermaid_graph_shows_blocks_params_and_outputs() -> None:
    from test_cli import BROKER_MERMAID

    assert to_mermaid(broker_graph.broker) == BROKER_MERMAID


def test_the_broker_example_runs_and_prints_its_graph() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "broker_graph.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result, _, graph = done.stdout.partition("\n")
    assert result == "{'response': {'a': ['A:BOOKS:1', 'A:BOOKS:2'], 'b': None}}"
    assert graph == to_mermaid(broker_graph.broker)


def test_outputs_come_from_args_mapper_and_typed_dict_annotations() -> None:
    flow = DataFlow(
        (
            split,
            args_mapper(add, input={"left": "a"}, output="total"),
            maybe,
            Lookup(),
            args_mapper(functools.partial(split), input={"value": "v"}),
            first,
        ),
        # the steps do not feed each other: with "all" each may take the call's arguments
        args_visibility="all",
    )
    text = to_mermaid(flow)
    assert 'n0["split<br/>in: value<br/>out: left, right"]' in text
    assert 'n1["args_mapper(add)<br/>in: a, right, scale?<br/>out: total"]' in text
    assert 'n2["maybe<br/>in: left<br/>out: left, right"]' in text  # Pair | None
    assert 'n3["Lookup<br/>in: key<br/>out: left, right"]' in text
    assert 'n4["args_mapper(partial(split))<br/>in: v<br/>out: left, right"]' in text
    assert 'n5["first<br/>in: x"]' in text  # dict[str, int]: keys unknown, no out: line


def test_partial_bound_parameters_are_not_shown_and_no_params_means_no_in_line() -> None:
    flow = DataFlow((functools.partial(add, right=2), nothing))
    assert to_mermaid(flow) == (
        "flowchart TD\n"
        '    n0["partial(add)<br/>in: left, scale?"]\n'
        '    n1["nothing"]\n'
        "    n0 --> n1\n"
    )


def test_a_concurrent_block_fans_out_and_in_and_a_nested_flow_is_a_named_subgraph() -> None:
    inner = DataFlow((first, second), name="inner")
    flow = DataFlow(((inner, nothing), add), name="outer")
    assert to_mermaid(flow) == (
        "flowchart TD\n"
        "    %% outer\n"
        '    subgraph b0["concurrent"]\n'
        '        subgraph b0_0["sequential: inner"]\n'
        '            n0_0_0["first<br/>in: x"]\n'
        '            n0_0_1["second<br/>in: x"]\n'
        "        end\n"
        '        n0_1["nothing"]\n'
        "    end\n"
        '    n1["add<br/>in: left, right, scale?"]\n'
        "    n0_0_0 --> n0_0_1\n"
        "    n0_0_1 --> n1\n"
        "    n0_1 --> n1\n"
    )


def test_a_concurrent_block_followed_by_a_concurrent_block_connects_every_pair() -> None:
    flow = DataFlow(((first, second), (nothing, add)))
    edges = re.findall(r"(n\S+) --> (n\S+)", to_mermaid(flow))
    assert edges == [("n0_0", "n1_0"), ("n0_0", "n1_1"), ("n0_1", "n1_0"), ("n0_1", "n1_1")]


def test_mermaid_escapes_quotes_and_angle_brackets_in_names() -> None:
    flow = DataFlow((step(first, name='say "hi" <b> #1'),))
    assert 'n0["say #quot;hi#quot; #lt;b#gt; #35;1<br/>in: x"]' in to_mermaid(flow)


def test_dot_text_for_a_small_flow() -> None:
    flow = DataFlow((first, (second, nothing)), name="small")
    assert to_dot(flow) == (
        'digraph "small" {\n'
        '    label="small";\n'
        "    labelloc=t;\n"
        "    rankdir=TB;\n"
        '    node [shape=box, style=rounded, fontname="Helvetica"];\n'
        '    graph [fontname="Helvetica"];\n'
        '    n0 [label="first\\nin: x"];\n'
        "    subgraph cluster_b1 {\n"
        '        label="concurrent";\n'
        "        style=dashed;\n"
        '        n1_0 [label="second\\nin: x"];\n'
        '        n1_1 [label="nothing"];\n'
        "    }\n"
        "    n0 -> n1_0;\n"
        "    n0 -> n1_1;\n"
        "}\n"
    )


def test_dot_escapes_quotes_and_backslashes_and_unnamed_flows_have_no_title() -> None:
    flow = DataFlow((step(first, name='a "b" \\ c'),))
    text = to_dot(flow)
    assert 'n0 [label="a \\"b\\" \\\\ c\\nin: x"];' in text
    assert text.startswith('digraph "DataFlow" {\n    rankdir=TB;')
    assert "%%" not in to_mermaid(flow)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_graphviz_lays_out_every_step_and_edge_of_the_broker() -> None:
    dot = shutil.which("dot")
    assert dot is not None
    plain = subprocess.run(
        [dot, "-Tplain"],
        input=to_dot(broker_graph.broker),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    nodes = set(re.findall(r"^node (\S+)", plain, re.M))
    edges = re.findall(r"^edge (\S+) (\S+)", plain, re.M)
    assert nodes == {"n0", "n1", "n2_0_0", "n2_0_1", "n2_1_0", "n2_1_1", "n3"}
    assert sorted(edges) == sorted(
        [
            ("n0", "n1"),
            ("n1", "n2_0_0"),
            ("n1", "n2_1_0"),
            ("n2_0_0", "n2_0_1"),
            ("n2_1_0", "n2_1_1"),
            ("n2_0_1", "n3"),
            ("n2_1_1", "n3"),
        ]
    )
