"""Parquet files: read with pyarrow record batch by record batch, never as a whole table.

A batch's columns are the file schema's column names in order (``header=True``); its values are the
Python values :func:`etl_staging.encode_batch` stores faithfully (docs/data-model.md, "Parquet"):

- integers (up to uint64), booleans, strings as they are; decimals as :class:`~decimal.Decimal`, stored
  as exact JSON numbers (``json_numbers``); binary as base64 (the encoder's default);
- float64 as the float (its shortest representation); float32 and float16 as the Decimal of their own
  shortest representation (``0.1``, not float64's ``0.10000000149011612``); NaN and the infinities as
  the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (JSON has no such number, orjson would write
  null);
- timestamps as ISO 8601 text: with a zone, in that zone with its offset (``+02:00``); without one
  (a naive timestamp), without an offset. The fraction has the unit's digits, always: none for
  seconds, 3 for milliseconds, 6 for microseconds, 9 for nanoseconds (pyarrow's own conversion to
  datetime refuses or drops nanoseconds; they are kept). Times of day the same way (``HH:MM:SS.fff``);
  dates ``YYYY-MM-DD``; durations as exact seconds (a JSON number, ``1.500``);
- lists as JSON arrays, structs as objects, maps with string keys as objects, other maps as arrays
  of ``[key, value]`` pairs, each element converted by the same rules; dictionary-encoded columns as
  their values.

Parquet is read from its footer, so the file must be seekable: a ``.parquet`` inside a zip archive
or gzipped is refused (Parquet compresses its own pages). Reading is buffered per column chunk
(``buffer_size``) rather than a row group at a time, so memory stays flat whatever the row groups.
"""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from etl_shared import SourceFatalError

if TYPE_CHECKING:
    import pyarrow as pa

    from ._config import FileGroup
    from ._extract import Batch, SourceFile

#: bytes read at a time from a column chunk (pyarrow's buffered stream), instead of whole chunks
READ_BUFFER_BYTES = 1 << 20
_TIMESPEC = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}
_SPECIAL_FLOATS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}

Converter = Callable[["pa.Array"], list[Any]]
#: what a conversion raises for a value Python or JSON cannot hold (a year past 9999, a map key twice)
_UNREPRESENTABLE = (ValueError, OverflowError, ArithmeticError, KeyError)


def parquet_batches(
    source_file: SourceFile, group: FileGroup, batch_size: int, where: str, origin: str
) -> Iterator[Batch]:
    """The rows of a Parquet file in batches of at most ``batch_size``; ``where`` names its rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ._extract import Batch, Located

    with source_file.open() as handle:
        if isinstance(handle, gzip.GzipFile | zipfile.ZipExtFile) or not handle.seekable():
            raise SourceFatalError(
                f"{where}: a Parquet file is read from its footer and needs a seekable file; it cannot be"
                " read inside a zip archive or gzip: drop the .parquet file itself (Parquet compresses its"
                " own pages)"
            )
        try:
            parquet = pq.ParquetFile(handle, buffer_size=READ_BUFFER_BYTES, pre_buffer=False)
        except (pa.ArrowException, OSError) as exc:
            raise SourceFatalError(f"{where}: not a readable Parquet file: {exc}") from None
        schema = parquet.schema_arrow
        columns = [group.rename.get(name, name) for name in schema.names]
        twice = sorted({name for name in columns if columns.count(name) > 1})
        if twice:
            raise SourceFatalError(f"{where}: the column name(s) {', '.join(twice)} occur more than once")
        converters = [converter(field.type) for field in schema]
        read = 0
        # one thread: a job pulls several entities at once already, and a batch is a few thousand rows
        batches = parquet.iter_batches(batch_size=batch_size, use_threads=False)
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as exc:
                raise SourceFatalError(
                    f"{where}: corrupt or truncated Parquet data after row {read}: {exc}"
                ) from None
            if batch is None:
                return
            if batch.num_rows == 0:
                continue
            values = [
                _column(convert, batch.column(i), columns[i], where, read)
                for i, convert in enumerate(converters)
            ]
            rows = [list(row) for row in zip(*values, strict=True)]
            positions = list(range(read + 1, read + batch.num_rows + 1))
            read += batch.num_rows
            yield Batch(
                columns, rows, header=True, where=Located(origin, "row", positions), json_numbers=True
            )


def _column(convert: Converter, array: pa.Array, name: str, where: str, before: int) -> list[Any]:
    """``convert(array)``; a value it cannot represent is an error naming its row and column."""
    try:
        return convert(array)
    except _UNREPRESENTABLE as exc:
        problem: Exception = exc
    for index in range(len(array)):  # find the row, for the message
        try:
            convert(array.slice(index, 1))
        except _UNREPRESENTABLE as exc:
            raise SourceFatalError(
                f"{where}, row {before + index + 1}, column {name!r} ({array.type}): cannot store the value:"
                f" {exc}"
            ) from None
    raise SourceFatalError(
        f"{where}, rows {before + 1} to {before + len(array)}, column {name!r}: cannot store the values: {problem}"
    )


# ----------------------------------------------------------------------------- converters


def converter(arrow_type: pa.DataType) -> Converter:
    """How a column of ``arrow_type`` becomes Python values (the rules in the module's docstring)."""
    import pyarrow as pa

    types = pa.types
    if _native(arrow_type):
        return _to_pylist
    if types.is_dictionary(arrow_type):
        inner = converter(arrow_type.value_type)
        return lambda array: inner(array.dictionary_decode())
    if types.is_floating(arrow_type):
        return _floats64 if types.is_float64(arrow_type) else _floats_short
    if types.is_timestamp(arrow_type):
        return _timestamps(arrow_type.unit, arrow_type.tz)
    if types.is_time(arrow_type):
        return _times(arrow_type.unit)
    if types.is_duration(arrow_type):
        return _durations(arrow_type.unit)
    if types.is_map(arrow_type):
        return _maps(arrow_type)
    if _is_list(arrow_type):
        return _lists(converter(arrow_type.value_type))
    if types.is_struct(arrow_type):
        fields = [(field.name, converter(field.type)) for field in arrow_type]
        return _structs(fields)
    return _to_pylist  # what pyarrow gives (intervals, extension types): the encoder says if it cannot


def _native(arrow_type: pa.DataType) -> bool:
    """Whether pyarrow's ``to_pylist`` already gives the values :func:`encode_batch` stores faithfully."""
    import pyarrow as pa

    types = pa.types
    if (
        types.is_integer(arrow_type)
        or types.is_boolean(arrow_type)
        or types.is_null(arrow_type)
        or types.is_decimal(arrow_type)
        or types.is_date(arrow_type)
        or types.is_string(arrow_type)
        or types.is_large_string(arrow_type)
        or types.is_binary(arrow_type)
        or types.is_large_binary(arrow_type)
        or types.is_fixed_size_binary(arrow_type)
        or _is_view(arrow_type, "string_view")
        or _is_view(arrow_type, "binary_view")
    ):
        return True
    if types.is_dictionary(arrow_type):
        return _native(arrow_type.value_type)
    if _is_list(arrow_type) and not types.is_map(arrow_type):
        return _native(arrow_type.value_type)
    if types.is_struct(arrow_type):
        return all(_native(field.type) for field in arrow_type)
    return False


def _is_view(arrow_type: pa.DataType, name: str) -> bool:
    import pyarrow as pa

    check = getattr(pa.types, f"is_{name}", None)
    return bool(check is not None and check(arrow_type))


def _is_list(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    types = pa.types
    return bool(
        types.is_list(arrow_type)
        or types.is_large_list(arrow_type)
        or types.is_fixed_size_list(arrow_type)
        or _is_view(arrow_type, "list_view")
        or _is_view(arrow_type, "large_list_view")
        or types.is_map(arrow_type)
    )


def _to_pylist(array: pa.Array) -> list[Any]:
    return array.to_pylist()  # type: ignore[no-any-return]


def _special(value: Any) -> Any:
    if value != value:  # NaN
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _floats64(array: pa.Array) -> list[Any]:
    import pyarrow.compute as pc

    values = array.to_pylist()
    if pc.any(pc.invert(pc.is_finite(array))).as_py():
        return [None if value is None else _special(value) for value in values]
    return values


def _floats_short(array: pa.Array) -> list[Any]:
    """float32/float16: the shortest decimal that reads back as the same value, exactly."""
    import pyarrow as pa

    texts = array.cast(pa.string()).to_pylist()
    return [None if text is None else _SPECIAL_FLOATS.get(text) or Decimal(text) for text in texts]


def _timestamps(unit: str, tz: str | None) -> Converter:
    """ISO 8601 text with the unit's digits of fraction, and the zone's offset when the column has a
    zone. pyarrow gives datetimes (microseconds) only; nanoseconds are added to their text."""

    def convert(array: pa.Array) -> list[Any]:
        import pyarrow as pa

        if unit != "ns":
            spec = _TIMESPEC[unit]
            return [
                None if moment is None else moment.isoformat(timespec=spec) for moment in array.to_pylist()
            ]
        ticks = array.cast(pa.int64()).to_pylist()
        micros = pa.array(
            [None if tick is None else tick // 1000 for tick in ticks], pa.timestamp("us", tz=tz)
        ).to_pylist()
        out: list[Any] = []
        for tick, moment in zip(ticks, micros, strict=True):
            if moment is None:
                out.append(None)
                continue
            text = moment.isoformat(timespec="microseconds")
            # YYYY-MM-DDTHH:MM:SS.ffffff is 26 characters; the offset, if any, follows
            out.append(f"{text[:26]}{tick % 1000:03d}{text[26:]}")
        return out

    return convert


def _times(unit: str) -> Converter:
    """Times of day as ``HH:MM:SS`` with the unit's digits of fraction."""

    def convert(array: pa.Array) -> list[Any]:
        import pyarrow as pa

        if unit != "ns":
            spec = _TIMESPEC[unit]
            return [None if time is None else time.isoformat(timespec=spec) for time in array.to_pylist()]
        out: list[Any] = []
        for tick in array.cast(pa.int64()).to_pylist():
            if tick is None:
                out.append(None)
                continue
            seconds, nanos = divmod(tick, 1_000_000_000)
            minutes, second = divmod(seconds, 60)
            hour, minute = divmod(minutes, 60)
            if not 0 <= hour < 24:
                raise ValueError(f"time of day out of range: {tick} ns")
            out.append(f"{hour:02d}:{minute:02d}:{second:02d}.{nanos:09d}")
        return out

    return convert


def _durations(unit: str) -> Converter:
    digits = {"s": 0, "ms": 3, "us": 6, "ns": 9}[unit]

    def convert(array: pa.Array) -> list[Any]:
        import pyarrow as pa

        ticks = array.cast(pa.int64()).to_pylist()
        return [None if tick is None else Decimal(tick).scaleb(-digits) for tick in ticks]

    return convert


def _split(array: pa.Array, flat: list[Any]) -> list[Any]:
    """The list values of ``array`` from its flattened (converted) elements."""
    import pyarrow.compute as pc

    out: list[Any] = []
    start = 0
    for length in pc.list_value_length(array).to_pylist():
        if length is None:
            out.append(None)
            continue
        out.append(flat[start : start + length])
        start += length
    return out


def _lists(inner: Converter) -> Converter:
    return lambda array: _split(array, inner(array.flatten()))


def _structs(fields: list[tuple[str, Converter]]) -> Converter:
    def convert(array: pa.Array) -> list[Any]:
        values = [
            (name, convert_field(array.field(index))) for index, (name, convert_field) in enumerate(fields)
        ]
        valid = array.is_valid().to_pylist()
        return [
            {name: column[row] for name, column in values} if valid[row] else None
            for row in range(len(array))
        ]

    return convert


def _maps(arrow_type: pa.DataType) -> Converter:
    import pyarrow as pa

    keys = converter(arrow_type.key_type)
    items = converter(arrow_type.item_type)
    by_name = pa.types.is_string(arrow_type.key_type) or pa.types.is_large_string(arrow_type.key_type)

    def convert(array: pa.Array) -> list[Any]:
        # a map array's keys and items are its whole children; its offsets index them, sliced or not
        offsets = array.offsets.to_pylist()
        first, last = offsets[0], offsets[-1]
        pairs = list(
            zip(
                keys(array.keys.slice(first, last - first)),
                items(array.items.slice(first, last - first)),
                strict=True,
            )
        )
        valid = array.is_valid().to_pylist()
        out: list[Any] = []
        for row in range(len(array)):
            if not valid[row]:
                out.append(None)
                continue
            entry = pairs[offsets[row] - first : offsets[row + 1] - first]
            if not by_name:
                out.append([list(pair) for pair in entry])
                continue
            mapping = dict(entry)
            if len(mapping) != len(entry):
                raise ValueError("a map holds the same key twice")
            out.append(mapping)
        return out

    return convert
