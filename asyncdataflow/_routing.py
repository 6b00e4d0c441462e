"""What happens when a step or block is not taken: the routing error that names what
was missing, and the ``on_step_skipped`` report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._compiler import Block, Fn, guard_missing
from ._names import did_you_mean
from .exceptions import DataFlowRoutingError
from .info import RunInfo

if TYPE_CHECKING:
    from ._hooks import Hooks
    from .flow import DataFlow

Data = dict[str, Any]


def _describe(node: Fn | Block, data: Any) -> str:
    lines = []
    for fn, missing in guard_missing(node, data):
        hints = "".join(did_you_mean(n, data, exclude=fn.info.params) for n in missing)
        lines.append(f"  - {fn.info.name} at {fn.info.path} is missing {list(missing)}{hints}")
    return "\n".join(lines)


def routing_error(node: Fn | Block, data: Any, first: bool) -> DataFlowRoutingError:
    if first:
        missing = sorted({n for _, m in guard_missing(node, data) for n in m})
        example = ", ".join(f"{n}=..." for n in missing) or "..."
        return DataFlowRoutingError(
            f"the flow's first item ({node.path}) could not be taken: a flow needs the "
            f"arguments of its first step.\n{_describe(node, data)}\n"
            f"  available keys: {sorted(data)}\n"
            f"Pass the missing arguments when calling the flow: flow({example})."
        )
    return DataFlowRoutingError(
        f"no branch of the concurrent block at {node.path} could be taken: at least one "
        f"step must get its arguments and run.\n{_describe(node, data)}\n"
        f"  available keys: {sorted(data)}\n"
        f"Make the step before the block return the missing keys, or rename them with "
        f"args_mapper."
    )


def report_skipped(
    hooks: Hooks, flow: DataFlow, run: RunInfo | None, node: Fn | Block, data: Data
) -> None:
    available = tuple(data)
    for fn in node.steps():
        hooks.emit(
            "on_step_skipped",
            flow=flow,
            run=run,
            step=fn.info,
            missing=fn.missing(data),
            available=available,
        )
