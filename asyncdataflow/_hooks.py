"""Observer hooks of one flow: the implementations of each, called one by one so that a
failing observer is logged and never breaks a run."""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

logger = logging.getLogger("asyncdataflow")
hook_logger = logging.getLogger("asyncdataflow.hooks")


def _traced(hook: str, plugin: str, func: Any) -> Any:
    """``ASYNCDATAFLOW_TRACE_HOOKS=1``: log every observer hook call (DEBUG, logger
    ``asyncdataflow.hooks``) with the plugin and the names of the arguments it got."""

    @functools.wraps(func)
    def traced(**kwargs: Any) -> Any:
        hook_logger.debug("hook %s -> plugin %s (%s)", hook, plugin, ", ".join(kwargs))
        return func(**kwargs)

    return traced


class Hooks:
    """Per flow: the implementations of each observer hook, called one by one so that a
    failing observer is logged and never breaks a run."""

    OBSERVERS = (
        "before_flow_run",
        "after_flow_run",
        "before_step_run",
        "after_step_run",
        "on_step_error",
        "on_step_skipped",
        "on_step_retry",
        "after_loop_iteration",
        "on_rate_change",
        "on_breaker_change",
    )

    def __init__(self, pm: Any) -> None:
        self.pm = pm
        self.impls: dict[str, tuple[tuple[Any, tuple[str, ...], str], ...]] = {}
        for name in self.OBSERVERS:
            hook = getattr(pm.hook, name)
            impls = [
                (i.function, tuple(i.argnames), i.plugin_name)
                for i in reversed(hook.get_hookimpls())
                if not (i.hookwrapper or getattr(i, "wrapper", False))
            ]
            if os.environ.get("ASYNCDATAFLOW_TRACE_HOOKS"):
                impls = [(_traced(name, plugin, f), args, plugin) for f, args, plugin in impls]
            self.impls[name] = tuple(impls)
        self.retry_decider = pm.hook.step_retry_delay
        self.any = any(self.impls.values())
        self.step_level = any(
            self.impls[n]
            for n in ("before_step_run", "after_step_run", "on_step_error", "on_step_retry")
        )
        self.flow_level = bool(self.impls["before_flow_run"] or self.impls["after_flow_run"])

    def emit(self, name: str, **kwargs: Any) -> None:
        for func, argnames, plugin in self.impls[name]:
            try:
                func(**{a: kwargs[a] for a in argnames if a in kwargs})
            except Exception:
                logger.exception("asyncdataflow: plugin %r failed in hook %s", plugin, name)
