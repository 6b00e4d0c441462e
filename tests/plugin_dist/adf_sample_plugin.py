"""A third-party asyncdataflow plugin, installed through its entry point only.

tests/test_entry_points.py puts this directory on sys.path; importlib.metadata then finds
``adf_sample_plugin-0.1.dist-info`` and its ``entry_points.txt``.
"""

from __future__ import annotations

from typing import Any

from asyncdataflow import hookimpl

#: (hook, flow name, step name or None) for every call, for the test to read
CALLS: list[tuple[str, str, str | None]] = []


@hookimpl
def before_flow_run(flow: Any) -> None:
    CALLS.append(("before_flow_run", flow.name, None))


@hookimpl
def after_step_run(flow: Any, step: Any) -> None:
    CALLS.append(("after_step_run", flow.name, step.name))


@hookimpl
def after_flow_run(flow: Any, error: BaseException | None) -> None:
    CALLS.append(("after_flow_run", flow.name, None if error is None else type(error).__name__))
