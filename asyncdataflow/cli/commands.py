"""What every subcommand's ``register`` does: add its parser, with the flow target as its
first argument, and the handler that runs it (whose docstring is the command's help)."""

from __future__ import annotations

import argparse
import inspect
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
    target: str = "MODULE:ATTR",
    target_help: str | None = None,
    target_optional: bool = False,
) -> argparse.ArgumentParser:
    """Add subcommand ``name``, run by ``handler``, taking the flow ``target``; returns its
    parser for the options.

    As with click, the handler's docstring is the command's help: its first line is the
    summary in the command list, the paragraphs after it the description ``--help`` shows
    (argparse fills the lines again, so where a docstring breaks them does not matter).
    """
    doc = inspect.getdoc(handler)
    if not doc:
        raise TypeError(f"subcommand {name!r}: its handler {handler!r} needs a docstring")
    summary, _, description = doc.partition("\n\n")
    parser = commands.add_parser(name, help=summary, description=description)
    options: dict[str, Any] = {"metavar": target, "help": target_help}
    if target_optional:
        options["nargs"] = "?"
    parser.add_argument("target", **options)
    parser.set_defaults(handler=handler)
    return parser
