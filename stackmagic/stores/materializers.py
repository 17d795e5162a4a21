"""Materializers: how a step's output value becomes a file, and a file a value again.

The one chosen for a value depends on its type and is named by the file's
extension, so whoever loads an artifact needs nothing but its URI. Plain data
is kept in formats other tools read (JSON, ``.npy``, Parquet); anything else is
pickled with cloudpickle so functions and classes defined in a notebook survive.

Third-party packages add materializers through the ``stackmagic.materializers``
entry-point group, each entry point naming a :class:`Materializer` subclass or
instance; they are tried after the built-ins and before pickle.

Choosing a materializer imports nothing: numpy, pandas and pyarrow are imported
only to write or read a value that needs them, and a value cannot be a numpy
array or a DataFrame unless its library is already imported.
"""

from __future__ import annotations

import json
import logging
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..errors import StackmagicError

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12 on

ENTRY_POINT_GROUP = "stackmagic.materializers"
MAX_JSON_DEPTH = 100
_log = logging.getLogger("stackmagic")


class MaterializerUnsuitable(Exception):
    """Raised by :meth:`Materializer.write` when a closer look shows the value is not its kind.

    ``handles`` must stay cheap, so it looks at the type only; a materializer
    that can tell only while converting (Parquet cannot keep every DataFrame)
    raises this instead, and the artifact store discards what was written and
    tries the next materializer, ending with pickle.
    """


class OutputStream(Protocol):
    """All a materializer may use of the stream it writes to, which may only hash and discard."""

    def write(self, data: Buffer, /) -> int | None: ...

    def tell(self) -> int: ...


class InputStream(Protocol):
    """All a materializer may use of the stream it reads from: a readable, seekable binary file."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readline(self, size: int = -1, /) -> bytes: ...

    def readinto(self, buffer: Buffer, /) -> int | None: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...


class Materializer(ABC):
    """Writes values of some types to a binary stream and reads them back unchanged."""

    name: ClassVar[str]
    extension: ClassVar[str]  # file suffix without the dot; also how loading finds the reader

    @abstractmethod
    def handles(self, value: Any) -> bool:
        """Whether this materializer is for ``value``; cheap, and imports nothing."""

    @abstractmethod
    def write(self, value: Any, stream: OutputStream) -> None:
        """Write ``value`` to ``stream``, which only promises ``write`` and ``tell``."""

    @abstractmethod
    def read(self, stream: InputStream) -> Any:
        """The value stored in ``stream`` (readable and seekable)."""


class BytesMaterializer(Materializer):
    """Raw bytes as they are, so the file is the value."""

    name = "bytes"
    extension = "bin"

    def handles(self, value: Any) -> bool:
        return type(value) is bytes  # a bytearray must come back a bytearray: pickle keeps it

    def write(self, value: Any, stream: OutputStream) -> None:
        stream.write(value)

    def read(self, stream: InputStream) -> Any:
        return stream.read()


class JsonMaterializer(Materializer):
    """Plain data as JSON, readable by anything, for values JSON gives back exactly."""

    name = "json"
    extension = "json"

    def handles(self, value: Any) -> bool:
        return _is_exact_json(value)

    def write(self, value: Any, stream: OutputStream) -> None:
        try:
            text = json.dumps(value)
        except (RecursionError, ValueError) as exc:  # too deep here, or an int too long for str()
            raise MaterializerUnsuitable(str(exc)) from exc
        stream.write(text.encode("ascii"))

    def read(self, stream: InputStream) -> Any:
        return json.load(stream)


_JSON_SCALAR_TYPES = frozenset({type(None), bool, int, float, str})


def _is_exact_json(value: Any) -> bool:
    """Whether JSON gives ``value`` back with the same types all the way down.

    Exact types only: a tuple would come back a list, an IntEnum or a numpy
    scalar a plain number. Walked without recursion, and nesting deeper than
    :data:`MAX_JSON_DEPTH` (which includes a list that contains itself) is left
    to pickle rather than risk a RecursionError while writing or reading.
    """
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        kind = type(item)
        if kind in _JSON_SCALAR_TYPES:
            continue
        if depth >= MAX_JSON_DEPTH:
            return False
        if kind is list:
            pending.extend((element, depth + 1) for element in item)
        elif kind is dict and all(type(key) is str for key in item):
            pending.extend((element, depth + 1) for element in item.values())
        else:
            return False
    return True


class NumpyMaterializer(Materializer):
    """Arrays as ``.npy``, without pickle, so loading one cannot run code."""

    name = "numpy"
    extension = "npy"

    def handles(self, value: Any) -> bool:
        numpy = sys.modules.get("numpy")
        return numpy is not None and type(value) is numpy.ndarray and not value.dtype.hasobject

    #: Arrays are written and read in slices of this size, straight from and into their memory.
    chunk_bytes = 16 << 20

    def write(self, value: Any, stream: OutputStream) -> None:
        """The bytes ``numpy.save`` writes, without the copy it makes of each slice for a stream."""
        import numpy
        from numpy.lib import format as npy

        contiguous = value.flags.c_contiguous or value.flags.f_contiguous
        if not contiguous or value.dtype.names or value.dtype.itemsize == 0:
            numpy.save(stream, value, allow_pickle=False)
            return
        npy.write_array_header_1_0(stream, npy.header_data_from_array_1_0(value))
        data = value.reshape(-1, order="A").view(numpy.uint8)
        for start in range(0, data.size, self.chunk_bytes):
            stream.write(data[start : start + self.chunk_bytes])

    def read(self, stream: InputStream) -> Any:
        """Read the data straight into the new array's memory, where ``numpy.load`` copies it."""
        import numpy
        from numpy.lib import format as npy

        version = npy.read_magic(stream)
        if version != (1, 0):
            stream.seek(0)
            return numpy.load(stream, allow_pickle=False)
        shape, fortran_order, dtype = npy.read_array_header_1_0(stream)
        if dtype.hasobject or dtype.names or dtype.itemsize == 0:
            stream.seek(0)
            return numpy.load(stream, allow_pickle=False)
        array = numpy.empty(shape, dtype=dtype, order="F" if fortran_order else "C")
        target = array.reshape(-1, order="A").view(numpy.uint8).data
        filled = 0
        while filled < target.nbytes:
            count = stream.readinto(target[filled : filled + self.chunk_bytes])
            if not count:
                raise ValueError(f"the .npy file ends after {filled} of {target.nbytes} data bytes")
            filled += count
        return array


SERIES_METADATA_KEY = b"stackmagic.series"
_PLAIN_OBJECT_COLUMNS = frozenset({"string", "bytes", "empty"})


class PandasMaterializer(Materializer):
    """DataFrames and Series as Parquet, the table format other tools read.

    Parquet cannot keep every frame exactly (column names that are not strings,
    object columns of mixed or nested values, ``attrs``), and only converting it
    tells. So :meth:`handles` checks the type and :meth:`write` raises
    :class:`MaterializerUnsuitable` before writing a byte when the frame would
    not come back the same; the store then pickles it. A Series is stored as a
    one-column frame and its name kept in the file's metadata.
    """

    name = "pandas"
    extension = "parquet"

    def handles(self, value: Any) -> bool:
        pandas = sys.modules.get("pandas")
        return (
            pandas is not None
            and type(value) in (pandas.DataFrame, pandas.Series)
            and _pyarrow_installed()
        )

    def write(self, value: Any, stream: OutputStream) -> None:
        import pandas
        import pyarrow
        import pyarrow.parquet

        metadata = {}
        if isinstance(value, pandas.Series):
            if value.name is not None and not isinstance(value.name, str):
                raise MaterializerUnsuitable("the Series' name is not a string")
            metadata[SERIES_METADATA_KEY] = json.dumps({"name": value.name}).encode()
            value = value.to_frame(name="values" if value.name is None else value.name)
        _check_parquet_keeps(value)
        try:
            table = pyarrow.Table.from_pandas(value)
        except (pyarrow.ArrowException, TypeError, ValueError) as exc:
            raise MaterializerUnsuitable(str(exc)) from exc
        if _dtypes_signature(table.schema.empty_table().to_pandas()) != _dtypes_signature(value):
            raise MaterializerUnsuitable("Parquet would change the frame's dtypes or labels")
        if metadata:
            table = table.replace_schema_metadata({**table.schema.metadata, **metadata})
        pyarrow.parquet.write_table(table, stream)

    def read(self, stream: InputStream) -> Any:
        import pyarrow.parquet

        table = pyarrow.parquet.read_table(stream)
        frame = table.to_pandas()
        series_metadata = (table.schema.metadata or {}).get(SERIES_METADATA_KEY)
        if series_metadata is None:
            return frame
        series = frame.iloc[:, 0]
        series.name = json.loads(series_metadata)["name"]
        return series


def _check_parquet_keeps(frame: Any) -> None:
    """Raise :class:`MaterializerUnsuitable` for what Parquet would silently change."""
    from pandas.api.types import infer_dtype

    if frame.attrs:
        raise MaterializerUnsuitable("Parquet does not keep attrs")
    if not all(isinstance(name, str) for name in frame.columns) or not frame.columns.is_unique:
        raise MaterializerUnsuitable("Parquet needs unique string column names")
    if not all(name is None or isinstance(name, str) for name in frame.index.names):
        raise MaterializerUnsuitable("Parquet needs string index names")
    for name, column in frame.items():
        if column.dtype == object and infer_dtype(column, skipna=True) not in _PLAIN_OBJECT_COLUMNS:
            raise MaterializerUnsuitable(f"column {name!r} holds objects Parquet cannot keep")


def _dtypes_signature(frame: Any) -> tuple[Any, ...]:
    """What must survive the trip through Parquet: labels, dtypes and the kind of index."""
    index = frame.index
    index_dtypes = index.dtypes if index.nlevels > 1 else [index.dtype]
    return (
        list(frame.columns),
        frame.columns.name,
        [str(dtype) for dtype in frame.dtypes],
        type(index),
        list(index.names),
        [str(dtype) for dtype in index_dtypes],
    )


@cache
def _pyarrow_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("pyarrow") is not None


class PickleMaterializer(Materializer):
    """Anything else, with cloudpickle so notebook-defined functions and classes survive.

    Reading needs only the standard :func:`pickle.load` (which imports
    cloudpickle by itself when the pickle refers to it).
    """

    name = "pickle"
    extension = "pkl"

    def handles(self, value: Any) -> bool:
        return True

    def write(self, value: Any, stream: OutputStream) -> None:
        import cloudpickle

        cloudpickle.dump(value, stream)

    def read(self, stream: InputStream) -> Any:
        import pickle

        return pickle.load(stream)


BUILTIN_MATERIALIZERS: tuple[Materializer, ...] = (
    BytesMaterializer(),
    JsonMaterializer(),
    NumpyMaterializer(),
    PandasMaterializer(),
)
FALLBACK_MATERIALIZER: Materializer = PickleMaterializer()


@cache
def _installed_materializers() -> tuple[Materializer, ...]:
    """Materializers other packages declare; one that fails to load is reported and skipped."""
    from importlib.metadata import entry_points

    found = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            declared = entry_point.load()
            materializer = declared() if isinstance(declared, type) else declared
        except Exception as exc:  # a broken plugin must not break saving
            _log.warning(
                "stackmagic: skipping materializer %r from %s: %s",
                entry_point.name,
                entry_point.value,
                exc,
            )
            continue
        if not isinstance(materializer, Materializer):
            _log.warning(
                "stackmagic: skipping materializer %r: %s is not a Materializer",
                entry_point.name,
                entry_point.value,
            )
            continue
        found.append(materializer)
    return tuple(found)


def all_materializers() -> tuple[Materializer, ...]:
    """Every materializer in the order they are tried: built-ins, installed, pickle."""
    return (*BUILTIN_MATERIALIZERS, *_installed_materializers(), FALLBACK_MATERIALIZER)


def materializers_for(value: Any) -> Iterator[Materializer]:
    """The materializers that handle ``value``, best first; the last one is always pickle."""
    return (materializer for materializer in all_materializers() if materializer.handles(value))


def materializer_for(value: Any) -> Materializer:
    """The materializer tried first for ``value``."""
    return next(materializers_for(value))


def materializer_by_extension(extension: str) -> Materializer:
    """The materializer that reads files ending in ``.extension``."""
    materializers = all_materializers()
    for materializer in materializers:
        if materializer.extension == extension:
            return materializer
    known = ", ".join(sorted({materializer.extension for materializer in materializers}))
    files = f".{extension} files" if extension else "files without an extension"
    raise StackmagicError(
        f"no materializer reads {files} (known: {known}); install the package that saved it"
    )


__all__ = [
    "BUILTIN_MATERIALIZERS",
    "ENTRY_POINT_GROUP",
    "FALLBACK_MATERIALIZER",
    "BytesMaterializer",
    "InputStream",
    "JsonMaterializer",
    "Materializer",
    "MaterializerUnsuitable",
    "NumpyMaterializer",
    "OutputStream",
    "PandasMaterializer",
    "PickleMaterializer",
    "all_materializers",
    "materializer_by_extension",
    "materializer_for",
    "materializers_for",
]
