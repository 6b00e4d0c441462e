"""Draw a flow's structure as Mermaid or Graphviz DOT text.

Each step is a node labelled with its name, a ``source, window N`` line for a source (a
generator step; the rest of its block runs once per record it yields), the parameters it
takes (``in:``; a trailing ``?`` marks one with a default) and, where known, the keys it
returns (``out:``, from ``step(..., outputs=...)``, ``args_mapper(..., output=...)``, an
integration pack step or a ``TypedDict`` return annotation; ``out: -`` for a step declared
to return nothing). Nested blocks are Mermaid subgraphs / DOT clusters labelled
``sequential`` or ``concurrent`` (plus the name of an inlined
:class:`~asyncdataflow.DataFlow`). Arrows
follow the data: each item of a sequential block feeds the next; a concurrent block fans
out to the first step of every branch and fans in from the last.

The text depends only on the definition, so it is stable enough to compare in a test.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._compiler import Block, Fn

if TYPE_CHECKING:
    from .flow import DataFlow

__all__ = ["known_outputs", "to_dot", "to_mermaid"]

_DEFAULT_NAME = re.compile(r"DataFlow@[0-9a-f]+")
_INDENT = "    "


def _node_id(path: str, prefix: str) -> str:
    """``definition[2][0][1]`` -> ``n2_0_1`` (``prefix`` ``n`` for steps, ``b`` for blocks)."""
    return prefix + "_".join(re.findall(r"\d+", path))


def known_outputs(fn: Fn) -> tuple[str, ...] | None:
    """The keys ``fn`` declares it returns (``step(..., outputs=...)``, an
    ``args_mapper`` output, a pack step, a ``TypedDict`` return annotation), read once
    when the flow was built; ``None`` when unknown."""
    return fn.outputs


def _params(fn: Fn) -> str:
    return ", ".join(
        name if default is inspect.Parameter.empty else f"{name}?" for name, default in fn.params
    )


def _label_lines(fn: Fn) -> list[str]:
    lines = [fn.info.name]
    if fn.info.source:  # each value it yields is a record for the steps after it
        lines.append(f"source, window {fn.info.window}")
    params = _params(fn)
    if params:
        lines.append(f"in: {params}")
    outputs = known_outputs(fn)
    if outputs is not None:
        lines.append(f"out: {', '.join(outputs) or '-'}")
    return lines


def _block_label(block: Block) -> str:
    kind = "concurrent" if block.concurrent else "sequential"
    if block.name and not _DEFAULT_NAME.fullmatch(block.name):
        return f"{kind}: {block.name}"
    return kind


def _entries(node: Fn | Block) -> list[Fn]:
    """The steps that receive a node's input."""
    if isinstance(node, Fn):
        return [node]
    if node.concurrent:
        return [fn for branch in node.items for fn in _entries(branch)]
    return _entries(node.items[0])


def _exits(node: Fn | Block) -> list[Fn]:
    """The steps whose outputs make a node's output."""
    if isinstance(node, Fn):
        return [node]
    if node.concurrent:
        return [fn for branch in node.items for fn in _exits(branch)]
    return _exits(node.items[-1])


def _edges(block: Block, out: list[tuple[Fn, Fn]]) -> None:
    """Every arrow inside ``block``, in the order the data flows."""
    if block.concurrent:
        for branch in block.items:
            if isinstance(branch, Block):
                _edges(branch, out)
        return
    previous: list[Fn] = []
    for item in block.items:
        entries = _entries(item)
        out.extend((a, b) for a in previous for b in entries)
        if isinstance(item, Block):
            _edges(item, out)
        previous = _exits(item)


def _all_edges(flow: DataFlow) -> list[tuple[Fn, Fn]]:
    edges: list[tuple[Fn, Fn]] = []
    _edges(flow.plan, edges)
    return edges


def _title(flow: DataFlow) -> str | None:
    return None if _DEFAULT_NAME.fullmatch(flow.name) else flow.name


def _nest(
    block: Block,
    depth: int,
    lines: list[str],
    node: Callable[[Fn], str],
    opening: Callable[[Block], list[str]],
    closing: str,
) -> None:
    """Append ``block``'s items, indented ``depth`` levels: a step as its ``node`` line, a
    nested block as its ``opening`` lines, its items one level deeper and ``closing``."""
    pad = _INDENT * depth
    for item in block.items:
        if isinstance(item, Fn):
            lines.append(pad + node(item))
        else:
            lines += [pad + line for line in opening(item)]
            _nest(item, depth + 1, lines, node, opening, closing)
            lines.append(pad + closing)


# -- Mermaid ----------------------------------------------------------------------------

_MERMAID_ESCAPES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;"}


def _mermaid_text(text: str) -> str:
    return "".join(_MERMAID_ESCAPES.get(c, c) for c in text)


def _mermaid_node(fn: Fn) -> str:
    label = "<br/>".join(_mermaid_text(line) for line in _label_lines(fn))
    return f'{_node_id(fn.path, "n")}["{label}"]'


def _mermaid_subgraph(block: Block) -> list[str]:
    return [f'subgraph {_node_id(block.path, "b")}["{_mermaid_text(_block_label(block))}"]']


def to_mermaid(flow: DataFlow) -> str:
    """The flow's structure as a Mermaid ``flowchart`` (paste it into a Markdown
    ```` ```mermaid ```` block)."""
    lines = ["flowchart TD"]
    title = _title(flow)
    if title is not None:
        lines.append(f"{_INDENT}%% {title}")
    _nest(flow.plan, 1, lines, _mermaid_node, _mermaid_subgraph, "end")
    for a, b in _all_edges(flow):
        lines.append(f"{_INDENT}{_node_id(a.path, 'n')} --> {_node_id(b.path, 'n')}")
    return "\n".join(lines) + "\n"


# -- Graphviz DOT -----------------------------------------------------------------------


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _dot_node(fn: Fn) -> str:
    label = "\\n".join(_dot_text(line) for line in _label_lines(fn))
    return f'{_node_id(fn.path, "n")} [label="{label}"];'


def _dot_cluster(block: Block) -> list[str]:
    return [
        f"subgraph cluster_{_node_id(block.path, 'b')} {{",
        f'{_INDENT}label="{_dot_text(_block_label(block))}";',
        f"{_INDENT}style={'dashed' if block.concurrent else 'solid'};",
    ]


def to_dot(flow: DataFlow) -> str:
    """The flow's structure as a Graphviz ``digraph`` (render it with
    ``dot -Tsvg -o flow.svg``)."""
    title = _title(flow)
    lines = [f'digraph "{_dot_text(title or "DataFlow")}" {{']
    if title is not None:
        lines.append(f'{_INDENT}label="{_dot_text(title)}";')
        lines.append(f"{_INDENT}labelloc=t;")
    lines.append(f"{_INDENT}rankdir=TB;")
    lines.append(f'{_INDENT}node [shape=box, style=rounded, fontname="Helvetica"];')
    lines.append(f'{_INDENT}graph [fontname="Helvetica"];')
    _nest(flow.plan, 1, lines, _dot_node, _dot_cluster, "}")
    for a, b in _all_edges(flow):
        lines.append(f"{_INDENT}{_node_id(a.path, 'n')} -> {_node_id(b.path, 'n')};")
    lines.append("}")
    return "\n".join(lines) + "\n"
