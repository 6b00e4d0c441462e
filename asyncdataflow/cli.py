"""The ``asyncdataflow`` command: run a flow, map it over a JSON Lines file, draw it, and
list the loaded plugins.

Exit codes: 0 success; 1 a run failed (``run``), at least one input failed (``map``) or
Graphviz failed; 2 a mistake on the command line the user can fix (an import path that
does not resolve, an attribute that is not a flow, a bad ``key=value``, a missing file,
Graphviz not installed); 128 + signal number when a run was cancelled by a signal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import importlib
import inspect
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from . import __version__, graph
from ._compiler import guard_missing
from .flow import DataFlow
from .hookspecs import PROJECT_NAME, hookimpl
from .plugin_manager import get_plugin_manager, plugin_manager_for

__all__ = ["UsageError", "load_flow", "main", "parse_kwargs"]

PROG = "asyncdataflow"
_IMAGE_FORMATS = {
    "svg": "svg",
    "png": "png",
    "pdf": "pdf",
    "jpg": "jpg",
    "jpeg": "jpg",
    "gif": "gif",
}
_TEXT_FORMATS = {"mmd": "mermaid", "mermaid": "mermaid", "dot": "dot", "gv": "dot"}


class UsageError(Exception):
    """A mistake on the command line: printed to stderr without a traceback, exit 2."""


# -- loading a flow ---------------------------------------------------------------------


def _import(module_name: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # like `python -m`: modules in the current directory import
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name == error.name or module_name.startswith(error.name + ".")):
            hint = ""
            if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
                dotted = module_name.removesuffix(".py").replace("/", ".").replace(os.sep, ".")
                hint = f"; name the module, not the file: {dotted}:ATTR"
            raise UsageError(
                f"cannot import {module_name!r}: {error} (searched the current directory "
                f"{cwd} and PYTHONPATH; run from the directory that holds it or add that "
                f"directory to PYTHONPATH){hint}"
            ) from None
        raise UsageError(f"importing {module_name!r} failed:\n{_format_exception(error)}") from None
    except Exception as error:
        raise UsageError(f"importing {module_name!r} failed:\n{_format_exception(error)}") from None


def _flows_in(module: ModuleType) -> list[str]:
    return sorted(n for n, v in vars(module).items() if isinstance(v, DataFlow))


def load_flow(target: str) -> DataFlow:
    """Resolve ``MODULE:ATTR`` (``ATTR`` may be dotted) to a :class:`DataFlow`: the
    attribute itself, or what calling it with no arguments returns."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"{target!r}: expected MODULE:ATTR, e.g. myflows:flow")
    module = _import(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            found = _flows_in(module)
            listing = f"; flows in it: {', '.join(found)}" if found else ""
            raise UsageError(
                f"{target!r}: module {module_name!r} has no attribute {attr!r}{listing}"
            ) from None
    if isinstance(obj, DataFlow):
        return obj
    if callable(obj) and not isinstance(obj, type):
        try:
            inspect.signature(obj).bind()
        except TypeError:
            raise UsageError(
                f"{target!r} is a callable that needs arguments; point at a DataFlow or a "
                f"function that builds one with no arguments"
            ) from None
        except ValueError:
            pass  # no signature to read: just try it
        try:
            built = obj()
        except Exception as error:
            raise UsageError(f"calling {target}() failed:\n{_format_exception(error)}") from None
        if isinstance(built, DataFlow):
            return built
        if inspect.iscoroutine(built):
            built.close()
            raise UsageError(
                f"{target} is an async function; point at a DataFlow or a plain def "
                f"that returns one"
            )
        raise UsageError(
            f"{target}() returned {type(built).__name__}, not a DataFlow; return the flow "
            f"from it, e.g. `def {attr.rsplit('.', 1)[-1]}(): return DataFlow((...))`"
        )
    raise UsageError(
        f"{target!r} is {type(obj).__name__}, not a DataFlow (nor a function returning one)"
    )


def parse_kwargs(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` gives the string ``value``; ``key:=JSON`` gives the parsed JSON."""
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        as_json = key.endswith(":")
        key = key.removesuffix(":")
        if not sep or not key.isidentifier():
            raise UsageError(
                f"{item!r}: expected key=value (a string) or key:=JSON, with key a "
                f"Python identifier, e.g. name=Ada or count:=3"
            )
        if key in kwargs:
            raise UsageError(f"{item!r}: {key!r} is given twice")
        if as_json:
            try:
                kwargs[key] = json.loads(value)
            except json.JSONDecodeError as error:
                raise UsageError(
                    f"{item!r}: the value after := is not JSON ({error}); quote strings "
                    f"('{key}:=\"text\"') or use {key}=text"
                ) from None
        else:
            kwargs[key] = value
    return kwargs


# -- output helpers ---------------------------------------------------------------------


def _format_exception(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)).rstrip()


def _str_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _str_keys(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_str_keys(v) for v in value]
    return value


def to_json(value: Any, indent: int | None = None) -> str:
    """JSON text for ``value``; what JSON cannot hold is written as ``str(value)``."""
    try:
        return json.dumps(value, default=str, ensure_ascii=False, indent=indent)
    except TypeError:  # keys that are not str/int/float/bool/None
        return json.dumps(_str_keys(value), default=str, ensure_ascii=False, indent=indent)
    except ValueError:  # a circular reference
        return json.dumps(str(value), ensure_ascii=False)


def _error_record(error: BaseException) -> dict[str, Any]:
    cls = type(error)
    name = cls.__qualname__
    if cls.__module__ != "builtins":
        name = f"{cls.__module__}.{name}"
    record: dict[str, Any] = {"type": name, "message": str(error)}
    notes = getattr(error, "__notes__", None)
    if notes:
        record["notes"] = [str(n) for n in notes]
    return record


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


# -- run --------------------------------------------------------------------------------


class _PrintEachIteration:
    """A per-flow plugin for ``run --each``: one JSON line per loop iteration."""

    def __init__(self, indent: int | None) -> None:
        self.indent = indent

    @hookimpl
    def after_loop_iteration(self, result: dict[str, Any] | None) -> None:
        if result is not None:
            print(to_json(result, self.indent), flush=True)


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
    )


def _missing_arguments(flow: DataFlow, kwargs: dict[str, Any]) -> str | None:
    """Why the flow's first item cannot be taken with these arguments, or None."""
    candidates = guard_missing(flow.plan.items[0], kwargs)
    if not all(missing for _, missing in candidates):
        return None
    needed = sorted({name for _, missing in candidates for name in missing})
    steps = "; ".join(
        f"{fn.info.name} at {fn.info.path} takes {', '.join(missing)}" for fn, missing in candidates
    )
    hint = " ".join(f"{name}=..." for name in needed)
    message = f"the flow needs {' or '.join(needed)} ({steps}); pass {hint} (or NAME:=JSON)"
    for given in kwargs:
        close = difflib.get_close_matches(given, needed, n=1)
        if close and given not in needed:
            message += f"; did you mean {close[0]}= instead of {given}=?"
    return message


async def _run(args: argparse.Namespace) -> int:
    kwargs = parse_kwargs(args.kwargs)
    flow = _loop_flow(load_flow(args.target), args)
    problem = _missing_arguments(flow, kwargs)
    if problem is not None:
        return _fail(problem)
    loop = asyncio.get_running_loop()

    async def call() -> dict[str, Any]:
        return await flow(**kwargs)

    task = loop.create_task(call())
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if flow.infinity_loop and len(received) == 1:
            print(
                f"{PROG}: {signal.Signals(signum).name}: stopping after the current iteration "
                f"(send it again to cancel)",
                file=sys.stderr,
                flush=True,
            )
            flow.stop()
        else:
            task.cancel()

    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            handled.append(signum)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C cancels as usual
            pass
    code = 0
    try:
        try:
            result = await task
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)
    except asyncio.CancelledError:
        if not received:
            raise
        name = signal.Signals(received[-1]).name
        print(f"{PROG}: {name}: run cancelled", file=sys.stderr)
        code = 128 + received[-1]
    except Exception as error:
        print(_format_exception(error), file=sys.stderr)
        code = 1
    else:
        if not args.each:
            print(to_json(result, args.indent), flush=True)
    finally:
        try:
            await flow.aclose()
        except Exception as error:
            print(f"{PROG}: closing the flow failed:\n{_format_exception(error)}", file=sys.stderr)
            code = code or 1
    return code


# -- map --------------------------------------------------------------------------------


class _Progress:
    """A progress bar redrawn in place on a terminal, or a one-line summary at the end."""

    WIDTH = 24

    def __init__(self, stream: IO[str], total: int | None, interactive: bool) -> None:
        self.stream = stream
        self.total = total
        self.interactive = interactive
        self.ok = 0
        self.failed = 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self._shown = False

    @property
    def processed(self) -> int:
        return self.ok + self.failed

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.processed / elapsed
        parts = []
        if self.total:
            filled = min(self.WIDTH, self.WIDTH * self.processed // self.total)
            parts.append(f"[{'#' * filled}{'.' * (self.WIDTH - filled)}]")
            parts.append(f"{self.processed}/{self.total}")
        else:
            parts.append(f"{self.processed}")
        parts.append(f"ok {self.ok}")
        parts.append(f"failed {self.failed}")
        parts.append(f"{rate:.1f}/s")
        if self.total and rate > 0:
            eta = max(self.total - self.processed, 0) / rate
            parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        return "  ".join(parts)

    def draw(self, force: bool = False) -> None:
        if not self.interactive:
            return
        now = time.monotonic()
        if force or now - self._drawn >= 0.1:
            self._drawn = now
            self._shown = True
            self.stream.write(f"\r\x1b[K{self._line()}")
            self.stream.flush()

    def clear(self) -> None:
        """Wipe the bar so another line can be written to the same stream."""
        if self.interactive and self._shown:
            self.stream.write("\r\x1b[K")
            self._shown = False

    def finish(self) -> None:
        elapsed = time.monotonic() - self.started
        if self.interactive:
            self.draw(force=True)
            self.stream.write(f"  in {elapsed:.1f}s\n")
        else:
            rate = self.processed / elapsed if elapsed > 0 else 0.0
            self.stream.write(
                f"{PROG} map: {self.processed} inputs, {self.ok} ok, {self.failed} failed "
                f"in {elapsed:.2f}s ({rate:.1f}/s)\n"
            )
        self.stream.flush()


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
    flow = load_flow(args.target)
    if flow.infinity_loop:
        raise UsageError(f"{args.target} is an infinity loop; map needs runs that finish")
    with contextlib.ExitStack() as stack:
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
        progress = _Progress(sys.stderr, total, sys.stderr.isatty())
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
            record = {"line": number, "input": value, "error": _error_record(error)}
            errors.write(to_json(record) + "\n")
            errors.flush()

        def skip_bad_lines() -> None:
            while lines and lines[0][2] is not None:
                number, value, error = lines.popleft()
                assert error is not None
                failure(number, value, error)

        progress.draw(force=True)
        async for outcome in flow.map(
            inputs(), concurrency=args.concurrency, return_exceptions=True
        ):
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
        try:
            await flow.aclose()
        except Exception as error:
            print(f"{PROG}: closing the flow failed:\n{_format_exception(error)}", file=sys.stderr)
            return 1
    return 1 if progress.failed else 0


# -- graph ------------------------------------------------------------------------------


def _graph(args: argparse.Namespace) -> int:
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


# -- plugins ----------------------------------------------------------------------------


def _plugin_object_name(plugin: Any) -> str:
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    cls = type(plugin)
    if isinstance(plugin, type):
        return f"{plugin.__module__}.{plugin.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _plugin_rows(flow: DataFlow | None) -> list[dict[str, Any]]:
    pm = plugin_manager_for(flow.plugins) if flow is not None else get_plugin_manager()
    own = {id(p) for p in flow.plugins} if flow is not None else set()
    dists: dict[int, str] = {
        id(plugin): f"{dist.project_name} {dist.version}"
        for plugin, dist in pm.list_plugin_distinfo()
    }
    eps = {ep.name: ep for ep in entry_points(group=PROJECT_NAME)}
    rows: list[dict[str, Any]] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        where = _plugin_object_name(plugin)
        distribution: str | None = dists.get(id(plugin))
        ep = eps.get(name)
        if flow is not None and id(plugin) in own:
            name, source = where, f"flow {flow.name}"
        elif distribution is not None:
            source = "entry point"
        elif ep is not None and where.startswith(ep.module):
            source = "entry point"
            if ep.dist is not None:
                distribution = f"{ep.dist.name} {ep.dist.version}"
        elif where.startswith("asyncdataflow."):
            source = "built-in"
        else:
            source = "registered"
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
        rows.append(
            {
                "name": name,
                "source": source,
                "distribution": distribution,
                "plugin": where,
                "hooks": hooks,
            }
        )
    return rows


def _plugins(args: argparse.Namespace) -> int:
    flow: DataFlow | None = None
    if args.target:
        if ":" in args.target:
            flow = load_flow(args.target)
        else:
            _import(args.target)  # for the plugins it registers when imported
    rows = _plugin_rows(flow)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("NAME", "SOURCE", "HOOKS")] + [
        (
            r["name"],
            r["source"] + (f" ({r['distribution']})" if r["distribution"] else ""),
            ", ".join(r["hooks"]) or "-",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    for row in table:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip())
    return 0


# -- entry point ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run, map, draw asyncdataflow flows and list the loaded plugins.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a flow once (or as a loop) and print its result as JSON",
        description="Run MODULE:ATTR with the given keyword arguments and print the result "
        "as JSON. key=value passes a string, key:=JSON a parsed JSON value.",
    )
    run.add_argument(
        "target",
        metavar="MODULE:ATTR",
        help="a DataFlow, or a function with no arguments that returns one",
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

    map_ = sub.add_parser(
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
    map_.add_argument("--output", metavar="FILE.jsonl", help="results (default: stdout)")
    map_.add_argument("--errors", metavar="FILE.jsonl", help="failures (default: stderr)")

    graph_ = sub.add_parser(
        "graph",
        help="print the flow's structure as Mermaid or DOT, or render it",
        description="Print the flow's blocks and steps, with the parameters each takes and "
        "the keys it returns where known. --output FILE.svg/.png/.pdf renders through "
        "Graphviz's dot; FILE.mmd/.dot writes the text.",
    )
    graph_.add_argument("target", metavar="MODULE:ATTR")
    graph_.add_argument(
        "--format", choices=("mermaid", "dot"), default=None, help="text format (default mermaid)"
    )
    graph_.add_argument("--output", metavar="FILE", help="write or render to FILE")

    plugins = sub.add_parser(
        "plugins",
        help="list the loaded plugins and the hooks each implements",
        description="List the built-in, entry-point and registered plugins. Give a MODULE to "
        "import first (for the plugins it registers), or MODULE:ATTR to add that flow's own.",
    )
    plugins.add_argument("target", nargs="?", metavar="MODULE[:ATTR]")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    # key=value arguments may come after options (`run m:f --loop a=1`): collect them
    args, extra = parser.parse_known_args(argv)
    if extra and (args.command != "run" or any(e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.kwargs = [*args.kwargs, *extra]
    try:
        if args.command == "run":
            return asyncio.run(_run(args))
        if args.command == "map":
            return asyncio.run(_map(args))
        if args.command == "graph":
            return _graph(args)
        return _plugins(args)
    except UsageError as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # the reader went away (`... | head`); do not complain about it on exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
