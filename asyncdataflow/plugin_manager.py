"""The plugin manager: global registration, per-flow plugins, entry points.

pluggy owns registration, call order and monitoring (asyncdataflow/_hooks.py says how a
flow calls the implementations pluggy holds). The global manager is a :class:`PluginManager`
(a ``pluggy.PluginManager``) that counts its changes: whatever registers, unregisters or
blocks a plugin (:func:`register_plugin`, or pluggy's own ``register``, ``unregister``,
``set_blocked`` on :func:`get_plugin_manager`) moves :data:`VERSION`, and every flow
rebuilds its hooks on its next call. Third-party plugins are loaded with pluggy's
``load_setuptools_entrypoints`` from the group ``asyncdataflow``, lazily, once, the first
time a flow needs its hooks, so ``list_plugin_distinfo()`` names their distributions.
Built-in plugins (the retry decider) go through the same :func:`register_plugin` path.

Environment switches:

- ``ASYNCDATAFLOW_LOAD_PLUGINS``: a comma-separated list of entry-point names to load
  (empty: load none). Unset: load all.
- ``ASYNCDATAFLOW_TRACE_HOOKS``: set (non-empty), every hook call is logged at DEBUG on
  the logger ``asyncdataflow.hooks``, through pluggy's ``add_hookcall_monitoring``. Read
  whenever a flow builds its hooks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from .hookspecs import OBSERVER_HOOKS, PROJECT_NAME, hookimpl
from .info import StepInfo

__all__ = [
    "VERSION",
    "PluginManager",
    "get_plugin_manager",
    "load_entry_points",
    "plugin_manager_for",
    "register_plugin",
    "unregister_plugin",
    "version",
]

logger = logging.getLogger("asyncdataflow")
hook_logger = logging.getLogger("asyncdataflow.hooks")

#: moved by every change of any :class:`PluginManager`; a flow compares it on each call
#: and rebuilds its hooks when it moved
VERSION = 0


def _changed() -> None:
    global VERSION
    VERSION += 1


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, for the ``asyncdataflow`` hooks, which

    - counts its changes (:data:`VERSION`), so that flows built earlier see a plugin
      registered, unregistered or blocked through any of pluggy's methods;
    - calls the implementations of an observer hook one at a time, each inside its own
      ``try``: one that raises is logged and the others still run;
    - refuses ``wrapper``/``hookwrapper`` implementations of observer hooks when they are
      registered (one implementation is called at a time: a wrapper has nothing to wrap).

    A per-flow manager (``parent`` given) holds the global plugins plus the flow's own, and
    hands its hook calls to the global manager, so that ``add_hookcall_monitoring`` on
    :func:`get_plugin_manager` sees every flow's hook calls.
    """

    def __init__(self, parent: PluginManager | None = None) -> None:
        super().__init__(PROJECT_NAME)
        self._parent = parent
        #: the manager whose monitoring sees this one's hook calls
        self.root: PluginManager = self if parent is None else parent.root
        #: pluggy's own hook execution: ``_inner_hookexec`` is something else exactly
        #: while ``add_hookcall_monitoring`` wraps it
        self.plain_hookexec = self._inner_hookexec
        self.add_hookspecs(hookspecs)

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> pluggy.HookimplOpts | None:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is not None and (opts.get("wrapper") or opts.get("hookwrapper")):
            hook = opts.get("specname") or name
            if hook in OBSERVER_HOOKS:
                raise pluggy.PluginValidationError(
                    plugin,
                    f"plugin {plugin!r}: {hook} is an observer hook and cannot be a "
                    f"wrapper (wrapper=True or hookwrapper=True): observer hooks are called "
                    f"one implementation at a time, so a wrapper has nothing to wrap. "
                    f"Implement it as a plain @hookimpl (before_step_run/after_step_run "
                    f"already bracket each step).",
                )
        return opts

    def _changed(self) -> None:
        if self._parent is None:  # a per-flow manager changes only while it is made
            _changed()

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        try:
            return super().register(plugin, name)
        finally:
            self._changed()

    def unregister(self, plugin: Any | None = None, name: str | None = None) -> Any | None:
        try:
            return super().unregister(plugin, name)
        finally:
            self._changed()

    def set_blocked(self, name: str) -> None:
        try:
            super().set_blocked(name)
        finally:
            self._changed()

    def unblock(self, name: str) -> bool:
        try:
            return super().unblock(name)
        finally:
            self._changed()

    def _hookexec(
        self,
        hook_name: str,
        methods: Sequence[pluggy.HookImpl],
        kwargs: Mapping[str, object],
        firstresult: bool,
    ) -> object | list[object]:
        if self._parent is not None:
            return self._parent._hookexec(hook_name, methods, kwargs, firstresult)
        if hook_name not in OBSERVER_HOOKS:
            return self._inner_hookexec(hook_name, methods, kwargs, firstresult)
        for impl in reversed(methods):  # pluggy's call order
            try:
                self._inner_hookexec(hook_name, (impl,), kwargs, False)
            except Exception:
                logger.exception(
                    "asyncdataflow: plugin %r failed in hook %s", impl.plugin_name, hook_name
                )
        return []

    def list_plugin_distinfo(self) -> list[tuple[Any, Any]]:
        own = super().list_plugin_distinfo()
        return own if self._parent is None else [*self._parent.list_plugin_distinfo(), *own]


_pm = PluginManager()
_state = {"entry_points_loaded": False}
_untrace: list[Callable[[], None]] = []


def _trace_call(
    hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, object]
) -> None:
    plugins = ", ".join(i.plugin_name for i in impls)
    args = ", ".join(dict.fromkeys(a for i in impls for a in (*i.argnames, *i.kwargnames)))
    hook_logger.debug("hook %s -> plugin %s (%s)", hook_name, plugins, args)


def _trace_done(
    outcome: pluggy.Result[object],
    hook_name: str,
    impls: Sequence[pluggy.HookImpl],
    kwargs: Mapping[str, object],
) -> None:
    pass


def _trace_hooks() -> None:
    """Follow ``ASYNCDATAFLOW_TRACE_HOOKS``: monitor the global manager's hook calls (a
    per-flow manager hands its calls to it) while it is set."""
    wanted = bool(os.environ.get("ASYNCDATAFLOW_TRACE_HOOKS"))
    if wanted and not _untrace:
        _untrace.append(_pm.add_hookcall_monitoring(_trace_call, _trace_done))
    elif not wanted and _untrace:
        _untrace.pop()()


class _RetryPlugin:
    """Built-in: answers ``step_retry_delay`` from the step's :class:`Retry` policy."""

    @hookimpl(trylast=True)
    def step_retry_delay(self, step: StepInfo, error: BaseException, attempt: int) -> float | None:
        return step.retry.delay(error, attempt) if step.retry is not None else None


retry_plugin = _RetryPlugin()


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register ``plugin`` (a module or object with ``@hookimpl`` methods) for every flow.
    Flows pick it up on their next call. Returns the name it was registered under.
    ``get_plugin_manager().register(plugin)`` does the same."""
    return str(_pm.register(plugin, name=name))


def unregister_plugin(plugin: Any = None, name: str | None = None) -> None:
    """Remove a plugin registered with :func:`register_plugin` (or from an entry point)."""
    _pm.unregister(plugin, name=name)


def load_entry_points() -> None:
    """Load the ``asyncdataflow`` entry-point group once, with pluggy's
    ``load_setuptools_entrypoints``; a plugin that fails to load is logged and left out."""
    if _state["entry_points_loaded"]:
        return
    _state["entry_points_loaded"] = True
    allowed = os.environ.get("ASYNCDATAFLOW_LOAD_PLUGINS")
    names = dict.fromkeys(ep.name for ep in entry_points(group=PROJECT_NAME))
    if allowed is not None:
        wanted = {n.strip() for n in allowed.split(",") if n.strip()}
        names = {n: None for n in names if n in wanted}
    for name in names:
        try:
            _pm.load_setuptools_entrypoints(PROJECT_NAME, name=name)
        except Exception:
            value = next((ep.value for ep in entry_points(group=PROJECT_NAME, name=name)), "")
            logger.exception("asyncdataflow: could not load plugin %r (%s)", name, value)
    _changed()


def get_plugin_manager() -> PluginManager:
    """The global plugin manager, with entry points loaded."""
    load_entry_points()
    _trace_hooks()
    return _pm


def version() -> int:
    return VERSION


def plugin_manager_for(plugins: Iterable[Any]) -> PluginManager:
    """The global manager, or a new one holding the global plugins plus ``plugins``."""
    pm = get_plugin_manager()
    extra = list(plugins)
    if not extra:
        return pm
    own = PluginManager(parent=pm)
    for name, plugin in pm.list_name_plugin():
        if plugin is not None:  # a blocked name
            own.register(plugin, name=name)
    for plugin in extra:
        if not own.is_registered(plugin):  # already global: registered once is enough
            own.register(plugin)
    return own


#: the names the package registers its own plugins under (`asyncdataflow plugins` shows
#: them as built-in; a plugin class of the package that a user registers is not)
BUILT_IN_NAMES = frozenset({"asyncdataflow.retry"})
register_plugin(retry_plugin, name="asyncdataflow.retry")
