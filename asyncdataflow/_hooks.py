"""The hooks a flow calls, looked up once per plugin-manager generation.

pluggy owns the dispatch: an event is one call of the manager's hook execution (which is
what ``add_hookcall_monitoring`` wraps) with the implementations pluggy holds for that
hook. What is cached here is only the lookup: the implementation lists of the global
manager are read again whenever :data:`asyncdataflow.plugin_manager.VERSION` moves, which
every registration path moves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from . import plugin_manager as _plugins
from .hookspecs import OBSERVER_HOOKS

logger = logging.getLogger("asyncdataflow")

STEP_HOOKS = ("before_step_run", "after_step_run", "on_step_error", "on_step_retry")


class Hooks:
    """The hooks of one plugin manager, as they are at one generation: for each observer
    hook the implementations pluggy holds (empty: the hook is never called), and the
    retry decision hook."""

    __slots__ = ("_exec", "any", "flow_level", "impls", "pm", "retry_decider", "step_level")

    def __init__(self, pm: _plugins.PluginManager) -> None:
        self.pm = pm
        self._exec = pm._hookexec
        self.impls = {
            name: tuple(getattr(pm.hook, name).get_hookimpls()) for name in OBSERVER_HOOKS
        }
        self.retry_decider = pm.hook.step_retry_delay
        self.any = any(self.impls.values())
        self.step_level = any(self.impls[n] for n in STEP_HOOKS)
        self.flow_level = bool(self.impls["before_flow_run"] or self.impls["after_flow_run"])

    def emit(self, name: str, **kwargs: Any) -> None:
        """Call observer hook ``name`` through pluggy (each implementation on its own: one
        that raises is logged by the manager and the others still run)."""
        impls = self.impls[name]
        if impls:
            self._exec(name, impls, kwargs, False)


_shared: tuple[int, Hooks] | None = None


def hooks_for(plugins: Iterable[Any]) -> Hooks:
    """The hooks of a flow with these per-flow ``plugins``: flows without any share one
    :class:`Hooks` per generation of the global manager."""
    global _shared
    extra = tuple(plugins)
    if extra:
        return Hooks(_plugins.plugin_manager_for(extra))
    pm = _plugins.get_plugin_manager()  # loads entry points: may move VERSION
    if _shared is None or _shared[0] != _plugins.VERSION:
        _shared = (_plugins.VERSION, Hooks(pm))
    return _shared[1]
