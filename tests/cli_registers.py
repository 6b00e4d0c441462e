"""A module that registers a global plugin when imported, for `asyncdataflow plugins
cli_registers` (run in a subprocess, so the test process keeps no global plugin)."""

from __future__ import annotations

from cli_flows import traced

from asyncdataflow import DataFlow, hookimpl, register_plugin

__all__ = ["Audit", "traced"]


class Audit:
    """A plugin registered globally when this module is imported."""

    @hookimpl
    def before_flow_run(self, flow: DataFlow) -> None:
        pass

    @hookimpl
    def after_flow_run(self, flow: DataFlow) -> None:
        pass


register_plugin(Audit(), name="cli-audit")
