"""No silent skips: the wiring is checked when a flow is built (DataFlowWiringError), a
near miss is warned at run time (DataFlowSkipWarning), flow.explain() and the graph show
the declared outputs."""

from __future__ import annotations

import re
import runpy
import warnings
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import pytest

from asyncdataflow import DataFlow, args_mapper, step
from asyncdataflow.exceptions import (
    DataFlowDefinitionError,
    DataFlowError,
    DataFlowRoutingError,
    DataFlowSkipWarning,
    DataFlowWiringError,
)


class Rows(TypedDict):
    rows: list[int]
    count: NotRequired[int]


async def load(path: str) -> Rows:
    return {"rows": [1, 2]}


async def load_plain(path: str) -> dict[str, Any]:
    return {"rows": [1, 2]}


def load_tuple(path: str) -> tuple[list[int], int]:
    return [1, 2], 2


async def load_value(path: str) -> list[int]:
    return [1, 2]


async def save(rowz: list[int]) -> dict[str, Any]:
    return {"saved": len(rowz)}


async def save_ok(rows: list[int]) -> dict[str, Any]:
    return {"saved": len(rows)}


def test_the_new_names_are_exported_where_they_belong() -> None:
    assert issubclass(DataFlowWiringError, DataFlowDefinitionError)
    assert issubclass(DataFlowSkipWarning, UserWarning)
    assert issubclass(DataFlowSkipWarning, DataFlowError)


# -- build time -------------------------------------------------------------------------

DECLARED = {
    "typeddict": load,
    "step outputs": step(load_plain, outputs=("rows",)),
    "args_mapper str": args_mapper(load_value, output="rows"),
    "args_mapper list": args_mapper(load_tuple, output=["rows", "n"]),
    "args_mapper dict": args_mapper(load_plain, output={"rows": "rows"}),
}


@pytest.mark.parametrize("source", DECLARED.values(), ids=list(DECLARED))
def test_a_typo_after_declared_outputs_is_refused_when_built(source: Any) -> None:
    with pytest.raises(DataFlowWiringError) as caught:
        DataFlow((source, save))
    text = str(caught.value)
    assert "step 'save' at definition[1]" in text
    assert "'rowz'" in text
    assert "did you mean 'rows'" in text
    assert "keys available there: [" in text
    assert "'rows'" in text
    assert DataFlow((source, save_ok))  # the right name builds


async def test_the_right_name_runs() -> None:
    assert await DataFlow((load, save_ok))(path="p") == {"saved": 2}


def test_a_not_required_key_may_be_absent_but_is_not_refused() -> None:
    async def counted(count: int) -> None:
        return None

    DataFlow((load, counted))


def test_without_a_close_name_the_error_says_what_to_do() -> None:
    async def other(zzz: int) -> None:
        return None

    with pytest.raises(DataFlowWiringError, match="make a step before it return 'zzz'"):
        DataFlow((load, other))


def test_an_unresolvable_annotation_means_unknown_outputs() -> None:
    async def odd(path: str) -> NoSuchType:  # type: ignore[name-defined]  # noqa: F821
        return {"rows": []}

    DataFlow((odd, save))  # nothing known: routing decides at run time


def test_a_non_typeddict_annotation_means_unknown_outputs() -> None:
    async def either(path: str) -> Rows | dict[str, Any]:
        return {"rows": []}

    DataFlow((either, save))


def test_a_nested_flows_declared_outputs_are_followed() -> None:
    inner = DataFlow((load,), name="inner")
    with pytest.raises(DataFlowWiringError, match=r"'save' at definition\[1\]"):
        DataFlow((inner, save))
    outer = DataFlow((load, DataFlow((save_ok,), name="writer")))
    assert outer.explain().steps[1].available == ("count", "rows")


def test_a_concurrent_block_offers_the_union_of_its_branches() -> None:
    a = step(load_plain, outputs=("rows",))
    b = step(load_plain, outputs=("total",))

    async def both(rows: Any, total: Any) -> None:
        return None

    DataFlow(((a, b), both))
    with pytest.raises(DataFlowWiringError, match="did you mean 'rows'"):
        DataFlow(((a, b), save))


class Queries(TypedDict, total=False):
    query_a: str


def test_a_branch_that_can_never_be_taken_is_refused() -> None:
    async def dispatch(request: str) -> Queries:
        return {"query_a": request}

    async def ask_a(query_a: str) -> None:
        return None

    async def ask_b(query_b: str) -> None:
        return None

    with pytest.raises(DataFlowWiringError) as caught:
        DataFlow((dispatch, (ask_a, ask_b)))
    assert "ask_b' at definition[1][1]" in str(caught.value)
    assert "did you mean 'query_a'" in str(caught.value)


def test_a_step_after_a_dead_guard_is_not_reported_again() -> None:
    async def dead(nope: int) -> dict[str, Any]:
        return {}

    with pytest.raises(DataFlowWiringError) as caught:
        DataFlow((load, ((dead, save),)))
    assert "dead" in str(caught.value)
    assert "also" not in str(caught.value)


@pytest.mark.parametrize("visibility", ["initial", "all"])
async def test_with_the_call_arguments_in_view_nothing_is_refused(visibility: str) -> None:
    flow = DataFlow((load, save), args_visibility=visibility)
    result = await flow(path="p", rowz=[1])  # the call may bring the name
    assert result["saved"] == 1


def test_every_problem_is_listed() -> None:
    async def other(zzz: int) -> None:
        return None

    with pytest.raises(DataFlowWiringError) as caught:
        DataFlow((load, save, other))
    assert "other at definition[2] needs 'zzz'" in str(caught.value)


def test_step_outputs_are_names_and_combine() -> None:
    with pytest.raises(DataFlowDefinitionError, match="outputs must be names"):
        step(load_plain, outputs=(1,))  # type: ignore[arg-type]
    s = step(step(load_plain, outputs=("rows",)), timeout=5)
    assert s.outputs == ("rows",)
    assert step(load_plain, outputs="rows").outputs == ("rows",)


def test_a_pack_like_step_declares_through_its_attribute() -> None:
    class Reader:
        __asyncdataflow_outputs__ = ("data",)

        async def __call__(self, url: str) -> dict[str, Any]:
            return {"data": []}

    async def write(datta: Any) -> None:
        return None

    with pytest.raises(DataFlowWiringError, match="did you mean 'data'"):
        DataFlow((Reader(), write))
    flow = DataFlow((Reader(), args_mapper(write, input={"datta": "data"})))
    assert 'out: data"]' in flow.to_mermaid()


# -- run time ---------------------------------------------------------------------------


async def test_undeclared_outputs_warn_once_when_a_later_step_is_passed_over() -> None:
    flow = DataFlow((load_plain, save), name="orders")
    with pytest.warns(DataFlowSkipWarning) as caught:
        assert await flow(path="p") == {"rows": [1, 2]}
    (only,) = caught
    text = str(only.message)
    assert "step 'save' at definition[1] of flow 'orders'" in text
    assert "needs 'rowz'" in text
    assert "holds 'rows'" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        await flow(path="p")  # once per step and flow
    with pytest.warns(DataFlowSkipWarning):  # another flow warns on its own
        await DataFlow((load_plain, save))(path="p")


async def test_the_instrumented_path_warns_too() -> None:
    flow = DataFlow((load_plain, step(save, timeout=5)))
    with pytest.warns(DataFlowSkipWarning, match="did you mean 'rows'"):
        await flow(path="p")


async def test_a_step_passed_over_without_a_near_miss_is_silent() -> None:
    async def flagged(flag: bool) -> dict[str, Any]:
        return {"flagged": flag}

    flow = DataFlow((load_plain, flagged, save_ok))
    assert await flow(path="p") == {"saved": 2}  # warnings are errors in this suite


async def test_a_name_the_step_also_takes_is_not_a_near_miss() -> None:
    async def source(x: int) -> dict[str, Any]:
        return {"data_b": 1}

    async def merge(data_a: int, data_b: int) -> dict[str, Any]:
        return {}

    assert await DataFlow((source, merge))(x=1) == {"data_b": 1}


async def test_guards_never_warn() -> None:
    async def dispatch(request: str) -> dict[str, Any]:
        return {"query_b": request}

    async def ask_a(query_a: str) -> dict[str, Any]:
        return {"a": query_a}

    async def ask_b(query_b: str) -> dict[str, Any]:
        return {"b": query_b}

    async def shape(a: str) -> dict[str, Any]:
        return {"shaped": a}

    flow = DataFlow((dispatch, ((ask_a, shape), ask_b)))
    assert await flow(request="r") == {"b": "r"}


async def test_the_routing_error_suggests_the_close_name() -> None:
    with pytest.raises(DataFlowRoutingError, match=r"missing \['rowz'\]; did you mean 'rows'\?"):
        await DataFlow((save,))(rows=[1])


# -- explain ----------------------------------------------------------------------------


def test_explain_says_for_every_step_what_it_needs_gets_and_returns() -> None:
    flow = DataFlow((load, (save_ok, step(save_ok, outputs=()))), name="orders")
    report = flow.explain()
    first, left, right = report.steps
    assert (first.name, first.path, first.needs, first.guard) == (
        "load",
        "definition[0]",
        ("path",),
        True,
    )
    assert first.also_from == ("the call's arguments",)
    assert first.outputs == ("rows", "count")
    assert first.optional_outputs == ("count",)
    assert (left.path, left.available, left.also_from, left.guard) == (
        "definition[1][0]",
        ("count", "rows"),
        (),
        True,
    )
    assert left.outputs is None
    assert right.outputs == ()
    assert report.problems == []
    text = str(report)
    assert text.splitlines()[0] == "flow 'orders' (args_visibility='previous')"
    assert "definition[1][0]  save_ok  (guard)" in text
    assert "outputs:   rows, count?" in text
    assert text.endswith("no near miss found")


def test_explain_shows_a_near_miss_only_the_call_could_fill() -> None:
    report = DataFlow((load, save), args_visibility="all").explain()
    assert report.steps[1].near_misses == (("rowz", "rows"),)
    assert "NEAR MISS: needs 'rowz'" in str(report)

    # a parameter the flow's first step takes is a call argument, not a near miss
    async def read(path: str, rowz: int = 0) -> Rows:
        return {"rows": []}

    assert DataFlow((read, save), args_visibility="all").explain().problems == []


def test_explain_names_steps_with_undeclared_outputs_as_unknown_sources() -> None:
    report = DataFlow((load_plain, save)).explain()
    assert report.steps[1].also_from == ("load_plain at definition[0] (outputs not declared)",)


# -- the integration pack ---------------------------------------------------------------


def test_the_graph_and_the_check_see_the_packs_declared_keys(tmp_path: Any) -> None:
    from asyncdataflow.plugins import files

    reader = files.reader(tmp_path / "in.txt", key="lines")
    writer = files.writer(tmp_path / "out.txt", key="lines")
    text = DataFlow((reader, writer)).to_mermaid()
    assert "out: lines" in text
    assert "out: path" in text

    async def shout(line: str) -> dict[str, Any]:  # a typo of the reader's key
        return {}

    with pytest.raises(DataFlowWiringError, match="did you mean 'lines'"):
        DataFlow((reader, shout))


def test_a_later_step_without_parameters_always_runs_so_its_input_stops_there() -> None:
    stamp = step(lambda: {"when": 1}, outputs=("when",))  # no parameters: always taken
    with pytest.raises(DataFlowWiringError, match=r"keys available there: \['when'\]"):
        DataFlow((load, stamp, save_ok))
    DataFlow((load, save_ok, stamp))  # passed over or not, save_ok sees the rows


def test_a_later_step_that_may_be_passed_over_lets_its_input_through() -> None:
    after = step(save_ok, outputs=("saved",))
    report = DataFlow((load, after, save_ok)).explain()
    assert report.steps[2].available == ("count", "rows", "saved")


# -- no false alarm: what `asyncdataflow check` would say about the examples --------------

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_FILES = [
    *sorted((ROOT / "examples").glob("seed_*.py")),
    ROOT / "examples" / "broker_graph.py",
]
README_BLOCKS = re.findall(
    r"```python\n(.*?)```",
    (ROOT / "README.md").read_text(encoding="utf-8"),
    flags=re.S,
)


@pytest.mark.parametrize(
    "source",
    [*(p.read_text(encoding="utf-8") for p in EXAMPLE_FILES), *README_BLOCKS],
    ids=[*(p.name for p in EXAMPLE_FILES), *(f"README-{i}" for i in range(len(README_BLOCKS)))],
)
def test_every_flow_of_the_examples_and_the_readme_checks_clean(
    source: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built: list[DataFlow] = []
    original = DataFlow.__init__

    def recording(self: DataFlow, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(DataFlow, "__init__", recording)
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "example.py"
    script.write_text(source, encoding="utf-8")
    try:
        runpy.run_path(str(script), run_name="__main__")
    except DataFlowError:
        pass  # the examples that show an error; the flows built before it still count
    capsys.readouterr()
    for flow in built:
        if "near miss" in source or "rowz" in source:  # the README's own typo examples
            continue
        assert flow.explain().problems == [], str(flow.explain())


async def numbers(n: int) -> Any:  # a source: each yielded dict is a record
    for i in range(n):
        yield {"i": i}


async def test_a_source_that_yields_nothing_passes_its_input_on_so_it_is_not_refused() -> None:
    prepare = step(lambda n: {"n": n, "tag": "t"}, outputs=("n", "tag"))
    square = step(lambda i: {"sq": i * i}, outputs=("sq",))

    async def after(tag: str) -> dict[str, Any]:
        return {"after": tag}

    flow = DataFlow((prepare, ((step(numbers, outputs=("i",)), square),), after))
    assert await flow(n=0) == {"after": "t"}  # no record: the block's input flows on
    assert flow.explain().steps[3].available == ("i", "n", "sq", "tag")
