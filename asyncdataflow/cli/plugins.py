"""``asyncdataflow plugins``: list the loaded plugins and the hooks each implements."""

from __future__ import annotations

import argparse
import json
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from ..flow import DataFlow
from ..hookspecs import PROJECT_NAME
from ..plugin_manager import BUILT_IN_NAMES, get_plugin_manager, plugin_manager_for
from .commands import Commands, add_command
from .target import import_module, load_flow

__all__ = ["register"]


def register(commands: Commands) -> None:
    plugins = add_command(commands, "plugins", handle, target="MODULE[:ATTR]", target_optional=True)
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _plugin_object_name(plugin: Any) -> str:
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    cls = type(plugin)
    if isinstance(plugin, type):
        return f"{plugin.__module__}.{plugin.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def plugin_rows(flow: DataFlow | None) -> list[dict[str, Any]]:
    """One row per plugin the flow (or every flow) runs with."""
    pm = plugin_manager_for(flow.plugins) if flow is not None else get_plugin_manager()
    own = {id(p) for p in flow.plugins} if flow is not None else set()
    dists: dict[int, str] = {
        id(plugin): f"{dist.project_name} {dist.version}"
        for plugin, dist in pm.list_plugin_distinfo()
    }
    eps = {ep.name: ep for ep in entry_points(group=PROJECT_NAME)}
    rows: list[dict[str, Any]] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        where = _plugin_object_name(plugin)
        distribution: str | None = dists.get(id(plugin))
        ep = eps.get(name)
        if flow is not None and id(plugin) in own:
            name, source = where, f"flow {flow.name}"
        elif distribution is not None:
            source = "entry point"
        elif ep is not None and where.startswith(ep.module):
            source = "entry point"
            if ep.dist is not None:
                distribution = f"{ep.dist.name} {ep.dist.version}"
        elif name in BUILT_IN_NAMES:  # registered by the package itself
            source = "built-in"
        else:
            source = "registered"
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
        rows.append(
            {
                "name": name,
                "source": source,
                "distribution": distribution,
                "plugin": where,
                "hooks": hooks,
            }
        )
    return rows


def handle(args: argparse.Namespace) -> int:
    """list the loaded plugins and the hooks each implements

    List the built-in, entry-point and registered plugins. Give a MODULE to import first
    (for the plugins it registers), or MODULE:ATTR to add that flow's own.
    """
    flow: DataFlow | None = None
    if args.target:
        if ":" in args.target:
            flow = load_flow(args.target)
        else:
            import_module(args.target)  # for the plugins it registers when imported
    rows = plugin_rows(flow)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("NAME", "SOURCE", "HOOKS")] + [
        (
            r["name"],
            r["source"] + (f" ({r['distribution']})" if r["distribution"] else ""),
            ", ".join(r["hooks"]) or "-",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    for row in table:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip())
    return 0
