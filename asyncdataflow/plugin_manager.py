"""The plugin manager: global registration, per-flow plugins, entry points.

Third-party plugins are found through the entry-point group ``asyncdataflow`` and loaded
lazily, once, the first time a flow needs its hooks. Built-in plugins (the retry
decider) go through the same :func:`register_plugin` path.

Environment switches:

- ``ASYNCDATAFLOW_LOAD_PLUGINS``: a comma-separated list of entry-point names to load
  (empty: load none). Unset: load all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from .hookspecs import PROJECT_NAME, hookimpl
from .info import StepInfo

logger = logging.getLogger("asyncdataflow")

_pm = pluggy.PluginManager(PROJECT_NAME)
_pm.add_hookspecs(hookspecs)
_state = {"entry_points_loaded": False}
#: bumped on every (un)registration; flows compare it on each call and rebuild their plan
VERSION = 0


class _RetryPlugin:
    """Built-in: answers ``step_retry_delay`` from the step's :class:`Retry` policy."""

    @hookimpl(trylast=True)
    def step_retry_delay(self, step: StepInfo, error: BaseException, attempt: int) -> float | None:
        return step.retry.delay(error, attempt) if step.retry is not None else None


retry_plugin = _RetryPlugin()


def _bump() -> None:
    global VERSION
    VERSION += 1


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register ``plugin`` (a module or object with ``@hookimpl`` methods) for every flow.
    Flows pick it up on their next call. Returns the name it was registered under."""
    registered = _pm.register(plugin, name=name)
    _bump()
    return str(registered)


def unregister_plugin(plugin: Any = None, name: str | None = None) -> None:
    """Remove a plugin registered with :func:`register_plugin` (or from an entry point)."""
    _pm.unregister(plugin, name=name)
    _bump()


def load_entry_points() -> None:
    """Load the ``asyncdataflow`` entry-point group once; a plugin that fails to load is
    logged and left out."""
    if _state["entry_points_loaded"]:
        return
    _state["entry_points_loaded"] = True
    allowed = os.environ.get("ASYNCDATAFLOW_LOAD_PLUGINS")
    names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for ep in entry_points(group=PROJECT_NAME):
        if names is not None and ep.name not in names:
            continue
        if _pm.get_plugin(ep.name) is not None or _pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
            _pm.register(plugin, name=ep.name)
        except Exception:
            logger.exception("asyncdataflow: could not load plugin %r (%s)", ep.name, ep.value)
    _bump()


def get_plugin_manager() -> pluggy.PluginManager:
    """The global plugin manager, with entry points loaded."""
    load_entry_points()
    return _pm


def version() -> int:
    return VERSION


def plugin_manager_for(plugins: Iterable[Any]) -> pluggy.PluginManager:
    """The global manager, or a new one holding the global plugins plus ``plugins``."""
    pm = get_plugin_manager()
    extra = list(plugins)
    if not extra:
        return pm
    own = pluggy.PluginManager(PROJECT_NAME)
    own.add_hookspecs(hookspecs)
    for name, plugin in pm.list_name_plugin():
        own.register(plugin, name=name)
    for plugin in extra:
        if not own.is_registered(plugin):  # already global: registered once is enough
            own.register(plugin)
    return own


#: the names the package registers its own plugins under (`asyncdataflow plugins` shows
#: them as built-in; a plugin class of the package that a user registers is not)
BUILT_IN_NAMES = frozenset({"asyncdataflow.retry"})
register_plugin(retry_plugin, name="asyncdataflow.retry")
