"""What every subcommand's ``register`` does: add its parser, with the flow target as its
first argument, and the handler that runs it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

__all__ = ["Commands", "Handler", "add_command"]

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # not subscriptable at run time
    Commands = argparse._SubParsersAction
#: runs a subcommand with its parsed arguments; returns the exit code
Handler = Callable[[argparse.Namespace], int]


def add_command(
    commands: Commands,
    name: str,
    handler: Handler,
    *,
    summary: str,
    description: str,
    target: str = "MODULE:ATTR",
    target_help: str | None = None,
    target_optional: bool = False,
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` (``summary`` for the command list, ``description`` for its
    ``--help``) taking the flow ``target``; returns its parser for the options."""
    parser = commands.add_parser(name, help=summary, description=description)
    options: dict[str, Any] = {"metavar": target, "help": target_help}
    if target_optional:
        options["nargs"] = "?"
    parser.add_argument("target", **options)
    parser.set_defaults(handler=handler)
    return parser
