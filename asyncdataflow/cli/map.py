"""``asyncdataflow map``: run a flow once per line of a JSON Lines file."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import stat
import sys
from collections import deque
from collections.abc import AsyncIterator
from typing import IO, Any

from .._journal import journaled_map, read_journal
from ..exceptions import DataFlowCallError
from ..flow import DataFlow
from .commands import Commands, add_command
from .errors import PROG, UsageError
from .lines import LineReader
from .output import NotJSONError, error_record, json_line, loads, not_utf8, to_json
from .progress import Progress
from .signals import stop_on_signals
from .target import close_flow, load_flow

__all__ = ["register"]


def register(commands: Commands) -> None:
    map_ = add_command(commands, "map", handle)
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
    map_.add_argument(
        "--journal",
        metavar="FILE",
        help="resume: record every input whose result is written; run again with the same "
        "journal and --output, only the inputs not yet done run, and --output ends up "
        "holding every result exactly once (needs --output)",
    )


def handle(args: argparse.Namespace) -> int:
    """run a flow once per line of a JSON Lines file

    Run MODULE:ATTR once per JSON object in --input; write the results in input order as
    JSON lines and the failures (line, input, error) to --errors.
    """
    return asyncio.run(_map(args))


def _count_lines(path: str) -> int | None:
    if path == "-" or not stat.S_ISREG(os.stat(path).st_mode):
        return None
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _open(path: str, mode: str, what: str) -> IO[bytes]:
    try:
        return open(path, mode + "b")
    except OSError as error:
        raise UsageError(f"{what} {path!r}: {error.strerror or error}") from None


def _is_regular_file(stream: IO[bytes]) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _refuse_overwriting_the_input(args: argparse.Namespace) -> None:
    """``--output`` or ``--errors`` naming the input would truncate it before it is read."""
    if args.input == "-":
        return
    for option, path in (("--output", args.output), ("--errors", args.errors)):
        if path is None:
            continue
        try:
            same = os.path.samefile(path, args.input)
        except OSError:  # one of them does not exist (yet)
            continue
        if same:
            raise UsageError(
                f"{option} {path!r} is the input file; writing it would destroy the input "
                f"before it is read. Write to another file (and rename it afterwards)"
            )


def _parse(raw: bytes) -> tuple[Any, BaseException | None]:
    """(the line's input, None) for a JSON object, else (what to show of it, the error)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return raw.decode("utf-8", errors="backslashreplace").strip(), error
    text = text.strip()
    try:
        value = loads(text)
    except RecursionError:
        return text, ValueError("the JSON is nested deeper than Python can parse")
    except ValueError as error:
        return text, error
    if not isinstance(value, dict):
        kind = type(value).__name__
        return value, TypeError(f"expected a JSON object of keyword arguments, got {kind}")
    return value, None


class _Writer:
    """Results to ``out`` and failures to ``errors``, one JSON line each, counted."""

    def __init__(self, out: IO[bytes], errors: IO[bytes], progress: Progress) -> None:
        self.out = out
        self.errors = errors
        self.progress = progress
        self.errors_on_terminal = errors is sys.stderr.buffer
        # a pipe's reader gets each result as it comes; a file is written in blocks
        self.flush_each = not _is_regular_file(out)

    def failure(self, number: int, value: Any, error: BaseException) -> None:
        self.progress.failed += 1
        if self.errors_on_terminal:
            sys.stderr.flush()
            self.progress.clear()
            sys.stderr.flush()
        record = {"line": number, "input": value, "error": error_record(error)}
        try:
            line = json_line(record)
        except (ValueError, UnicodeEncodeError):  # a lone surrogate, in the input or message
            line = (to_json(record, ensure_ascii=True) + "\n").encode("ascii")
        self.errors.write(line)
        self.errors.flush()

    def result(self, number: int, value: Any, result: Any) -> None:
        try:
            line = json_line(result)
        except NotJSONError as error:
            self.failure(number, value, error)
            return
        except UnicodeEncodeError as error:
            self.failure(number, value, not_utf8(error))
            return
        self.progress.ok += 1
        self.out.write(line)
        if self.flush_each:
            self.out.flush()


def _resume_output(path: str, journal: str) -> IO[bytes]:
    """--output for a map with a journal: cut back to the size the journal's last entry
    recorded (a result written after it belongs to an input that runs again), or
    emptied when the journal holds nothing yet; then appended to."""
    try:
        _, last = read_journal(journal)
    except DataFlowCallError as error:
        raise UsageError(f"--journal {journal!r}: {error}") from None
    out = _open(path, "a", "--output")
    size = int(last.get("o", 0))
    if out.seek(0, os.SEEK_END) < size:
        out.close()
        raise UsageError(
            f"--output {path!r} is shorter than the journal {journal!r} says it was written; "
            f"it is not that map's output. Use a new journal, or the output it belongs to"
        )
    out.truncate(size)
    out.seek(size)  # tell() says the size until the next append moves it
    return out


async def _map(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        raise UsageError(f"--concurrency {args.concurrency}: must be >= 1")
    flow = load_flow(args.target)
    if flow.infinity_loop:
        raise UsageError(f"{args.target} is an infinity loop; map needs runs that finish")
    if args.dask:
        _check_for_dask(flow, args)
    _refuse_overwriting_the_input(args)
    if args.journal and not args.output:
        raise UsageError("--journal needs --output FILE: a resumed map appends to that file")
    try:
        return await _map_files(flow, args)
    except BrokenPipeError:
        raise  # the reader of stdout went away: main() handles it
    except OSError as error:  # writing a result or a failure (a full disk, ...)
        print(f"{PROG} map: writing failed: {error}", file=sys.stderr)
        return 1


async def _map_files(flow: DataFlow, args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        source = (
            sys.stdin.buffer
            if args.input == "-"
            else stack.enter_context(_open(args.input, "r", "--input"))
        )
        total = _count_lines(args.input) if args.input != "-" else None
        out = sys.stdout.buffer
        if args.journal:
            out = stack.enter_context(_resume_output(args.output, args.journal))
        elif args.output:
            out = stack.enter_context(_open(args.output, "w", "--output"))
        errors = sys.stderr.buffer
        if args.errors:
            errors = stack.enter_context(_open(args.errors, "w", "--errors"))
        progress = Progress(sys.stderr, total, sys.stderr.isatty())
        writer = _Writer(out, errors, progress)
        try:
            code = await _run_all(flow, args, source, writer)
        finally:
            # closed whatever happened, a failure to write a result included
            closed = await close_flow(flow)
        out.flush()
        progress.finish()
    if not closed:
        return 1
    return code or (1 if progress.failed else 0)


async def _run_all(
    flow: DataFlow, args: argparse.Namespace, source: IO[bytes], writer: _Writer
) -> int:
    """Run every input line through the flow; 128 + N when signal N stopped it, else 0.

    The first SIGINT/SIGTERM stops reading inputs: the runs in flight finish and their
    results are written. A second one cancels them."""
    loop = asyncio.get_running_loop()
    # (line number, input, error for a line that is not a run) in input order
    lines: deque[tuple[int, Any, BaseException | None]] = deque()

    reader = LineReader(source)

    async def inputs() -> AsyncIterator[dict[str, Any]]:
        number = 0
        async for raw in reader:
            number += 1
            if not raw.strip():
                continue
            value, error = _parse(raw)
            lines.append((number, value, error))
            if error is None:
                yield value

    def skip_bad_lines() -> None:
        while lines and lines[0][2] is not None:
            number, value, error = lines.popleft()
            assert error is not None
            writer.failure(number, value, error)

    async def consume() -> None:
        progress = writer.progress
        progress.draw(force=True)
        async with contextlib.AsyncExitStack() as cluster:
            results: AsyncIterator[Any]
            if args.dask:
                results = await _on_dask(flow, inputs(), args, cluster)
            elif args.journal:
                out = writer.out

                def written() -> dict[str, int]:
                    out.flush()  # the journal says how far --output got: it must be there
                    return {"o": out.tell()}

                results = journaled_map(
                    flow, inputs(), args.concurrency, True, args.journal, extra=written
                )
            else:
                results = flow.map(inputs(), concurrency=args.concurrency, return_exceptions=True)
            async with contextlib.aclosing(results):  # type: ignore[type-var]
                async for outcome in results:
                    skip_bad_lines()
                    number, value, _ = lines.popleft()
                    if isinstance(outcome, BaseException):
                        writer.failure(number, value, outcome)
                    else:
                        writer.result(number, value, outcome)
                    progress.draw()
        skip_bad_lines()

    task = loop.create_task(consume())

    def stop_reading(name: str) -> None:
        writer.progress.clear()
        print(
            f"{PROG} map: {name}: reading no more input; finishing the runs in flight "
            f"(send it again to cancel them)",
            file=sys.stderr,
            flush=True,
        )
        reader.stop()

    with stop_on_signals(task, stop_reading) as received:
        try:
            await task
        except asyncio.CancelledError:
            if len(received) < 2:
                raise
            name = signal.Signals(received[-1]).name
            print(f"{PROG} map: {name}: runs in flight cancelled", file=sys.stderr)
    return 128 + received[-1] if received else 0


def _check_for_dask(flow: DataFlow, args: argparse.Namespace) -> None:
    """Refuse ``--dask`` before a cluster is started: no distributed, a bad
    ``--chunk-size``, a flow that cannot be sent to the workers."""
    if args.chunk_size < 1:
        raise UsageError(f"--chunk-size {args.chunk_size}: must be >= 1")
    if args.journal:
        raise UsageError("--journal and --dask do not go together yet: choose one")
    # read by distributed when imported, here and in the workers of a local cluster: its
    # INFO lines would mix into the progress line and the failures on stderr
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    try:
        from .. import dask
    except ImportError:
        raise UsageError('--dask needs distributed: pip install "asyncdataflow[dask]"') from None
    from ..exceptions import DataFlowNotPicklableError

    try:
        dask.dumps_flow(flow)
    except DataFlowNotPicklableError as error:
        raise UsageError(str(error)) from None


async def _on_dask(
    flow: DataFlow,
    inputs: AsyncIterator[dict[str, Any]],
    args: argparse.Namespace,
    cluster: contextlib.AsyncExitStack,
) -> AsyncIterator[Any]:
    """``asyncdataflow.dask.map`` over ``inputs`` on the cluster of ``--dask`` (a local
    one is started here and closed with ``cluster``)."""
    from .. import dask
    from .cluster import open_client

    client = await open_client(args.dask, cluster)
    return dask.map(
        flow,
        inputs,
        client=client,
        concurrency=args.concurrency,
        chunk_size=args.chunk_size,
        return_exceptions=True,
    )
