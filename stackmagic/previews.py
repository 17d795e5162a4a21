"""Previews of a step's outputs: a bounded look at what the artifact store keeps, for JupyterLab.

A preview reads as little of the artifact as it can: the first rows of a
table (from Parquet or ``.npy`` without loading the rest), the first 64 kB
of text, an image of up to 5 MB. It never unpickles: loading a pickle runs
whatever code the pickle names, and a preview is only a look. What a
preview cannot show says why, and how to load the value instead.

The answer is plain JSON: ``kind`` is ``table``, ``image``, ``text``,
``json`` or ``none``, with the fields of that kind (see :func:`preview`).
"""

from __future__ import annotations

import base64
import codecs
import csv
import io
import json
import math
import posixpath
from collections.abc import Callable
from typing import Any

from .errors import NotFound
from .runtime.files import FILE_MATERIALIZER
from .stores.artifacts import ArtifactInfo, ArtifactStore
from .stores.materializers import InputStream

MAX_ROWS = 20
MAX_COLUMNS = 30
MAX_TEXT_BYTES = 64 * 1024
MAX_IMAGE_BYTES = 5 * 1024 * 1024
#: A table cell longer than this is cut: twenty rows of long strings stay a small answer.
MAX_CELL_CHARS = 200
#: JSON up to this size is parsed and shown indented; larger, its first bytes as they are.
MAX_PARSED_JSON_BYTES = 1024 * 1024
#: The most of an array a preview reads: rows past this are left unread.
MAX_ARRAY_BYTES = 16 * 1024 * 1024

IMAGE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "svg": "image/svg+xml",
}
_IMAGE_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))

Preview = dict[str, Any]
Reader = Callable[[InputStream, ArtifactInfo], Preview]


def preview(store: ArtifactStore, run_id: str, step: str, name: str, info: ArtifactInfo) -> Preview:
    """What the run view shows of output ``name`` of ``step``: its facts and a bounded look.

    Besides ``kind``: a table has ``columns``, ``rows`` (cells as text), ``total_rows``
    (null when unknown) and ``total_columns``; an image ``mime`` and base64 ``data``;
    text and JSON ``text``; ``none`` the ``reason``. ``truncated`` says the look is partial.
    """
    facts: Preview = {
        "name": name,
        "type_name": info.type_name,
        "materializer": info.materializer,
        "size": info.size,
        "truncated": False,
    }
    reader = _reader(info)
    if reader is None:
        return {**facts, **_nothing(_why_not(run_id, step, name, info))}
    with store.reading(info.uri) as stream:
        try:
            return {**facts, **reader(stream, info)}
        except (ValueError, TypeError, EOFError) as error:  # written by another tool, or damaged
            kind = info.uri.rpartition(".")[2] if info.materializer == FILE_MATERIALIZER else ""
            what = f"a .{kind} file" if kind else f"this {info.materializer!r} artifact"
            return {**facts, **_nothing(f"{what} that could not be read for a preview: {error}")}


def _reader(info: ArtifactInfo) -> Reader | None:
    if info.materializer == FILE_MATERIALIZER:
        extension = posixpath.splitext(info.uri)[1].lstrip(".").lower()
        return _FILE_READERS.get(extension, _bytes)
    return _MATERIALIZER_READERS.get(info.materializer)


def _why_not(run_id: str, step: str, name: str, info: ArtifactInfo) -> str:
    short_type = info.type_name.rpartition(".")[2] or info.type_name
    load = f"load it with `%pipeline load {run_id} {step}.{name}`"
    if info.materializer == "pickle":
        advice = (
            "; save it as a file in the step (fig.savefig('plot.png')) to see it here"
            if short_type.endswith("Figure")
            else ""
        )
        return f"a {short_type}: no preview, since reading a pickle runs code; {load}{advice}"
    return f"a {short_type} saved by the {info.materializer!r} materializer: no preview; {load}"


def _nothing(reason: str) -> Preview:
    return {"kind": "none", "reason": reason}


def _cell(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def _table(columns: list[Any], rows: list[list[Any]], total_rows: int | None) -> Preview:
    shown = min(len(columns), MAX_COLUMNS)
    return {
        "kind": "table",
        "columns": [_cell(column) for column in columns[:shown]],
        "rows": [[_cell(cell) for cell in row[:shown]] for row in rows[:MAX_ROWS]],
        "total_rows": total_rows,
        "total_columns": len(columns),
        "truncated": len(columns) > shown or (total_rows or len(rows)) > MAX_ROWS,
    }


def _parquet(stream: InputStream, info: ArtifactInfo) -> Preview:
    """The first rows of the columns shown (and the index): other columns are never read."""
    import pandas
    import pyarrow
    import pyarrow.parquet

    file = pyarrow.parquet.ParquetFile(stream)
    index = [
        column
        for column in (file.schema_arrow.pandas_metadata or {}).get("index_columns", [])
        if isinstance(column, str)  # a RangeIndex is kept as a description, not a column
    ]
    data = [name for name in file.schema_arrow.names if name not in index]
    first = next(file.iter_batches(batch_size=MAX_ROWS, columns=index + data[:MAX_COLUMNS]), None)
    table = (
        pyarrow.Table.from_batches([first])
        if first is not None
        else file.schema_arrow.empty_table()
    )
    frame = table.to_pandas()  # restores the index the frame had, kept beside its columns
    if frame.index.names != [None] or not isinstance(frame.index, pandas.RangeIndex):
        frame = frame.reset_index()  # a meaningful index is shown as the first columns
    preview = _table(
        list(frame.columns), frame.astype(object).values.tolist(), file.metadata.num_rows
    )
    preview["total_columns"] = len(index) + len(data)
    preview["truncated"] = preview["truncated"] or len(data) > MAX_COLUMNS
    return preview


def _npy(stream: InputStream, info: ArtifactInfo) -> Preview:
    """The first rows of an array, read straight from the file without loading the rest."""
    import numpy
    from numpy.lib import format as npy

    version = npy.read_magic(stream)
    header = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
    if header is None:
        return _nothing(f"an .npy file of format {version}, which previews do not read")
    shape, fortran_order, dtype = header(stream)
    if dtype.hasobject:
        return _nothing(
            f"an array of Python objects (shape {shape}): no preview, since reading it "
            "unpickles them, which runs code"
        )
    if not shape:
        return {
            "kind": "text",
            "text": str(numpy.frombuffer(stream.read(dtype.itemsize), dtype)[0]),
        }
    row_bytes = math.prod(shape[1:]) * dtype.itemsize
    if fortran_order and len(shape) > 1:  # a row is spread over the whole file
        rows = shape[0] if row_bytes * shape[0] <= MAX_ARRAY_BYTES else 0
    else:
        rows = min(shape[0], MAX_ROWS, MAX_ARRAY_BYTES // max(row_bytes, 1))
    if rows == 0 and shape[0]:
        return _nothing(f"an array of shape {shape} too large to read a row of for a preview")
    array = numpy.frombuffer(stream.read(rows * row_bytes), dtype).reshape(
        (rows, *shape[1:]), order="F" if fortran_order else "C"
    )[:MAX_ROWS]
    if len(shape) == 1:
        return _table(["value"], [[value] for value in array.tolist()], shape[0])
    columns = list(range(shape[1]))
    return _table(columns, [list(row[:MAX_COLUMNS]) for row in array], shape[0])


def _json(stream: InputStream, info: ArtifactInfo) -> Preview:
    """Parsed and indented; a string as its text; a large file as its first bytes."""
    if info.size > MAX_PARSED_JSON_BYTES:
        return _text(stream.read(MAX_TEXT_BYTES + 1), kind="json")
    data = stream.read()
    try:
        value = json.loads(data)
    except ValueError:  # a file named .json that is not: shown as the text it is
        return _text(data)
    if isinstance(value, str):
        return _text(value.encode(), kind="text")
    return _text(json.dumps(value, indent=2).encode(), kind="json")


def _text(data: bytes, kind: str = "text") -> Preview:
    return {
        "kind": kind,
        "text": _utf8_start(data, "replace"),
        "truncated": len(data) > MAX_TEXT_BYTES,
    }


def _utf8_start(data: bytes, errors: str) -> str:
    """The first ``MAX_TEXT_BYTES`` as text; a character the cut splits is left out, not
    taken for a mistake (``errors`` says what a mistake elsewhere becomes)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors)
    return decoder.decode(data[:MAX_TEXT_BYTES], final=len(data) <= MAX_TEXT_BYTES)


def _image(stream: InputStream, info: ArtifactInfo) -> Preview:
    mime = IMAGE_TYPES[posixpath.splitext(info.uri)[1].lstrip(".").lower()]
    return _image_of(stream, info, mime)


def _image_of(stream: InputStream, info: ArtifactInfo, mime: str) -> Preview:
    if info.size > MAX_IMAGE_BYTES:
        return _nothing(
            f"an image of {info.size / 1e6:.1f} MB, more than the "
            f"{MAX_IMAGE_BYTES // 1024 // 1024} MB a preview shows"
        )
    return {"kind": "image", "mime": mime, "data": base64.b64encode(stream.read()).decode("ascii")}


def _bytes(stream: InputStream, info: ArtifactInfo) -> Preview:
    """An image if its first bytes say so; else text if it is UTF-8; else binary, not shown."""
    start = stream.read(MAX_TEXT_BYTES + 1)
    for signature, mime in _IMAGE_SIGNATURES:
        if start.startswith(signature):
            stream.seek(0)
            return _image_of(stream, info, mime)
    try:
        _utf8_start(start, "strict")
    except UnicodeDecodeError:
        return _nothing(f"{info.size} bytes of binary data: no preview")
    return _text(start)


def _delimited(stream: InputStream, info: ArtifactInfo) -> Preview:
    """The header and first rows of a CSV or TSV file, from its first 64 kB."""
    start = stream.read(MAX_TEXT_BYTES + 1)
    whole = len(start) <= MAX_TEXT_BYTES
    lines = start[:MAX_TEXT_BYTES].decode("utf-8", "replace").splitlines()
    if not whole:
        lines = lines[:-1]  # the last line read may be cut
    delimiter = "\t" if info.uri.lower().endswith(".tsv") else ","
    parsed = list(csv.reader(io.StringIO("\n".join(lines[: MAX_ROWS + 1])), delimiter=delimiter))
    if not parsed:
        return _text(start)
    header, rows = parsed[0], parsed[1:]
    width = max(len(header), *(len(row) for row in rows)) if rows else len(header)
    columns = header + [""] * (width - len(header))
    preview = _table(columns, rows, len(lines) - 1 if whole else None)
    preview["truncated"] = preview["truncated"] or not whole
    return preview


_MATERIALIZER_READERS: dict[str, Reader] = {
    "pandas": _parquet,
    "numpy": _npy,
    "json": _json,
    "bytes": _bytes,
}
_FILE_READERS: dict[str, Reader] = {
    **{extension: _image for extension in IMAGE_TYPES},
    "parquet": _parquet,
    "npy": _npy,
    "json": _json,
    "csv": _delimited,
    "tsv": _delimited,
}


def output_info(
    outputs: dict[str, ArtifactInfo], run_id: str, step: str, name: str
) -> ArtifactInfo:
    """The record of one output; a name the step did not output is a clear error."""
    if name in outputs:
        return outputs[name]
    listed = ", ".join(outputs) or "none"
    raise NotFound(f"step {step!r} of run {run_id} has no output {name!r} (outputs: {listed})")
