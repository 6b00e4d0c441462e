"""``asyncdataflow graph``: print the flow's structure as Mermaid or DOT, or render it."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from .. import graph
from .commands import Commands, add_command
from .errors import PROG, UsageError
from .target import load_flow

__all__ = ["register"]

_IMAGE_FORMATS = {
    "svg": "svg",
    "png": "png",
    "pdf": "pdf",
    "jpg": "jpg",
    "jpeg": "jpg",
    "gif": "gif",
}
_TEXT_FORMATS = {"mmd": "mermaid", "mermaid": "mermaid", "dot": "dot", "gv": "dot"}


def register(commands: Commands) -> None:
    graph_ = add_command(commands, "graph", handle)
    graph_.add_argument(
        "--format", choices=("mermaid", "dot"), default=None, help="text format (default mermaid)"
    )
    graph_.add_argument("--output", metavar="FILE", help="write or render to FILE")


def handle(args: argparse.Namespace) -> int:
    """print the flow's structure as Mermaid or DOT, or render it

    Print the flow's blocks and steps, with the parameters each takes and the keys it
    returns where known. --output FILE.svg/.png/.pdf renders through Graphviz's dot;
    FILE.mmd/.dot writes the text.
    """
    flow = load_flow(args.target)
    if args.output is None:
        text = graph.to_dot(flow) if args.format == "dot" else graph.to_mermaid(flow)
        sys.stdout.write(text)
        return 0
    ext = Path(args.output).suffix.lower().lstrip(".")
    if ext in _TEXT_FORMATS:
        kind = args.format or _TEXT_FORMATS[ext]
        text = graph.to_dot(flow) if kind == "dot" else graph.to_mermaid(flow)
        Path(args.output).write_text(text, encoding="utf-8")
        return 0
    if ext not in _IMAGE_FORMATS:
        known = ", ".join(f".{e}" for e in [*_IMAGE_FORMATS, *_TEXT_FORMATS])
        raise UsageError(f"--output {args.output}: unknown extension; use one of {known}")
    if args.format == "mermaid":
        raise UsageError(
            "images are drawn by Graphviz from the DOT text; drop --format mermaid "
            "(or write the Mermaid text to a .mmd file)"
        )
    dot = shutil.which("dot")
    if dot is None:
        raise UsageError(
            f"--output {args.output}: rendering needs Graphviz's `dot`, which is not on "
            f"PATH. Install it (Debian/Ubuntu: apt-get install graphviz; macOS: brew "
            f"install graphviz), or write the text with --output flow.dot / flow.mmd"
        )
    done = subprocess.run(
        [dot, f"-T{_IMAGE_FORMATS[ext]}", "-o", args.output],
        input=graph.to_dot(flow),
        text=True,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        print(f"{PROG}: dot failed ({done.returncode}):\n{done.stderr.strip()}", file=sys.stderr)
        return 1
    return 0
