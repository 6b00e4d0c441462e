"""`asyncdataflow check`: the wiring report without running; exit 1 on a near miss.
In process: main() with the tests directory as the current directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from asyncdataflow.cli import main

TESTS = Path(__file__).resolve().parent
EXAMPLES = TESTS.parent / "examples"


@pytest.fixture(autouse=True)
def _in_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TESTS)
    monkeypatch.syspath_prepend(str(TESTS))


def test_a_clean_flow_exits_0_and_shows_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "wiring_flows:clean"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wiring_flows:clean: flow 'clean' (args_visibility='previous')\n")
    assert "definition[0]  load  (guard)\n    needs:     path\n" in out
    assert "definition[1]  save\n    needs:     rows\n    available: rows\n" in out
    assert "no near miss found" in out


def test_a_near_miss_exits_1_and_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "wiring_flows:near_miss"]) == 1
    captured = capsys.readouterr()
    assert "NEAR MISS: needs 'rowz'" in captured.out
    assert (
        "step 'save_typo' at definition[1] needs 'rowz', which only the call's arguments "
        "could bring; did you mean 'rows'?" in captured.err
    )


def test_a_module_checks_all_its_flows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "wiring_flows"]) == 1  # near_miss is one of them
    out = capsys.readouterr().out
    assert "wiring_flows:clean: flow 'clean'" in out
    assert "wiring_flows:near_miss: flow 'near_miss'" in out


def test_a_flow_that_cannot_be_built_exits_1_with_the_wiring_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "wiring_broken:broken"]) == 1
    err = capsys.readouterr().err
    assert "the flow cannot be built" in err
    assert "step 'save' at definition[1] can never be taken" in err
    assert "did you mean 'rows'" in err
    sys.modules.pop("wiring_broken", None)


def test_json_output_is_the_explanation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "wiring_flows:clean", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == "wiring_flows:clean"
    assert [s["path"] for s in report["steps"]] == ["definition[0]", "definition[1]"]
    assert report["steps"][0]["outputs"] == ["rows"]
    assert report["steps"][1]["guard"] is False


def test_a_module_without_flows_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "conftest"]) == 2
    assert "defines no DataFlow" in capsys.readouterr().err


def test_check_exits_0_on_the_examples_flows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    assert main(["check", "broker_graph"]) == 0
    assert "definition[2][0][0]  ask_system_a  (guard)" in capsys.readouterr().out


def test_the_broker_report_is_what_docs_cli_md_shows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = (TESTS.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    block = page.split("$ asyncdataflow check broker_graph:broker\n", 1)[1].split("```", 1)[0]
    monkeypatch.syspath_prepend(str(EXAMPLES))
    assert main(["check", "broker_graph:broker"]) == 0
    assert capsys.readouterr().out == block


def test_json_for_a_module_is_a_list_of_reports(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "wiring_flows", "--json"]) == 1
    reports = json.loads(capsys.readouterr().out)
    assert [r["target"] for r in reports] == ["wiring_flows:clean", "wiring_flows:near_miss"]
    assert reports[1]["steps"][1]["near_misses"] == [["rowz", "rows"]]
