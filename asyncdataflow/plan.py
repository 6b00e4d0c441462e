"""The compiled plan of a flow, as ``flow.plan`` and ``flow.walk()`` hand it out.

A plan is a tree: a :class:`Block` (the definition's top-level tuple, a nested tuple or
an inlined flow) holds :class:`Step` and :class:`Block` items. Read it to inspect a flow
(the CLI's graph and check commands do); do not change it: a flow compiles it once.

:class:`Step` attributes:

- ``info``: the step's :class:`~asyncdataflow.StepInfo` (name, path, options, ...);
- ``path``: its place in the definition, e.g. ``definition[2][0]``;
- ``params``: ``(name, default)`` for every parameter the flow may feed it; ``default`` is
  ``inspect.Parameter.empty`` for a required one;
- ``outputs``: the keys it declares it returns, or ``None``; ``optional``: those of them it
  may leave out;
- ``missing(data)``: the required parameters ``data`` lacks; ``steps()``: itself.

:class:`Block` attributes:

- ``path``; ``concurrent`` (``False``: its items run one after another); ``items``;
- ``name``: the flow's name when the block is a nested :class:`~asyncdataflow.DataFlow`,
  else ``None``;
- ``steps()``: every step inside it, in definition order.
"""

from __future__ import annotations

from ._compiler import Block
from ._compiler import Fn as Step

__all__ = ["Block", "Step"]
