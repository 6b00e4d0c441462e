"""``asyncdataflow map``: run a flow once per line of a JSON Lines file."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import stat
import sys
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import IO, TYPE_CHECKING, Any

from .errors import UsageError
from .output import error_record, to_json
from .progress import Progress
from .target import close_flow, load_flow

if TYPE_CHECKING:
    from ..flow import DataFlow

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    map_ = commands.add_parser(
        "map",
        help="run a flow once per line of a JSON Lines file",
        description="Run MODULE:ATTR once per JSON object in --input; write the results in "
        "input order as JSON lines and the failures (line, input, error) to --errors.",
    )
    map_.add_argument("target", metavar="MODULE:ATTR")
    map_.add_argument(
        "--input",
        required=True,
        metavar="FILE.jsonl",
        help="one JSON object of keyword arguments per line ('-': stdin)",
    )
    map_.add_argument(
        "--concurrency",
        type=int,
        default=10,
        metavar="N",
        help="at most N runs at a time (default 10)",
    )
    map_.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run the map on a Dask cluster: a scheduler address (tcp://host:8786) or "
        "local:N to start N local worker processes; the flow's module must be importable "
        "on the workers",
    )
    map_.add_argument(
        "--chunk-size",
        type=int,
        default=100,
        metavar="N",
        help="with --dask: inputs per Dask task (default 100); --concurrency is per chunk",
    )
    map_.add_argument("--output", metavar="FILE.jsonl", help="results (default: stdout)")
    map_.add_argument("--errors", metavar="FILE.jsonl", help="failures (default: stderr)")
    map_.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    return asyncio.run(_map(args))


def _count_lines(path: str) -> int | None:
    if path == "-" or not stat.S_ISREG(os.stat(path).st_mode):
        return None
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _open(path: str, mode: str, what: str) -> IO[str]:
    try:
        return open(path, mode, encoding="utf-8", newline="\n" if "w" in mode else None)
    except OSError as error:
        raise UsageError(f"{what} {path!r}: {error.strerror or error}") from None


async def _map(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        raise UsageError(f"--concurrency {args.concurrency}: must be >= 1")
    if args.chunk_size < 1:
        raise UsageError(f"--chunk-size {args.chunk_size}: must be >= 1")
    flow = load_flow(args.target)
    if flow.infinity_loop:
        raise UsageError(f"{args.target} is an infinity loop; map needs runs that finish")
    async with contextlib.AsyncExitStack() as stack:
        source = (
            sys.stdin
            if args.input == "-"
            else stack.enter_context(_open(args.input, "r", "--input"))
        )
        total = _count_lines(args.input) if args.input != "-" else None
        out = sys.stdout
        if args.output:
            out = stack.enter_context(_open(args.output, "w", "--output"))
        errors = sys.stderr
        if args.errors:
            errors = stack.enter_context(_open(args.errors, "w", "--errors"))
        progress = Progress(sys.stderr, total, sys.stderr.isatty())
        # (line number, input, error for a line that is not a run) in input order
        lines: deque[tuple[int, Any, BaseException | None]] = deque()

        def inputs() -> Iterator[dict[str, Any]]:
            for number, raw in enumerate(source, 1):
                text = raw.strip()
                if not text:
                    continue
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as error:
                    lines.append((number, text, error))
                    continue
                if not isinstance(value, dict):
                    kind = type(value).__name__
                    lines.append(
                        (
                            number,
                            value,
                            TypeError(f"expected a JSON object of keyword arguments, got {kind}"),
                        )
                    )
                    continue
                lines.append((number, value, None))
                yield value

        def failure(number: int, value: Any, error: BaseException) -> None:
            progress.failed += 1
            if errors is sys.stderr:
                progress.clear()
            record = {"line": number, "input": value, "error": error_record(error)}
            errors.write(to_json(record) + "\n")
            errors.flush()

        def skip_bad_lines() -> None:
            while lines and lines[0][2] is not None:
                number, value, error = lines.popleft()
                assert error is not None
                failure(number, value, error)

        if args.dask:
            runs = await _on_dask(flow, inputs(), args, stack)
        else:
            runs = flow.map(inputs(), concurrency=args.concurrency, return_exceptions=True)
        progress.draw(force=True)
        async for outcome in runs:
            skip_bad_lines()
            number, value, _ = lines.popleft()
            if isinstance(outcome, BaseException):
                failure(number, value, outcome)
            else:
                progress.ok += 1
                out.write(to_json(outcome) + "\n")
            progress.draw()
        skip_bad_lines()
        out.flush()
        progress.finish()
        if not await close_flow(flow):
            return 1
    return 1 if progress.failed else 0


async def _on_dask(
    flow: DataFlow,
    inputs: Iterator[dict[str, Any]],
    args: argparse.Namespace,
    stack: contextlib.AsyncExitStack,
) -> AsyncIterator[Any]:
    """``asyncdataflow.dask.map`` over ``inputs`` on the cluster of ``--dask``."""
    from .cluster import open_client

    # read by distributed when imported, here and in the workers of a local cluster: its
    # INFO lines would mix into the progress line and the failures on stderr
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    try:
        from .. import dask
    except ImportError:
        raise UsageError('--dask needs distributed: pip install "asyncdataflow[dask]"') from None
    from ..exceptions import DataFlowNotPicklableError

    try:
        dask.dumps_flow(flow)  # refused before a cluster is started
    except DataFlowNotPicklableError as error:
        raise UsageError(str(error)) from None
    client = await open_client(args.dask, stack)
    return dask.map(
        flow,
        inputs,
        client=client,
        concurrency=args.concurrency,
        chunk_size=args.chunk_size,
        return_exceptions=True,
    )
