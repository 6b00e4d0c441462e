"""``asyncdataflow run``: run a flow once (or as a loop) and print its result as JSON."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from .._names import closest
from ..flow import DataFlow
from ..hookspecs import hookimpl
from .commands import Commands, add_command
from .errors import PROG, UsageError, fail, format_exception
from .kwargs import parse_kwargs
from .output import print_json
from .signals import stop_on_signals
from .target import close_flow, load_flow

__all__ = ["register"]


def register(commands: Commands) -> None:
    run = add_command(
        commands,
        "run",
        handle,
        target_help="a DataFlow, or a function with no arguments that returns one",
    )
    run.add_argument("kwargs", nargs="*", metavar="key=value | key:=JSON")
    run.add_argument(
        "--loop",
        action="store_true",
        help="run as an infinity loop; "
        "SIGINT/SIGTERM stop it after the current iteration, a second one cancels",
    )
    run.add_argument(
        "--interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="pause between loop iterations (with --loop)",
    )
    run.add_argument(
        "--each",
        action="store_true",
        help="print every loop iteration's result as a JSON line (with --loop)",
    )
    run.add_argument(
        "--indent", type=int, default=None, metavar="N", help="indent the JSON output by N spaces"
    )
    # key=value arguments may come after options (`run m:f --loop a=1`)
    run.set_defaults(kwargs_anywhere=True)


def handle(args: argparse.Namespace) -> int:
    """run a flow once (or as a loop) and print its result as JSON

    Run MODULE:ATTR with the given keyword arguments and print the result as JSON.
    key=value passes a string, key:=JSON a parsed JSON value.
    """
    return asyncio.run(_run(args))


class _PrintEachIteration:
    """A per-flow plugin for ``run --each``: one JSON line per loop iteration."""

    def __init__(self, indent: int | None) -> None:
        self.indent = indent

    @hookimpl
    def after_loop_iteration(self, result: dict[str, Any] | None) -> None:
        if result is not None:
            print_json(result, self.indent)


def _loop_flow(flow: DataFlow, args: argparse.Namespace) -> DataFlow:
    """The flow to run for ``run``: itself, or rebuilt as an infinity loop."""
    if not (args.loop or args.interval is not None or args.each):
        return flow
    if not (args.loop or flow.infinity_loop):
        raise UsageError("--interval and --each apply to loops: add --loop")
    plugins = flow.plugins + ((_PrintEachIteration(args.indent),) if args.each else ())
    interval = (
        args.interval
        if args.interval is not None
        else (flow.interval if flow.infinity_loop else 0.0)
    )
    if interval < 0:
        raise UsageError(f"--interval {interval}: must be >= 0 seconds")
    return DataFlow(
        flow.definition,
        infinity_loop=True,
        interval=interval,
        args_visibility=flow.args_visibility,
        executor=flow.executor,
        plugins=plugins,
        name=flow.name,
        retry=flow.retry,
        dead_letter=flow.dead_letter,
        checkpoint=flow.checkpoint,
    )


def _missing_arguments(flow: DataFlow, kwargs: dict[str, Any]) -> str | None:
    """Why the flow's first item cannot be taken with these arguments, or None."""
    candidates = flow.missing_arguments(kwargs)
    if not candidates:
        return None
    needed = sorted({name for _, missing in candidates for name in missing})
    steps = "; ".join(
        f"{info.name} at {info.path} takes {', '.join(missing)}" for info, missing in candidates
    )
    hint = " ".join(f"{name}=..." for name in needed)
    message = f"the flow needs {' or '.join(needed)} ({steps}); pass {hint} (or NAME:=JSON)"
    for given in kwargs:
        close = closest(given, needed)
        if close and given not in needed:
            message += f"; did you mean {close}= instead of {given}=?"
    return message


async def _run(args: argparse.Namespace) -> int:
    kwargs = parse_kwargs(args.kwargs)
    flow = _loop_flow(load_flow(args.target), args)
    problem = _missing_arguments(flow, kwargs)
    if problem is not None:
        return fail(problem)
    loop = asyncio.get_running_loop()

    async def call() -> dict[str, Any]:
        return await flow(**kwargs)

    task = loop.create_task(call())

    def stop_loop(name: str) -> None:
        print(
            f"{PROG}: {name}: stopping after the current iteration (send it again to cancel)",
            file=sys.stderr,
            flush=True,
        )
        flow.stop()

    code = 0
    received: list[int] = []
    try:
        with stop_on_signals(task, stop_loop if flow.infinity_loop else None) as received:
            result = await task
    except asyncio.CancelledError:
        if not received:
            raise
        name = signal.Signals(received[-1]).name
        print(f"{PROG}: {name}: run cancelled", file=sys.stderr)
        code = 128 + received[-1]
    except Exception as error:
        print(format_exception(error), file=sys.stderr)
        code = 1
    else:
        if not args.each and not print_json(result, args.indent):
            code = 1
    finally:
        if not await close_flow(flow):
            code = code or 1
    return code
