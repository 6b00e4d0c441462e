"""What every subcommand shares about failing: the program name, the usage error and how
errors are printed."""

from __future__ import annotations

import sys
import traceback

__all__ = ["PROG", "UsageError", "fail", "format_exception"]

PROG = "asyncdataflow"


class UsageError(Exception):
    """A mistake on the command line: printed to stderr without a traceback, exit 2."""


def fail(message: str) -> int:
    """Print a usage error the way argparse does and return its exit code, 2."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def format_exception(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)).rstrip()
