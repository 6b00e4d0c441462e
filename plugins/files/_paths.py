"""Path templates and ``base_dir`` confinement."""

from __future__ import annotations

import keyword
import os
from collections.abc import Mapping
from typing import Any

from asyncdataflow.exceptions import DataFlowDefinitionError

from .._errors import StepArgumentError
from .._vocab import format_fields


class FilesArgumentError(DataFlowDefinitionError, ValueError):
    """A ``files.reader(...)`` / ``files.writer(...)`` factory got a bad argument.

    Raised when the factory is called, before any flow is built or any file is touched.
    """


class PathOutsideBaseDirError(StepArgumentError):
    """A path given to a step with ``base_dir`` resolves outside ``base_dir``.

    Raised before anything is opened or created. ``step``, ``path`` and ``base_dir`` are
    kept as attributes; ``resolved`` is where the path actually leads.
    """

    def __init__(self, step: str, path: str, base_dir: str, resolved: str) -> None:
        self.step = step
        self.path = path
        self.base_dir = base_dir
        self.resolved = resolved
        super().__init__(
            f"{step}: path {path!r} leads to {resolved!r}, outside base_dir {base_dir!r}; "
            "give a path that stays inside base_dir (relative paths are taken relative to "
            "it; '..', absolute paths and symbolic links may not lead out of it)"
        )


def as_path_str(
    value: Any, what: str, owner: str, error: type[Exception] = FilesArgumentError
) -> str:
    """``value`` as a ``str`` path, or ``error`` (:class:`FilesArgumentError` for a
    factory's argument, :class:`StepArgumentError` for a value the flow passed)."""
    if isinstance(value, str | os.PathLike):
        path = os.fspath(value)
        if isinstance(path, str):
            return path
    raise error(
        f"{owner}: {what} must be a str or os.PathLike naming a file, got "
        f"{type(value).__name__} {value!r}"
    )


def template_fields(template: str, owner: str) -> tuple[str, ...]:
    """The ``{field}`` names of a path template, in order of first appearance.

    Only plain names are allowed (``{day}``, ``{n:03d}``): positional fields (``{}``,
    ``{0}``), attribute and index access (``{a.b}``, ``{a[0]}``) and nested fields in a
    format spec are refused, because each field becomes a parameter of the step.
    """

    def bad_template(error: ValueError) -> FilesArgumentError:
        return FilesArgumentError(
            f"{owner}: path template {template!r} is not a valid format string ({error}); "
            "write a literal brace as '{{' or '}}'"
        )

    def check(field: str, spec: str, _conversion: str | None) -> None:
        if not field.isidentifier() or keyword.iskeyword(field):
            raise FilesArgumentError(
                f"{owner}: path template {template!r} has field {{{field}}}; each field "
                "must be a plain name (like {day}), which becomes a parameter of the step"
            )
        if "{" in spec or "}" in spec:
            raise FilesArgumentError(
                f"{owner}: path template {template!r} nests a field in the format spec of "
                f"{{{field}}}; use a plain spec like {{{field}:03d}}"
            )

    return format_fields(template, bad_template, check)


def fill(template: str, values: Mapping[str, Any]) -> str:
    """The template with its fields filled in."""
    return template.format_map(values)


def resolve_inside(path: str, base_real: str, base_dir: str, step: str) -> str:
    """``path`` resolved against ``base_real`` (symbolic links followed), or
    :class:`PathOutsideBaseDirError` when the result is not inside ``base_real``.

    Blocking (it may ``lstat`` every component): run it in a thread.
    """
    resolved = os.path.realpath(os.path.join(base_real, path))
    if resolved != base_real and os.path.commonpath((resolved, base_real)) != base_real:
        raise PathOutsideBaseDirError(step, path, base_dir, resolved)
    return resolved
