"""The ``asyncdataflow`` command: run a flow, map it over a JSON Lines file, draw it, check
its wiring, replay its dead letters, and list the loaded plugins.

One module per subcommand; each has ``register(commands)``, which adds its parser with
:func:`.commands.add_command` (the flow target and the ``handler``, a function of the
parsed arguments that returns the exit code, whose docstring is the command's help) and
then its own options. A new subcommand
is a new module and one entry in ``COMMANDS``; a new option is a line in its module.
Shared pieces: :mod:`.target` (loading ``MODULE:ATTR``), :mod:`.kwargs` (``key=value`` and
``key:=JSON``), :mod:`.output` (JSON output and error records), :mod:`.progress` (the
progress bar) and :mod:`.errors` (usage errors).

Exit codes: 0 success; 1 a run failed (``run``), at least one input failed (``map``),
at least one dead letter still fails (``replay``), Graphviz failed or ``check`` found a
problem; 2 a mistake on the command line the user can fix (an import path that does not
resolve, an attribute that is not a flow, a bad ``key=value``, a missing file, Graphviz
or an extra not installed); 128 + signal number when a run was cancelled by a signal.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence

from .. import __version__
from . import check, graph, map, plugins, replay, run
from .commands import Commands
from .errors import PROG, UsageError, fail
from .kwargs import parse_kwargs
from .target import load_flow

__all__ = ["COMMANDS", "UsageError", "build_parser", "load_flow", "main", "parse_kwargs"]

Register = Callable[[Commands], None]

#: every subcommand's ``register``, in the order ``--help`` lists them
COMMANDS: tuple[Register, ...] = (
    run.register,
    map.register,
    graph.register,
    check.register,
    replay.register,
    plugins.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run, map, draw asyncdataflow flows, replay their dead letters and list "
        "the loaded plugins.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    # a subcommand that sets kwargs_anywhere takes key=value arguments after its options too
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not getattr(args, "kwargs_anywhere", False) or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.kwargs = [*args.kwargs, *extra]
    try:
        code: int = args.handler(args)
        return code
    except UsageError as error:
        return fail(str(error))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # the reader went away (`... | head`); do not complain about it on exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
