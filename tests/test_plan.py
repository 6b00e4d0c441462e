"""The compiled plan: no hook cost without plugins, rebuilt when plugins change."""

from __future__ import annotations

import inspect
import linecache
import traceback

import pytest
from pluggy import PluginValidationError

from asyncdataflow import (
    DataFlow,
    get_plugin_manager,
    hookimpl,
    plan,
    register_plugin,
    step,
    unregister_plugin,
)
from asyncdataflow._hooks import Hooks


async def a(x):
    return {"y": x}


def b(y):
    return {"z": y}


async def test_without_plugins_the_generated_code_calls_no_hook(monkeypatch):
    flow = DataFlow((a, (b,), a), name="lean")
    assert "HOOKS" not in flow.source
    assert "_skipped" not in flow.source
    assert "await R" not in flow.source  # no instrumented step runner

    def forbidden(*args, **kwargs):
        raise AssertionError("a hook was called")

    monkeypatch.setattr(Hooks, "emit", forbidden)
    # the last 'a' is passed over (no x): a skip that no plugin hears costs nothing
    assert await flow(x=1) == {"z": 1}


async def test_only_steps_with_options_go_through_the_instrumented_runner():
    flow = DataFlow((a, step(b, timeout=5)))
    assert flow.source.count("await R") == 1
    assert await flow(x=1) == {"z": 1}


class Counting:
    def __init__(self):
        self.steps = 0

    @hookimpl
    def after_step_run(self, step):
        self.steps += 1


async def test_registering_a_plugin_rebuilds_existing_flows_on_their_next_call():
    flow = DataFlow((a, b))
    assert await flow(x=1) == {"z": 1}
    plugin = Counting()
    register_plugin(plugin)
    try:
        assert await flow(x=1) == {"z": 1}
        assert plugin.steps == 2
    finally:
        unregister_plugin(plugin)
    await flow(x=1)
    assert plugin.steps == 2
    assert "await R" not in flow.source


async def test_per_flow_plugins_do_not_reach_other_flows():
    plugin = Counting()
    mine = DataFlow((a, b), plugins=[plugin])
    other = DataFlow((a, b))
    await mine(x=1)
    await other(x=1)
    assert plugin.steps == 2


async def test_a_global_plugin_also_given_to_a_flow_is_called_once():
    plugin = Counting()
    register_plugin(plugin)
    try:
        flow = DataFlow((a, b), plugins=[plugin])
        await flow(x=1)
    finally:
        unregister_plugin(plugin)
    assert plugin.steps == 2


def test_observer_wrappers_are_refused_when_registered():
    class Wrapping:
        @hookimpl(wrapper=True)
        def after_step_run(self, step):
            return (yield)

    class OldStyle:
        @hookimpl(hookwrapper=True)
        def before_flow_run(self):
            yield

    for plugin, hook in ((Wrapping(), "after_step_run"), (OldStyle(), "before_flow_run")):
        with pytest.raises(PluginValidationError, match=f"{hook} is an observer hook"):
            register_plugin(plugin)
        with pytest.raises(PluginValidationError, match="cannot be a wrapper"):
            DataFlow((a,), plugins=[plugin])
        assert not get_plugin_manager().is_registered(plugin)


async def test_trace_switch_logs_every_observer_hook_call(monkeypatch, caplog):
    monkeypatch.setenv("ASYNCDATAFLOW_TRACE_HOOKS", "1")
    plugin = Counting()
    flow = DataFlow((a, b), plugins=[plugin])
    with caplog.at_level("DEBUG", logger="asyncdataflow.hooks"):
        await flow(x=1)
    traced = [r.getMessage() for r in caplog.records if r.name == "asyncdataflow.hooks"]
    assert len(traced) == 2
    assert plugin.steps == 2
    assert traced[0].startswith("hook after_step_run -> plugin ")
    assert traced[0].endswith("(step)")


async def test_a_traceback_through_generated_code_shows_its_lines():
    async def fails(y):
        raise ValueError("no")

    flow = DataFlow((a, (fails,)), name="shown")
    with pytest.raises(ValueError, match="no") as caught:
        await flow(x=1)
    text = "".join(traceback.format_exception(caught.value))
    assert 'File "<asyncdataflow shown ' in text
    # the line of the generated code that called the step, as it reads in flow.source
    line = next(ln.strip() for ln in flow.source.splitlines() if "await F" in ln and "y=" in ln)
    assert line in text
    frames = [e for e in caught.traceback if str(e.path).startswith("<asyncdataflow shown ")]
    frame = frames[-1]  # the branch that called the step
    assert linecache.getline(str(frame.path), frame.lineno + 1).strip() == line


async def test_walk_yields_every_block_and_step_depth_first_as_public_plan_types():
    inner = DataFlow((b,), name="inner")
    flow = DataFlow((a, (b, (a, inner)), b), name="outer")
    nodes = list(flow.walk())
    assert [(type(n).__name__, n.path) for n in nodes] == [
        ("Block", "definition"),
        ("Fn", "definition[0]"),
        ("Block", "definition[1]"),
        ("Fn", "definition[1][0]"),
        ("Block", "definition[1][1]"),
        ("Fn", "definition[1][1][0]"),
        ("Block", "definition[1][1][1]"),  # the nested flow, inlined
        ("Fn", "definition[1][1][1][0]"),
        ("Fn", "definition[2]"),
    ]
    assert nodes[0] is flow.plan
    assert isinstance(flow.plan, plan.Block)
    assert [n.concurrent for n in nodes if isinstance(n, plan.Block)] == [False, True, False, False]
    assert nodes[6].name == "inner"
    steps = [n for n in nodes if isinstance(n, plan.Step)]
    assert [s.info for s in steps] == list(flow.steps)
    assert steps[1].params == (("y", inspect.Parameter.empty),)
    assert steps[1].missing({}) == ("y",)
