"""``asyncdataflow check``: show how the data reaches every step of a flow, without
running it, and fail on a near miss (a parameter spelled like a key that reaches it)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ..exceptions import DataFlowWiringError
from ..flow import DataFlow
from .commands import Commands, add_command
from .errors import PROG, UsageError
from .output import to_json
from .target import import_module, load_flow

__all__ = ["register"]


def register(commands: Commands) -> None:
    check = add_command(commands, "check", handle, target="MODULE[:ATTR]")
    check.add_argument("--json", action="store_true", help="print the report as JSON")


def _wiring_error(error: BaseException) -> DataFlowWiringError | None:
    """The DataFlowWiringError behind a failed import or factory call, if that is what
    it was."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, DataFlowWiringError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _flows(target: str) -> list[tuple[str, DataFlow]]:
    if ":" in target:
        return [(target, load_flow(target))]
    module = import_module(target)
    found = [(f"{target}:{n}", v) for n, v in vars(module).items() if isinstance(v, DataFlow)]
    if not found:
        raise UsageError(f"module {target!r} defines no DataFlow at its top; name one: MODULE:ATTR")
    return found


def handle(args: argparse.Namespace) -> int:
    """check a flow's wiring without running it

    For every step: its place, the parameters it needs, the keys known to be available
    there, whether it is a guard, and its outputs. Exits 1 when a step can never be taken
    or has a near miss (a parameter spelled like a key that reaches it), 0 otherwise.
    MODULE alone checks every flow defined at the top of the module.
    """
    try:
        flows = _flows(args.target)
    except UsageError as error:
        wiring = _wiring_error(error)
        if wiring is None:
            raise
        print(f"{PROG}: check: {args.target}: the flow cannot be built:\n{wiring}", file=sys.stderr)
        return 1
    bad = 0
    reports = []
    for name, flow in flows:
        report = flow.explain()
        if args.json:
            reports.append({"target": name, **dataclasses.asdict(report)})
        else:
            print(f"{name}: {report}")
        for step in report.problems:
            bad += 1
            for param, close in step.near_misses:
                print(
                    f"{PROG}: check: {name}: step {step.name!r} at {step.path} needs "
                    f"{param!r}, which only the call's arguments could bring; did you mean "
                    f"{close!r}?",
                    file=sys.stderr,
                )
    if args.json:
        # MODULE:ATTR gives one report; MODULE a list, one per flow
        print(to_json(reports[0] if ":" in args.target else reports, indent=2))
    return 1 if bad else 0
