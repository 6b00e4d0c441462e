"""MySQL / MariaDB steps on aiomysql: ``reader`` (a query's rows), ``writer`` (rows into
a table, in batches, in one transaction) and ``execute`` (any other statement).

Each step owns one aiomysql pool per event loop, created on first use from ``url=``
(``mysql://user:password@host:3306/db?charset=utf8mb4``), or uses your own ``pool=``
(never closed by the step). ``await step.aclose()`` (or the flow's ``aclose()``) closes
the pools the step created. See docs/mysql.md.
"""

from __future__ import annotations

from .._errors import StepArgumentError
from ._durable import MySQLCheckpoints, MySQLDeadLetters, checkpoints, dead_letters
from ._steps import MODES, ChunkedReader, Execute, Reader, Writer, execute, reader, writer

__all__ = [
    "MODES",
    "ChunkedReader",
    "Execute",
    "MySQLCheckpoints",
    "MySQLDeadLetters",
    "Reader",
    "StepArgumentError",
    "Writer",
    "checkpoints",
    "dead_letters",
    "execute",
    "reader",
    "writer",
]
