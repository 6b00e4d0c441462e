"""Third-party plugins found through the ``asyncdataflow`` entry-point group.

tests/plugin_dist/ is a real (tiny) installed distribution: a module plus
``adf_sample_plugin-0.1.dist-info`` with METADATA and entry_points.txt. Putting the
directory on sys.path installs it as far as importlib.metadata is concerned.
"""

from __future__ import annotations

import importlib.metadata
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import asyncdataflow
from asyncdataflow import DataFlow, plugin_manager

DIST = Path(__file__).resolve().parent / "plugin_dist"


async def double(x: int) -> dict[str, Any]:
    return {"y": 2 * x}


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The sample distribution on sys.path, entry points to be loaded again; whatever it
    registered is unregistered and its module forgotten afterwards."""
    monkeypatch.syspath_prepend(str(DIST))
    monkeypatch.setitem(plugin_manager._state, "entry_points_loaded", False)
    monkeypatch.setenv("ASYNCDATAFLOW_LOAD_PLUGINS", "sample")
    try:
        yield monkeypatch
    finally:
        pm = asyncdataflow.get_plugin_manager()
        for name in ("sample", "broken"):
            if pm.get_plugin(name) is not None:
                asyncdataflow.unregister_plugin(name=name)
        sys.modules.pop("adf_sample_plugin", None)


def sample_module() -> ModuleType:
    return sys.modules["adf_sample_plugin"]


def test_the_distribution_is_seen_by_importlib_metadata(installed: pytest.MonkeyPatch) -> None:
    dist = importlib.metadata.distribution("adf-sample-plugin")
    assert dist.version == "0.1"
    names = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="asyncdataflow")}
    assert names["sample"] == "adf_sample_plugin"


async def test_an_entry_point_plugin_is_loaded_and_called_without_registration(
    installed: pytest.MonkeyPatch,
) -> None:
    assert "adf_sample_plugin" not in sys.modules
    flow = DataFlow((double,), name="third-party")
    assert await flow(x=2) == {"y": 4}
    module = sample_module()
    assert module.CALLS == [
        ("before_flow_run", "third-party", None),
        ("after_step_run", "third-party", "double"),
        ("after_flow_run", "third-party", None),
    ]
    pm = asyncdataflow.get_plugin_manager()
    assert pm.get_plugin("sample") is module
    assert plugin_manager._state["entry_points_loaded"] is True


async def test_entry_points_are_loaded_once(installed: pytest.MonkeyPatch) -> None:
    plugin_manager.load_entry_points()
    module = sample_module()
    version = plugin_manager.version()
    plugin_manager.load_entry_points()  # a no-op: the flag is set
    assert plugin_manager.version() == version
    await DataFlow((double,), name="once")(x=1)
    assert [c for c in module.CALLS if c[0] == "before_flow_run"] == [
        ("before_flow_run", "once", None)
    ]


async def test_unregistering_an_entry_point_plugin_by_name(
    installed: pytest.MonkeyPatch,
) -> None:
    flow = DataFlow((double,), name="dropped")
    await flow(x=1)
    module = sample_module()
    assert len(module.CALLS) == 3
    asyncdataflow.unregister_plugin(name="sample")
    await flow(x=1)
    assert len(module.CALLS) == 3


async def test_the_environment_limits_which_entry_points_load(
    installed: pytest.MonkeyPatch,
) -> None:
    installed.setenv("ASYNCDATAFLOW_LOAD_PLUGINS", "")
    await DataFlow((double,))(x=1)
    assert "adf_sample_plugin" not in sys.modules
    assert asyncdataflow.get_plugin_manager().get_plugin("sample") is None


async def test_a_plugin_that_fails_to_load_is_logged_and_left_out(
    installed: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    installed.setenv("ASYNCDATAFLOW_LOAD_PLUGINS", "broken, sample")
    with caplog.at_level(logging.ERROR, logger="asyncdataflow"):
        assert await DataFlow((double,), name="survives")(x=3) == {"y": 6}
    (record,) = [r for r in caplog.records if r.name == "asyncdataflow"]
    assert "could not load plugin 'broken'" in record.getMessage()
    assert isinstance(record.exc_info[1], ModuleNotFoundError)  # type: ignore[index]
    pm = asyncdataflow.get_plugin_manager()
    assert pm.get_plugin("broken") is None
    # the good one still loaded and ran
    assert sample_module().CALLS[-1] == ("after_flow_run", "survives", None)


async def test_an_entry_point_plugin_is_listed_with_its_distribution(
    installed: pytest.MonkeyPatch,
) -> None:
    pm = asyncdataflow.get_plugin_manager()
    module = sample_module()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    assert dists[id(module)].project_name == "adf-sample-plugin"
    assert dists[id(module)].version == "0.1"
    # a flow with plugins of its own lists the global entry points too
    flow_pm = plugin_manager.plugin_manager_for([object()])
    assert id(module) in {id(plugin) for plugin, _ in flow_pm.list_plugin_distinfo()}
