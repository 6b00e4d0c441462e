"""Serialising ``data`` to bytes and back, per format.

Record formats (``jsonl``, ``csv``) are converted in slices of :data:`SLICE` records, and
large text in slices of :data:`TEXT_SLICE` characters, with a yield to the event loop
between slices, so a file of millions of lines never holds the loop for more than a
slice. A single ``json`` document is converted in one call of the
stdlib's C codec.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._errors import StepArgumentError

FORMATS = ("text", "bytes", "json", "jsonl", "csv")

#: Records converted between two yields to the event loop.
SLICE = 1000
#: Characters (or bytes) of text encoded (decoded) between two yields to the event loop.
TEXT_SLICE = 1 << 20

_ENCODER = json.JSONEncoder(ensure_ascii=False)


def _raise_csv_field_limit() -> None:
    """Let the csv module read back any cell the writer can write. Its default limit is
    131,072 characters per cell, and the limit is one for the whole process: it is
    raised (never lowered) to the largest value the platform takes."""
    limit = sys.maxsize
    while limit > csv.field_size_limit():
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:  # a C long smaller than sys.maxsize (Windows)
            limit //= 2


_raise_csv_field_limit()


def _records(data: Any, step: str, fmt: str) -> Iterable[Any]:
    """The records of ``data`` for a record format: a single mapping is one record."""
    if isinstance(data, Mapping):
        return (data,)
    if isinstance(data, str | bytes | bytearray | memoryview) or not isinstance(data, Iterable):
        raise StepArgumentError(
            f"{step}: format {fmt!r} takes data as a list (any iterable) of records or a "
            f"single mapping, got {type(data).__name__}"
        )
    return data


Chunks = list[bytes | bytearray | memoryview]


async def encode(
    fmt: str,
    data: Any,
    encoding: str,
    step: str,
    *,
    csv_header: Sequence[str] | None = None,
    escape_formulas: bool = False,
) -> Chunks:
    """``data`` as the bytes of a file (or of what to append to one) in format ``fmt``,
    as a list of chunks to write one after the other.

    ``csv_header``: the header of the file being appended to; the rows are written in its
    column order and no header line is written (``None``: the header is the union of the
    rows' keys in order of first appearance, and is written first).
    """
    if fmt == "bytes":
        if isinstance(data, bytes | bytearray | memoryview):
            return [data]
        raise StepArgumentError(
            f"{step}: format 'bytes' takes bytes, bytearray or memoryview data, got "
            f"{type(data).__name__}; use format='text' for a str"
        )
    encoder = codecs.getincrementalencoder(encoding)()
    if fmt == "text":
        if not isinstance(data, str):
            raise StepArgumentError(
                f"{step}: format 'text' takes str data, got {type(data).__name__}; use "
                "format='bytes' for bytes or 'json'/'jsonl' for structured data"
            )
        if len(data) <= TEXT_SLICE:
            return [data.encode(encoding)]
        chunks: Chunks = []
        for start in range(0, len(data), TEXT_SLICE):
            chunks.append(encoder.encode(data[start : start + TEXT_SLICE]))
            await asyncio.sleep(0)
        return chunks
    if fmt == "json":
        return [(_ENCODER.encode(data) + "\n").encode(encoding)]
    if fmt == "jsonl":
        return await _encode_jsonl(data, step, encoder)
    if fmt == "csv":
        return await _encode_csv(data, step, csv_header, encoder, escape_formulas)
    raise AssertionError(fmt)  # the factories accept only FORMATS


async def _encode_jsonl(data: Any, step: str, encoder: codecs.IncrementalEncoder) -> Chunks:
    chunks: Chunks = []
    lines: list[str] = []
    append = lines.append
    dump = _ENCODER.encode
    for record in _records(data, step, "jsonl"):
        append(dump(record))
        if len(lines) == SLICE:
            lines.append("")
            chunks.append(encoder.encode("\n".join(lines)))
            lines.clear()
            await asyncio.sleep(0)
    if lines:
        lines.append("")
        chunks.append(encoder.encode("\n".join(lines)))
    return chunks


def csv_rows(data: Any, step: str) -> list[Mapping[str, Any]]:
    """The rows of ``data`` for format ``csv``; ``TypeError`` unless each is a mapping."""
    rows = list(_records(data, step, "csv"))
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise StepArgumentError(
                f"{step}: format 'csv' takes a list of mappings (dicts), but record "
                f"{index} is {type(row).__name__}"
            )
    return rows


#: What starts a formula in a spreadsheet program (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """``row`` with each ``str`` value that a spreadsheet would run as a formula
    prefixed with ``'`` (so ``=HYPERLINK(...)`` is shown as text)."""
    if not any(isinstance(v, str) and v.startswith(FORMULA_STARTS) for v in row.values()):
        return row
    return {
        k: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v
        for k, v in row.items()
    }


async def _encode_csv(
    data: Any,
    step: str,
    header: Sequence[str] | None,
    encoder: codecs.IncrementalEncoder,
    escape_formulas: bool = False,
) -> Chunks:
    rows = csv_rows(data, step)
    buffer = io.StringIO()
    if header is None:
        fieldnames: dict[str, None] = {}
        for row in rows:
            for key in row:
                fieldnames.setdefault(key, None)
        writer = csv.DictWriter(buffer, list(fieldnames), extrasaction="raise")
        if rows:
            writer.writeheader()
    else:
        known = set(header)
        for index, row in enumerate(rows):
            extra = [key for key in row if key not in known]
            if extra:
                raise StepArgumentError(
                    f"{step}: record {index} has keys {extra} that are not columns of the "
                    f"file's header {list(header)}; appended rows must fit the header"
                )
        writer = csv.DictWriter(buffer, list(header), extrasaction="raise")
    chunks: Chunks = []
    for count, row in enumerate(rows, 1):
        writer.writerow(escape_formula(row) if escape_formulas else row)
        if count % SLICE == 0:
            chunks.append(encoder.encode(buffer.getvalue()))
            buffer.seek(0)
            buffer.truncate()
            await asyncio.sleep(0)
    if buffer.tell():
        chunks.append(encoder.encode(buffer.getvalue()))
    return chunks


def csv_header(first_line: str) -> list[str] | None:
    """The column names in the first line of a CSV file, or ``None`` if it is empty."""
    if not first_line.strip():
        return None
    return next(csv.reader(io.StringIO(first_line, newline="")), None)


def newline(encoding: str) -> bytes:
    """A line end in ``encoding``, without any byte-order mark."""
    one, two = "\n".encode(encoding), "\n\n".encode(encoding)
    return two[len(one) :]


def byte_order_mark(encoding: str) -> bytes:
    """The bytes ``encoding`` starts a text with (``utf-8-sig``, ``utf-16``, ``utf-32``),
    or ``b""``: what must not be written again when appending to a file."""
    one = "\n".encode(encoding)
    return one[: len(one) - len(newline(encoding))]


async def decode(fmt: str, raw: bytes, encoding: str, path: str) -> Any:
    """The ``data`` a file of format ``fmt`` holds."""
    if fmt == "bytes":
        return raw
    try:
        text = await _decode_text(raw, encoding)
    except UnicodeDecodeError as error:
        error.add_note(
            f"while reading {path!r} as {fmt} with encoding={encoding!r}: give the file's "
            "encoding (e.g. encoding='latin-1'), or format='bytes' for the raw bytes"
        )
        raise
    if fmt == "text":
        return text
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            error.add_note(f"while reading {path!r} as json")
            raise
    if fmt == "jsonl":
        return await _decode_jsonl(text, path)
    if fmt == "csv":
        return await _decode_csv(text, path)
    raise AssertionError(fmt)


async def _decode_text(raw: bytes, encoding: str) -> str:
    if len(raw) <= TEXT_SLICE:
        return raw.decode(encoding)
    decoder = codecs.getincrementaldecoder(encoding)()
    view = memoryview(raw)
    parts: list[str] = []
    for start in range(0, len(view), TEXT_SLICE):
        end = start + TEXT_SLICE
        parts.append(decoder.decode(view[start:end], final=end >= len(view)))
        await asyncio.sleep(0)
    return "".join(parts)


async def _decode_jsonl(text: str, path: str) -> list[Any]:
    records: list[Any] = []
    append = records.append
    loads = json.loads
    # split on "\n" only: str.splitlines() would also split on U+2028 and friends, which
    # json.dumps(ensure_ascii=False) leaves unescaped inside strings.
    for number, line in enumerate(text.split("\n"), 1):
        if not line or line.isspace():
            continue  # the final newline, blank lines
        try:
            append(loads(line))
        except json.JSONDecodeError as error:
            error.add_note(f"while reading {path!r} as jsonl, line {number}")
            raise
        if number % SLICE == 0:
            await asyncio.sleep(0)
    return records


async def _decode_csv(text: str, path: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[dict[str, Any]] = []
    append = rows.append
    count = 0
    try:
        for count, row in enumerate(reader, 1):
            append(row)
            if count % SLICE == 0:
                await asyncio.sleep(0)
    except csv.Error as error:
        error.add_note(f"while reading {path!r} as csv, line {reader.line_num + 1}")
        raise
    return rows
