"""Loading the flow a subcommand names: ``MODULE:ATTR``."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from ..flow import DataFlow
from .errors import PROG, UsageError, format_exception

__all__ = ["close_flow", "import_module", "load_flow"]


def _is_path(name: str) -> bool:
    return name.endswith(".py") or "/" in name or os.sep in name


def _module_for_file(name: str) -> tuple[str, str]:
    """(the directory to put on ``sys.path``, the dotted module name) for a file path:
    ``./flows.py``, ``../x/y.py``, ``/abs/flows.py``, ``pkg/flows`` (``.py`` may be left
    off). A file inside packages (directories with ``__init__.py``) is imported as
    ``pkg.flows``, so its relative imports work."""
    path = Path(name)
    if path.suffix != ".py" and not path.is_dir():
        path = path.with_name(path.name + ".py")
    path = path.resolve()
    if path.is_dir() and (path / "__init__.py").is_file():
        parts, parent = [path.name], path.parent
    elif path.is_file():
        parts, parent = ([] if path.stem == "__init__" else [path.stem]), path.parent
    else:
        raise UsageError(
            f"{name!r}: no such file (looked for {path}); give the flow as FILE.py:ATTR "
            f"or as MODULE:ATTR, e.g. flows.py:flow or myapp.flows:flow"
        )
    while (parent / "__init__.py").is_file() and parent.parent != parent:
        parts.insert(0, parent.name)
        parent = parent.parent
    dotted = ".".join(parts)
    if not all(part.isidentifier() for part in parts):
        raise UsageError(
            f"{name!r}: {dotted!r} is not a module name Python can import (use letters, "
            f"digits and _ in file and directory names)"
        )
    return str(parent), dotted


def import_module(module_name: str) -> ModuleType:
    """Import ``module_name`` with the current directory first on ``sys.path`` (like
    ``python -m``), or the file it names (``flows.py``, ``./x/flows.py``, an absolute
    path); a failure is a :class:`UsageError` saying what to do."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # like `python -m`: modules in the current directory import
    if _is_path(module_name):
        directory, dotted = _module_for_file(module_name)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        module = _import(dotted, cwd)
        where = getattr(module, "__file__", None)
        expected = Path(directory, *dotted.split("."))
        if where is None or Path(where).resolve().with_suffix("") not in (
            expected,
            expected / "__init__",
        ):
            raise UsageError(
                f"{module_name!r}: the module name {dotted!r} is already taken by {where} "
                f"(imported first); rename the file"
            )
        return module
    return _import(module_name, cwd)


def _import(module_name: str, cwd: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name == error.name or module_name.startswith(error.name + ".")):
            raise UsageError(
                f"cannot import {module_name!r}: {error} (searched the current directory "
                f"{cwd} and PYTHONPATH; run from the directory that holds it or add that "
                f"directory to PYTHONPATH, or give the file: path/to/file.py:ATTR)"
            ) from None
        raise UsageError(f"importing {module_name!r} failed:\n{format_exception(error)}") from None
    except Exception as error:
        raise UsageError(f"importing {module_name!r} failed:\n{format_exception(error)}") from None


def _flows_in(module: ModuleType) -> list[str]:
    return sorted(n for n, v in vars(module).items() if isinstance(v, DataFlow))


def load_flow(target: str) -> DataFlow:
    """Resolve ``MODULE:ATTR`` (``ATTR`` may be dotted) to a :class:`DataFlow`: the
    attribute itself, or what calling it with no arguments returns."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(
            f"{target!r}: expected MODULE:ATTR or FILE.py:ATTR, e.g. myflows:flow or "
            f"./myflows.py:flow"
        )
    module = import_module(module_name)
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
            raise UsageError(f"calling {target}() failed:\n{format_exception(error)}") from None
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


async def close_flow(flow: DataFlow) -> bool:
    """``await flow.aclose()``; a failure is printed on stderr and gives False."""
    try:
        await flow.aclose()
    except Exception as error:
        print(f"{PROG}: closing the flow failed:\n{format_exception(error)}", file=sys.stderr)
        return False
    return True
