"""The hooks a flow calls, looked up once per plugin-manager generation.

pluggy owns registration, ordering and monitoring: the implementations of each observer
hook are those pluggy holds (read again whenever :data:`asyncdataflow.plugin_manager.VERSION`
moves, which every registration path moves), in pluggy's call order. A hook with no
implementation is ``None`` here and never called.

A hook with implementations is called through one function written for it (see
:func:`_caller`): while nothing monitors the global manager, it calls each implementation
as pluggy's ``_multicall`` calls one plain implementation (its ``argnames`` positionally,
its ``kwargnames`` by keyword), each in its own ``try``; as soon as
``add_hookcall_monitoring`` (or ``ASYNCDATAFLOW_TRACE_HOOKS``) wraps the manager's hook
execution, every call goes through the manager's ``_hookexec`` again, so the monitor sees
it. The check is made on each call: monitoring added after a flow was built sees its next
hook call.
"""

from __future__ import annotations

import itertools
import linecache
import logging
from collections.abc import Callable, Iterable
from typing import Any

import pluggy

from . import plugin_manager as _plugins
from .hookspecs import OBSERVER_HOOKS

logger = logging.getLogger("asyncdataflow")

STEP_HOOKS = ("before_step_run", "after_step_run", "on_step_error", "on_step_retry")

#: an observer hook's caller: keyword arguments only, the hook's every argument
Call = Callable[..., None]


class Hooks:
    """The hooks of one plugin manager, as they are at one generation: for each observer
    hook the implementations pluggy holds (empty: the hook is never called) and its caller
    (``None`` when it has none), and the retry decision hook."""

    __slots__ = (
        "after_flow_run",
        "after_loop_iteration",
        "after_step_run",
        "any",
        "before_flow_run",
        "before_step_run",
        "callers",
        "flow_level",
        "impls",
        "on_step_error",
        "on_step_retry",
        "pm",
        "retry_decider",
        "step_level",
    )

    def __init__(self, pm: _plugins.PluginManager) -> None:
        self.pm = pm
        self.impls = {
            name: tuple(getattr(pm.hook, name).get_hookimpls()) for name in OBSERVER_HOOKS
        }
        self.callers: dict[str, Call] = {
            name: _caller(pm, name, impls) for name, impls in self.impls.items() if impls
        }
        get = self.callers.get
        self.before_flow_run = get("before_flow_run")
        self.after_flow_run = get("after_flow_run")
        self.after_loop_iteration = get("after_loop_iteration")
        self.before_step_run = get("before_step_run")
        self.after_step_run = get("after_step_run")
        self.on_step_error = get("on_step_error")
        self.on_step_retry = get("on_step_retry")
        self.retry_decider = pm.hook.step_retry_delay
        self.any = bool(self.callers)
        self.step_level = any(n in self.callers for n in STEP_HOOKS)
        self.flow_level = self.before_flow_run is not None or self.after_flow_run is not None

    def emit(self, name: str, **kwargs: Any) -> None:
        """Call observer hook ``name`` (each implementation on its own: one that raises is
        logged and the others still run); nothing when it has no implementation."""
        call = self.callers.get(name)
        if call is not None:
            call(**kwargs)


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


# -- the callers ----------------------------------------------------------------------

#: one factory per shape (the hook, and each implementation's argnames and kwargnames):
#: flows rebuilt, or given plugins of the same shape, reuse the compiled code
_FACTORIES: dict[tuple[Any, ...], Callable[..., Call]] = {}
_numbers = itertools.count()


def _caller(pm: _plugins.PluginManager, name: str, impls: tuple[pluggy.HookImpl, ...]) -> Call:
    """The function that calls observer hook ``name`` of ``pm`` with ``impls``."""
    hook = getattr(pm.hook, name)
    spec = tuple(hook.spec.argnames)
    order = tuple(reversed(impls))  # pluggy's call order
    calls = tuple((tuple(i.argnames), tuple(k for k in i.kwargnames if k in spec)) for i in order)
    factory = _FACTORIES.get((name, calls))
    if factory is None:
        factory = _FACTORIES[name, calls] = _compile(name, spec, calls)
    root = pm.root

    def failed(index: int) -> None:
        logger.exception(
            "asyncdataflow: plugin %r failed in hook %s", order[index].plugin_name, name
        )

    return factory(
        root, root.plain_hookexec, pm._hookexec, impls, failed, *(i.function for i in order)
    )


def _compile(
    name: str, spec: tuple[str, ...], calls: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
) -> Callable[..., Call]:
    """The factory of hook ``name``'s caller: ``spec`` is the hook's arguments, ``calls``
    each implementation's positional and keyword arguments, in call order."""
    functions = [f"_f{i}" for i in range(len(calls))]
    lines = [
        f"def make(_root, _plain, _hookexec, _impls, _failed, {', '.join(functions)}):",
        f"    def {name}(*, {', '.join(spec)}):",
        "        if _root._inner_hookexec is not _plain:  # monitored: through the manager",
        f"            _hookexec({name!r}, _impls, {{{', '.join(f'{a!r}: {a}' for a in spec)}}}"
        ", False)",
        "            return",
    ]
    for i, (args, kwargs) in enumerate(calls):
        call = ", ".join([*args, *(f"{k}={k}" for k in kwargs)])
        lines += [
            "        try:",
            f"            _f{i}({call})",
            "        except Exception:",
            f"            _failed({i})",
        ]
    lines += [f"    return {name}", ""]
    source = "\n".join(lines)
    filename = f"<asyncdataflow hook caller {next(_numbers)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), namespace)
    factory: Callable[..., Call] = namespace["make"]
    return factory
