"""args_mapper: rename a function's parameters and name its return value, so a function
written without the flow in mind fits into one."""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._compiler import (
    MAPPED_ATTR,
    analyze_signature,
    callable_name,
    is_async_callable,
    is_inline,
    source_kind,
)
from .exceptions import ArgsMapperError, ArgsMapperInputKeyError, ArgsMapperOutputKeyError
from .options import INLINE_ATTR, StepOptions

__all__ = ["args_mapper"]

_EMPTY = object()


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ArgsMapperError(f"args_mapper: {what} {name!r} is not a valid parameter name")
    return name


def _wrong_length(name: str, names: tuple[str, ...], value: Any) -> ArgsMapperError:
    return ArgsMapperError(
        f"args_mapper({name}): output={list(names)} expects a tuple (or list) of {len(names)} "
        f"values, got {type(value).__name__}"
        + (f" of {len(value)}" if hasattr(value, "__len__") else "")
    )


def _missing_keys(name: str, keys: Sequence[str], value: Any) -> ArgsMapperOutputKeyError:
    if not isinstance(value, Mapping):
        return ArgsMapperOutputKeyError(
            f"args_mapper({name}): output={{...}} expects a dict, got {type(value).__name__}"
        )
    missing = [k for k in keys if k not in value]
    return ArgsMapperOutputKeyError(
        f"args_mapper({name}): the returned dict lacks {missing} listed in output=; "
        f"it has {sorted(value)}"
    )


def _check_unique(name: str, names: list[str], what: str) -> None:
    """Two outputs under one flow key would silently keep only the last value."""
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ArgsMapperError(
                f"args_mapper({name}): {what} {n!r} twice, so one value would be lost; "
                f"give each output its own name"
            )
        seen.add(n)


def args_mapper(
    func: Callable[..., Any],
    input: Mapping[str, str] | None = None,
    output: str | Sequence[str] | Mapping[str, str] | None = None,
) -> Callable[..., Any]:
    """Wrap ``func`` so that it reads and writes the flow's names.

    Args:
        func: an async or sync callable (a partial too).
        input: ``{parameter: flow_key}``: feed ``parameter`` from the flow's ``flow_key``.
        output: ``"name"``: return ``{"name": value}``; ``["a", "b"]``: zip a returned
            tuple onto the names; ``{"key": "flow_key"}``: rename a returned dict's keys
            (unlisted keys are dropped).

    The wrapper is async if ``func`` is (else it stays sync and runs in a thread), and its
    signature shows the flow-side names, so routing works through it. A source (a
    generator function) stays one: ``output`` then shapes every value it yields.
    """
    name = callable_name(func)
    from .flow import DataFlow

    if isinstance(func, DataFlow):
        raise ArgsMapperError(
            f"args_mapper cannot wrap flow {func.name!r}: a nested flow reads and writes the "
            f"flow's names directly. Map the names on its first and last steps instead."
        )
    inner = func.func if isinstance(func, StepOptions) else func
    if inner is not func:
        raise ArgsMapperError(
            f"args_mapper({name}): wrap the function first, then apply step(...) options: "
            f"step(args_mapper(f, ...), timeout=...)"
        )
    params = analyze_signature(func, f"args_mapper({name})")
    param_names = [p for p, _ in params]
    input = dict(input or {})
    for p, flow_key in input.items():
        if p not in param_names:
            raise ArgsMapperInputKeyError(
                f"args_mapper({name}): input names {p!r}, which is not a parameter of "
                f"{name} (its parameters: {param_names})"
            )
        _check_name(flow_key, "input key")
    outer_names = [input.get(p, p) for p in param_names]
    reserved = [n for n in outer_names if n.startswith("_adf_")]
    if reserved:
        raise ArgsMapperError(
            f"args_mapper({name}): names starting with _adf_ are reserved: {reserved}"
        )
    dupes = {n for n in outer_names if outer_names.count(n) > 1}
    if dupes:
        raise ArgsMapperError(
            f"args_mapper({name}): two parameters would read the same flow key {sorted(dupes)}"
        )

    ns: dict[str, Any] = {
        "_adf_func": func,
        "ArgsMapperError": ArgsMapperError,
        "_adf_wrong_length": _wrong_length,
        "_adf_missing_keys": _missing_keys,
        "_adf_name": name,
    }
    sig_parts: list[str] = []
    call_parts: list[str] = []
    for (p, default), outer in zip(params, outer_names, strict=True):
        if default is _compiler_empty():
            sig_parts.append(outer)
        else:
            ns[f"_adf_d_{outer}"] = default
            sig_parts.append(f"{outer}=_adf_d_{outer}")
        call_parts.append(f"{p}={outer}")

    outputs: tuple[str, ...] | None
    if output is None:
        ret = ["return _adf_r"]
        outputs = None
    elif isinstance(output, str):
        _check_name(output, "output")
        ret = [f"return {{{output!r}: _adf_r}}"]
        outputs = (output,)
    elif isinstance(output, Mapping):
        if not output:
            raise ArgsMapperError(
                f"args_mapper({name}): output={{}} names no key, so every result would be "
                f"{{}}; list the keys to keep, e.g. output={{'rows': 'data'}}, or leave "
                f"output out to pass the dict on as it is"
            )
        for v in output.values():
            _check_name(v, "output name")
        _check_unique(name, list(output.values()), "output={...} maps two keys to")
        ns["_adf_keys"] = list(output)
        pairs = ", ".join(f"{v!r}: _adf_r[{k!r}]" for k, v in output.items())
        ret = [
            "try:",
            f"    return {{{pairs}}}",
            "except (KeyError, TypeError):",
            "    raise _adf_missing_keys(_adf_name, _adf_keys, _adf_r) from None",
        ]
        outputs = tuple(output.values())
    elif isinstance(output, (list, tuple)):
        if not output:
            raise ArgsMapperError(
                f"args_mapper({name}): output={output!r} names no key; give at least one "
                f"name (output=['a', 'b'] zips a returned tuple onto them), or leave output "
                f"out when the function returns a dict"
            )
        names = tuple(_check_name(n, "output name") for n in output)
        _check_unique(name, list(names), "output= lists")
        ns["_adf_names"] = names
        unpack = ", ".join(f"_adf_v{i}" for i in range(len(names))) + (
            "," if len(names) == 1 else ""
        )
        pairs = ", ".join(f"{n!r}: _adf_v{i}" for i, n in enumerate(names))
        ret = [
            "if not isinstance(_adf_r, (tuple, list)):",
            "    raise _adf_wrong_length(_adf_name, _adf_names, _adf_r)",
            "try:",
            f"    {unpack} = _adf_r",
            "except ValueError:",
            "    raise _adf_wrong_length(_adf_name, _adf_names, _adf_r) from None",
            f"return {{{pairs}}}",
        ]
        outputs = names
    else:
        raise ArgsMapperError(
            f"args_mapper({name}): output must be a str, a list of str or a dict, "
            f"got {type(output).__name__}"
        )

    is_async = is_async_callable(func)
    source = source_kind(func)
    sig = ", ".join(sig_parts)
    star = "*, " if sig else ""
    if source is not None:  # a source: every yielded value is mapped
        is_async = source == "async"
        shape = ["def _adf_shape(_adf_r):", *("    " + line for line in ret)]
        call = f"_adf_func({', '.join(call_parts)})"
        if is_async:
            loop = ["    async for _adf_r in _adf_g:", "            yield _adf_shape(_adf_r)"]
            close = "        await _adf_g.aclose()"
        else:
            loop = ["    for _adf_r in _adf_g:", "            yield _adf_shape(_adf_r)"]
            close = "        _adf_g.close()"
        head = f"{'async ' if is_async else ''}def mapped({star}{sig}):"
        body = [
            f"    _adf_g = {call}",
            "    try:",
            "    " + loop[0],
            loop[1],
            "    finally:",
            close,
        ]
        src = "\n".join([*shape, head, *body])
    else:
        head = f"async def mapped({star}{sig}):" if is_async else f"def mapped({star}{sig}):"
        call = f"{'await ' if is_async else ''}_adf_func({', '.join(call_parts)})"
        src = "\n".join([head, f"    _adf_r = {call}", *("    " + line for line in ret)])
    exec(compile(src, f"<args_mapper {name}>", "exec"), ns)
    mapped = ns["mapped"]
    mapped.__qualname__ = mapped.__name__ = f"args_mapper({name})"
    mapped.__doc__ = getattr(func, "__doc__", None)
    mapped.__module__ = getattr(func, "__module__", None) or __name__
    setattr(mapped, MAPPED_ATTR, func)
    mapped.__asyncdataflow_outputs__ = outputs
    if is_async or source is not None:  # a generator runs where it was created
        if source == "sync" and is_inline(func):
            setattr(mapped, INLINE_ATTR, True)
        return mapped  # type: ignore[no-any-return]
    # a sync wrapper may be sent to a process pool or a cluster: make it picklable
    sync = _SyncMapped(mapped, (func, input or None, output))
    if is_inline(func):
        setattr(sync, INLINE_ATTR, True)
    return sync


class _SyncMapped:
    """A sync ``args_mapper`` wrapper. It pickles as the mapper's recipe (the function and
    its mappings), so it runs in a ``ProcessPoolExecutor`` or a Dask cluster whenever the
    wrapped function itself can be pickled."""

    def __init__(self, mapped: Callable[..., Any], recipe: tuple[Any, Any, Any]) -> None:
        self._mapped = mapped
        self._recipe = recipe
        self.__signature__ = inspect.signature(mapped)
        self.__qualname__ = self.__name__ = mapped.__qualname__
        self.__doc__ = mapped.__doc__
        self.__asyncdataflow_outputs__ = getattr(mapped, "__asyncdataflow_outputs__", None)
        setattr(self, MAPPED_ATTR, getattr(mapped, MAPPED_ATTR))

    def __call__(self, **kwargs: Any) -> Any:
        return self._mapped(**kwargs)

    def __reduce__(self) -> tuple[Any, tuple[Any, Any, Any]]:
        return (args_mapper, self._recipe)

    def __repr__(self) -> str:
        return f"<{self.__qualname__}>"


def _compiler_empty() -> Any:
    return inspect.Parameter.empty
