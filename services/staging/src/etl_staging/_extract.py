"""Extractors stream a source entity as batches of rows (and, for files, the bytes as fetched).

Each extractor is a generator of :class:`Batch` and :class:`Payload` items: nothing holds a whole
source in memory. Errors name the source, the file and the line or record.
"""

from __future__ import annotations

import codecs
import csv
import glob
import gzip
import hashlib
import io
import logging
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

import ijson
import orjson
import psycopg
from psycopg import sql
from psycopg.adapt import Loader

from etl_shared import (
    ConfigurationError,
    KeysetRead,
    Restarted,
    RetryPolicy,
    SourceFatalError,
    SourceTransientError,
    register_url_password,
)

from ._config import DatabaseEntity, FileEntity, FileGroup
from ._json import JsonError, RawJson, holds_nul, needs_exact
from ._json import loads as json_loads
from ._parquet import parquet_batches
from ._roots import FileRoots
from ._xml import xml_records

_log = logging.getLogger(__name__)
#: the default chunk of a file's bytes as fetched; the job passes the warehouse's (ValueSizes)
PAYLOAD_CHUNK_BYTES = 8 * 1024 * 1024


@dataclass
class Batch:
    columns: list[str]
    rows: list[list[Any]]
    #: the columns are the source's whole column list (a database query, a CSV header), not only the
    #: keys this batch's records happened to have (JSON, XML, REST)
    header: bool = False
    #: where row i came from, for messages ("file x.csv, line 7"); None: only its batch and row
    where: Callable[[int], str] | None = field(default=None, compare=False, repr=False)
    #: a Decimal in the rows is a number as the source sent it (JSON, Parquet), stored as a JSON
    #: number with all its digits; else (a database's numeric) as its exact string
    json_numbers: bool = False
    #: the file the rows were read from (a path, or ``archive.zip!member``); None: not a file
    origin: str | None = None


@dataclass(frozen=True)
class Located:
    """``Batch.where`` of rows read from one file: ``positions[i]`` is row i's line or record number."""

    origin: str
    unit: str
    positions: list[int]

    def __call__(self, index: int) -> str:
        return f"{self.origin}, {self.unit} {self.positions[index]}"


@dataclass(frozen=True)
class Rejected:
    """A line or record that could not be read, set aside by ``on_bad_record: quarantine``."""

    origin: str
    unit: str
    position: int
    reason: str
    content: str | bytes


@dataclass
class Payload:
    name: str
    content_type: str
    body: bytes


@dataclass
class ExtractState:
    """What an extraction learned on the way: the new watermark and metadata for the pull row."""

    watermark_after: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    bytes_read: int = 0


# --------------------------------------------------------------------------- files

_CONTENT_TYPES = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "json": "application/json",
    "xml": "application/xml",
    "parquet": "application/vnd.apache.parquet",
}


def expand_paths(group: FileGroup, roots: FileRoots) -> list[Path]:
    """The files a group's glob matches (``{data_dir}`` and a relative path: below the data folder)."""
    pattern = roots.pattern(group.path)
    return sorted(Path(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))


@dataclass
class SourceFile:
    """One readable file: a plain or gzipped file, or a member of a zip archive."""

    name: str
    open: Callable[[], IO[bytes]]


def file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


class _CountingReader(io.RawIOBase):
    """A raw file that counts the bytes read from it: how far the parser has got in the file."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._raw.seekable()  # Parquet is read from its footer

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        self.bytes_read += n or 0
        return n  # type: ignore[no-any-return]

    def close(self) -> None:
        self._raw.close()
        super().close()


def _gunzip_if(name: str, opener: Callable[[], IO[bytes]]) -> Callable[[], IO[bytes]]:
    if name.endswith(".gz"):
        return lambda: gzip.open(opener(), "rb")  # type: ignore[return-value]
    return opener


def source_files(path: Path) -> Iterator[SourceFile]:
    """The files inside ``path``: itself (gunzipped when .gz) or every member of a zip archive."""
    if path.suffix == ".zip":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise SourceFatalError(f"file {path}: not a valid zip archive ({exc})") from None
        with archive:
            for member in sorted(i.filename for i in archive.infolist() if not i.is_dir()):
                opener = _gunzip_if(member, lambda m=member: archive.open(m))  # type: ignore[misc]
                yield SourceFile(f"{path}!{member}", opener)
        return
    yield SourceFile(str(path), _gunzip_if(path.name, lambda: path.open("rb")))


@dataclass(frozen=True)
class LoadedFile:
    path: str
    checksum: str
    bytes: int


class FileExtractor:
    """Reads the files of one entity. With ``skip_loaded_files``, a file whose checksum was already
    committed for this source entity (``already_loaded``) is skipped; the files read are listed in
    ``loaded`` so that the committing transaction can record them."""

    def __init__(
        self,
        source: str,
        entity: FileEntity,
        *,
        data_dir: Path,
        batch_size: int,
        roots: FileRoots | None = None,
        already_loaded: Callable[[str], bool] | None = None,
        payload_chunk_bytes: int = PAYLOAD_CHUNK_BYTES,
    ) -> None:
        self.source = source
        self.entity = entity
        self.data_dir = data_dir
        self.roots = roots or FileRoots.data_folder_only(data_dir)
        self.batch_size = batch_size
        self.payload_chunk_bytes = payload_chunk_bytes
        self.already_loaded = already_loaded
        self.state = ExtractState()
        self.loaded: list[LoadedFile] = []
        #: records read, records rejected (on_bad_record: quarantine) and the first reasons
        self.records = 0
        self.rejected = 0
        self.first_rejects: list[str] = []
        #: files without a record (on_empty: warn)
        self.empty_files: list[str] = []

    def extract(self) -> Iterator[Batch | Payload | Rejected]:
        skipped: list[str] = []
        files: list[dict[str, Any]] = []
        # kept up to date file by file: a pull that fails keeps what it read so far
        self.state.metadata = {"files": files, "skipped_files": skipped}
        matched = [(group, expand_paths(group, self.roots)) for group in self.entity.files]
        # every file the globs found, resolved, before a byte of any is read (a link in a drop folder)
        where = f"source {self.source}, entity {self.entity.name}"
        self.roots.refuse_outside([path for _, paths in matched for path in paths], where)
        for group, paths in matched:
            if not paths:
                _log.warning("no file matches %s", group.path)
            for path in paths:
                checksum = file_checksum(path)
                if self.entity.skip_loaded_files and self.already_loaded and self.already_loaded(checksum):
                    _log.info("skipping %s: already loaded (sha256 %s)", path, checksum[:12])
                    skipped.append(str(path))
                    continue
                size = path.stat().st_size
                self.loaded.append(LoadedFile(str(path), checksum, size))
                files.append({"path": str(path), "sha256": checksum, "bytes": size})
                self.state.bytes_read += size
                if self.entity.keep_payload and path.suffix != ".zip":
                    yield from self._batches_with_payload(path, group)
                    continue
                if self.entity.keep_payload:
                    yield from self._payloads(path, group)
                for source_file in source_files(path):
                    yield from self._batches(source_file, group)
        self._check_rejected_share()
        if self.empty_files:
            self.state.metadata["empty_files"] = self.empty_files

    def _payloads(self, path: Path, group: FileGroup) -> Iterator[Payload]:
        suffix = {".gz": "+gzip", ".zip": "+zip"}.get(path.suffix, "")
        content_type = _CONTENT_TYPES[group.format] + suffix
        with path.open("rb") as handle:
            part = 0
            while chunk := handle.read(self.payload_chunk_bytes):
                part += 1
                yield Payload(name=f"{path.name}#{part}", content_type=content_type, body=chunk)

    def _batches_with_payload(self, path: Path, group: FileGroup) -> Iterator[Batch | Payload | Rejected]:
        """The batches of a plain or gzipped file, each followed by the payload chunks of the bytes
        the parser has read so far: the database stores the file as fetched while the next batch is
        parsed, instead of before the first (bench/README.md, staging)."""
        counter: list[_CountingReader] = []

        def open_counted() -> IO[bytes]:
            counter.append(_CountingReader(path.open("rb", buffering=0)))
            return io.BufferedReader(counter[-1], buffer_size=1024 * 1024)

        payloads = self._payloads(path, group)
        stored = 0
        for batch in self._batches(SourceFile(str(path), _gunzip_if(path.name, open_counted)), group):
            yield batch
            while (
                counter and stored < counter[-1].bytes_read and (payload := next(payloads, None)) is not None
            ):
                stored += len(payload.body)
                yield payload
        yield from payloads  # the rest: what the parser read after its last batch, or a file without records

    def _open_text(self, source_file: SourceFile, group: FileGroup) -> IO[str]:
        return io.TextIOWrapper(source_file.open(), encoding=group.encoding, newline="")

    def _batches(self, source_file: SourceFile, group: FileGroup) -> Iterator[Batch | Rejected]:
        where = f"source {self.source}, file {source_file.name}"
        records = 0
        if group.format in ("json", "xml") and _is_blank(source_file):
            # a document parser calls an empty file malformed; it is an empty file (on_empty)
            self._empty(source_file, where)
            return
        try:
            if group.format == "csv":
                items: Iterator[Batch | Rejected] = self._csv(source_file, group, where)
            elif group.format == "parquet":
                items = parquet_batches(
                    source_file, group, self.batch_size, where, f"file {source_file.name}"
                )
            else:
                reader = {"jsonl": self._jsonl, "json": self._json, "xml": xml_records}[group.format]
                items = _records_to_batches(
                    reader(source_file, group, where),
                    group,
                    self.batch_size,
                    origin=f"file {source_file.name}",
                    unit="line" if group.format == "jsonl" else "record",
                )
            for item in items:
                if isinstance(item, Batch):
                    item.origin = source_file.name
                    records += len(item.rows)
                yield item
        except UnicodeDecodeError as exc:
            raise SourceFatalError(_decode_error(source_file, group.encoding, where, exc)) from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise SourceFatalError(f"{where}: cannot read: {exc}") from None
        self.records += records
        if records == 0:
            self._empty(source_file, where)

    def _empty(self, source_file: SourceFile, where: str) -> None:
        """A file without a record (empty, a header only, an empty list): the entity's on_empty."""
        if self.entity.on_empty == "fail":
            raise SourceFatalError(
                f"{where}: holds no record, and entity {self.entity.name} has on_empty: fail; check the"
                " file (an empty export, a wrong records_path), or set on_empty: warn to accept it"
            )
        self.empty_files.append(source_file.name)
        _log.warning(
            "%s: holds no record (entity %s, on_empty: warn): the pull goes on without it",
            where,
            self.entity.name,
            extra={"file": source_file.name},
        )

    def _reject(
        self, source_file: SourceFile, where: str, unit: str, position: int, reason: str, content: str | bytes
    ) -> Rejected:
        """A record that cannot be read: the pull fails (on_bad_record: fail), or it is set aside."""
        if self.entity.on_bad_record == "fail":
            raise SourceFatalError(f"{where}, {unit} {position}: {reason}")
        self.rejected += 1
        if len(self.first_rejects) < 3:
            self.first_rejects.append(f"{source_file.name}, {unit} {position}: {reason}")
        if self.rejected <= REJECTS_LOGGED:
            _log.warning(
                "%s, %s %d: %s: set aside in staging.rejected_records (on_bad_record: quarantine)",
                where,
                unit,
                position,
                reason,
                extra={"file": source_file.name, unit: position},
            )
        elif self.rejected == REJECTS_LOGGED + 1:
            _log.warning(
                "source %s, entity %s: more records rejected; counted, not logged one by one",
                self.source,
                self.entity.name,
            )
        return Rejected(source_file.name, unit, position, reason, content)

    def _check_rejected_share(self) -> None:
        """on_bad_record: quarantine: the pull fails when more than max_bad_share of its records were
        rejected (a file that is mostly broken is not a few bad lines)."""
        if not self.rejected:
            return
        total = self.records + self.rejected
        share = self.rejected / total
        if share > self.entity.max_bad_share:
            raise SourceFatalError(
                f"source {self.source}, entity {self.entity.name}: {self.rejected:,} of {total:,} records could"
                f" not be read ({share:.2%}), more than max_bad_share {self.entity.max_bad_share:.2%}: the pull"
                f" fails. First: {'; '.join(self.first_rejects)}"
            )
        _log.warning(
            "source %s, entity %s: %d of %d records could not be read and are in staging.rejected_records",
            self.source,
            self.entity.name,
            self.rejected,
            total,
            extra={"rejected_records": self.rejected},
        )

    def _csv(self, source_file: SourceFile, group: FileGroup, where: str) -> Iterator[Batch | Rejected]:
        with self._open_text(source_file, group) as handle:
            # the text lines of the record being read: what a rejected record is kept as
            read: list[str] = []
            reader = csv.reader(
                _remembered(handle, read), delimiter=group.delimiter, quotechar=group.quotechar, strict=True
            )
            try:
                header = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise SourceFatalError(f"{where}, line 1: malformed CSV: {exc}") from None
            columns = [group.rename.get(h.strip(), h.strip()) for h in header]
            rows: list[list[Any]] = []
            lines: list[int] = []
            origin = f"file {source_file.name}"
            while True:
                start = reader.line_num + 1
                read.clear()
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    yield self._reject(
                        source_file, where, "line", reader.line_num, f"malformed CSV: {exc}", "".join(read)
                    )
                    continue
                if not row:
                    continue
                text = read[0] if len(read) == 1 else "".join(read)
                if "\x00" in text:
                    yield self._reject(source_file, where, "line", start, _NUL_REASON, text)
                    continue
                if len(row) != len(columns):
                    yield self._reject(
                        source_file,
                        where,
                        "line",
                        start,
                        f"{len(row)} fields, the header has {len(columns)}",
                        text,
                    )
                    continue
                rows.append(row)
                lines.append(start)
                if len(rows) >= self.batch_size:
                    yield Batch(columns, rows, header=True, where=Located(origin, "line", lines))
                    rows, lines = [], []
            if rows:
                yield Batch(columns, rows, header=True, where=Located(origin, "line", lines))

    def _jsonl(
        self, source_file: SourceFile, group: FileGroup, where: str
    ) -> Iterator[tuple[int, dict[str, Any]] | _Records | Rejected]:
        """(line number, record) of each non-blank line."""
        if codecs.lookup(group.encoding).name in ("utf-8", "utf-8-sig"):
            yield from self._jsonl_utf8(source_file, where)
            return
        with self._open_text(source_file, group) as handle:
            for line_no, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield line_no, _json_line(line)
                    except _BadLine as bad:
                        yield self._reject(source_file, where, "line", line_no, bad.reason, line)

    def _jsonl_utf8(
        self, source_file: SourceFile, where: str
    ) -> Iterator[tuple[int, dict[str, Any]] | _Records | Rejected]:
        """UTF-8 JSON Lines parsed straight from the bytes (orjson validates the UTF-8): no decoding
        pass through a text wrapper, which measured a fifth of the parsing time. The file is read in
        chunks of whole lines, and each chunk is scanned once for what needs the exact number parser
        or a NUL check (_json.py): a line by line scan cost more than parsing the line."""
        offset = 0  # of the line in the file: where invalid UTF-8 is reported
        line_no = 0
        rest = b""
        with source_file.open() as handle:
            while True:
                chunk = handle.read(JSONL_CHUNK_BYTES)
                if line_no == 0 and not rest and chunk.startswith(codecs.BOM_UTF8):
                    offset = len(codecs.BOM_UTF8)
                    chunk = chunk[offset:]
                data = rest + chunk if rest else chunk
                if chunk:
                    cut = data.rfind(b"\n") + 1
                    data, rest = data[:cut], data[cut:]
                    if not data:
                        continue  # a line longer than a chunk: read on
                elif not data:
                    return
                else:
                    rest = b""  # the last line, without its newline
                exact = needs_exact(data)
                nul = b"\\u0000" in data
                lines = data.split(b"\n")
                if lines[-1] == b"":
                    lines.pop()
                if not exact and not nul and (records := _plain_records(lines)) is not None:
                    yield _Records(line_no + 1, records)
                    line_no += len(lines)
                    offset += len(data)
                    continue
                for line in lines:
                    line_no += 1
                    if line and not line.isspace():
                        try:
                            yield line_no, _json_line(line, offset, exact=exact, nul=nul)
                        except _BadLine as bad:
                            yield self._reject(source_file, where, "line", line_no, bad.reason, line)
                    offset += len(line) + 1

    def _json(
        self, source_file: SourceFile, group: FileGroup, where: str
    ) -> Iterator[tuple[int, dict[str, Any]] | Rejected]:
        """(record number from 1, record) of the document's record list, streamed: the records path is
        walked incrementally (ijson), one record in memory at a time; numbers exact (ints as int, others
        as Decimal)."""
        path = group.records_path or ""
        count = 0
        with _utf8_stream(source_file, group.encoding) as handle:
            try:
                for record in ijson.items(handle, f"{path}.item" if path else "item", use_float=False):
                    count += 1
                    if isinstance(record, dict):
                        yield count, record
                        continue
                    reason = f"expected a JSON object, got {_json_kind(record)}"
                    yield self._reject(source_file, where, "record", count, reason, _json_text(record))
            except ijson.JSONError as exc:
                raise SourceFatalError(self._json_error(source_file, group, where, count, exc)) from None
        if count == 0:
            _check_records_path(source_file, group, where)

    def _json_error(
        self, source_file: SourceFile, group: FileGroup, where: str, count: int, exc: Exception
    ) -> str:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "utf8" in message.lower() or "utf-8" in message.lower():
            found = locate_decode_error(source_file.open, group.encoding)
            if found is not None:
                return _decode_message(where, group.encoding, *found, source_file)
        return f"{where}: malformed JSON after record {count:,}: {message}"


REJECTS_LOGGED = 20
#: bytes of JSON Lines read (and scanned) at a time
JSONL_CHUNK_BYTES = 1024 * 1024
_NUL_REASON = "a NUL character, which the warehouse cannot store"


class _BadLine(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _remembered(lines: Iterator[str] | IO[str], read: list[str]) -> Iterator[str]:
    """The lines, each also appended to ``read`` (the caller clears it per record)."""
    for line in lines:
        read.append(line)
        yield line


def _json_line(
    line: str | bytes, offset: int | None = None, *, exact: bool = True, nul: bool = True
) -> dict[str, Any]:
    """One JSON Lines record; ``_BadLine`` says why it is not one. ``offset``: the line's byte offset
    in the file (bytes lines), for invalid UTF-8. ``exact=False``: the caller found no number a float
    may round (so orjson reads it as is); ``nul=False``: no NUL escape in it."""
    try:
        record = json_loads(line) if exact else orjson.loads(line)
    except (JsonError, orjson.JSONDecodeError) as exc:
        if isinstance(line, bytes):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                at = f"byte {offset + bad.start:,} of the file, " if offset is not None else ""
                raise _BadLine(
                    f"not valid utf-8 at {at}byte {bad.start} of the line: {bad.reason};"
                    " set 'encoding' for this file"
                ) from None
        reason = exc.reason if isinstance(exc, JsonError) else str(exc).split(": line ", 1)[0]
        raise _BadLine(f"malformed JSON: {reason}") from None
    if not isinstance(record, dict):
        raise _BadLine(f"expected a JSON object, got {_json_kind(record)}")
    if nul and ("\\u0000" in line if isinstance(line, str) else b"\\u0000" in line) and holds_nul(record):
        raise _BadLine(_NUL_REASON)
    return record


@dataclass(frozen=True)
class _Records:
    """Records read from consecutive lines, the first at line ``first``."""

    first: int
    records: list[dict[str, Any]]


def _plain_records(lines: list[bytes]) -> list[dict[str, Any]] | None:
    """The records of a chunk's lines parsed in one pass, or None when a line is not a plain record
    (blank, malformed, not an object): the caller then reads the chunk line by line, which finds and
    names it. Only for lines without a number orjson would round or a NUL escape (needs_exact). One
    C loop over the chunk instead of a generator step per line: the per-record Python work was as large
    as the parse (bench/README.md, staging)."""
    try:
        records = list(map(orjson.loads, lines))
    except orjson.JSONDecodeError:
        return None
    return records if all(type(record) is dict for record in records) else None


def _json_kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _json_text(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


class _Transcoded(io.RawIOBase):
    """The UTF-8 bytes of a text stream (ijson parses bytes; a file in another encoding is decoded
    as declared and re-encoded)."""

    def __init__(self, text: IO[str]) -> None:
        self._text = text
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = self._text.read(64 * 1024)
            if not chunk:
                return 0
            self._pending = chunk.encode("utf-8", "surrogatepass")
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._text.close()
        super().close()


def _utf8_stream(source_file: SourceFile, encoding: str) -> IO[bytes]:
    """The file's content as UTF-8 bytes, without a byte order mark."""
    if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig"):
        handle = io.BufferedReader(source_file.open(), buffer_size=1024 * 1024)  # type: ignore[arg-type]
        if handle.peek(3)[:3] == codecs.BOM_UTF8:
            handle.read(3)
        return handle
    text = io.TextIOWrapper(source_file.open(), encoding=encoding, newline="")
    return io.BufferedReader(_Transcoded(text), buffer_size=1024 * 1024)


def _check_records_path(source_file: SourceFile, group: FileGroup, where: str) -> None:
    """A document without records: an empty list at the records path is fine (the empty-file policy
    applies); a path that is missing or not a list is an error."""
    path = group.records_path or ""
    with _utf8_stream(source_file, group.encoding) as handle:
        try:
            for prefix, event, _value in ijson.parse(handle):
                if prefix == path and event in (
                    "start_array",
                    "start_map",
                    "string",
                    "number",
                    "boolean",
                    "null",
                ):
                    if event == "start_array":
                        return
                    kind = {"start_map": "an object"}.get(event, f"a {event}")
                    raise SourceFatalError(
                        f"{where}: expected a list of records at {path or 'the top'}, got {kind}"
                    )
        except ijson.JSONError:
            return  # the empty file: its policy says
    if path:
        raise SourceFatalError(f"{where}: records path {path!r} not found")


def _is_blank(source_file: SourceFile) -> bool:
    """Whether the file holds nothing but white space (and a byte order mark)."""
    try:
        with source_file.open() as handle:
            while chunk := handle.read(64 * 1024):
                if chunk.strip(b" \t\r\n\xef\xbb\xbf"):
                    return False
    except (OSError, EOFError, zipfile.BadZipFile):
        return False  # the read proper reports it
    return True


def locate_decode_error(open_bytes: Callable[[], IO[bytes]], encoding: str) -> tuple[int, int, str] | None:
    """(byte offset in the file, line, reason) of the first byte sequence that is not ``encoding``, or
    None: the file is read again from its start (only after a decoding error, whose own offset is
    relative to a read buffer)."""
    name = codecs.lookup(encoding).name
    decoder = codecs.getincrementaldecoder("utf-8" if name == "utf-8-sig" else name)("strict")
    offset = newlines = 0
    with open_bytes() as handle:
        while True:
            chunk = handle.read(1024 * 1024)
            pending = decoder.getstate()[0]
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                at = offset - len(pending) + exc.start
                line = newlines + chunk[: max(0, at - offset)].count(b"\n") + 1
                return at, line, exc.reason
            if not chunk:
                return None
            offset += len(chunk)
            newlines += chunk.count(b"\n")


def _decode_message(
    where: str, encoding: str, offset: int, line: int, reason: str, source_file: SourceFile
) -> str:
    packed = source_file.name.endswith(".gz") or "!" in source_file.name
    of = "of the uncompressed content" if packed else "of the file"
    return (
        f"{where}, line {line:,}: not valid {encoding} at byte {offset:,} {of}: {reason};"
        " set 'encoding' for this file"
    )


def _decode_error(source_file: SourceFile, encoding: str, where: str, exc: UnicodeDecodeError) -> str:
    found = locate_decode_error(source_file.open, encoding)
    if found is None:  # not found reading again (a file that changed?): what the decoder said
        return f"{where}: not valid {encoding}: {exc.reason}; set 'encoding' for this file"
    return _decode_message(where, encoding, *found, source_file)


def _records_to_batches(
    records: Iterator[tuple[int, dict[str, Any]] | _Records | Rejected],
    group: FileGroup,
    batch_size: int,
    *,
    origin: str,
    unit: str,
) -> Iterator[Batch | Rejected]:
    """Turn (position, dict record) pairs into list-of-arrays batches; a batch's columns are its
    records' keys in first-seen order (missing values are null), its ``where`` each row's position.
    A rejected record is passed on as it comes."""
    chunk: list[dict[str, Any]] = []
    positions: list[int] = []
    for item in records:
        if isinstance(item, _Records):
            many = item.records
            if group.rename:
                many = [{group.rename.get(k, k): v for k, v in record.items()} for record in many]
            chunk.extend(many)
            positions.extend(range(item.first, item.first + len(many)))
            while len(chunk) >= batch_size:
                yield _located(_to_batch(chunk[:batch_size]), origin, unit, positions[:batch_size])
                chunk, positions = chunk[batch_size:], positions[batch_size:]
            continue
        if isinstance(item, Rejected):
            yield item
            continue
        position, record = item
        if group.rename:
            record = {group.rename.get(k, k): v for k, v in record.items()}
        chunk.append(record)
        positions.append(position)
        if len(chunk) >= batch_size:
            yield _located(_to_batch(chunk), origin, unit, positions)
            chunk, positions = [], []
    if chunk:
        yield _located(_to_batch(chunk), origin, unit, positions)


def _located(batch: Batch, origin: str, unit: str, positions: list[int]) -> Batch:
    batch.where = Located(origin, unit, positions)
    return batch


def _to_batch(records: list[dict[str, Any]]) -> Batch:
    first = list(records[0])
    if len(first) > 1:  # the usual case: every record has the same keys (in any order)
        values = itemgetter(*first)
        if all(map(len(first).__eq__, map(len, records))):  # C loops: no Python step per record
            try:
                return Batch(first, list(map(list, map(values, records))), json_numbers=True)
            except KeyError:
                pass  # same width, other keys
    columns: dict[str, None] = {}
    for record in records:
        for key in record:
            columns.setdefault(key, None)
    names = list(columns)
    return Batch(names, [[record.get(name) for name in names] for record in records], json_numbers=True)


# ----------------------------------------------------------------------- databases


@dataclass(frozen=True)
class Restart:
    """The extraction starts again from its first row (its source connection was lost and the read
    cannot resume where it stopped): discard the batches and payloads of the pull so far."""

    reason: str


class DatabaseExtractor:
    """Full or incremental (by watermark column) extraction, streamed with a server-side cursor.

    A lost source connection (a node restart) is reconnected. The read resumes after the last row
    handed out when its order is a unique key (``key`` declared: ordered by cursor column, then key, or
    by key), on a new snapshot: a row is read once whatever changes in between, and a row updated in
    between may come twice (the conformed history keeps the latest of a key in a pull). Without a key
    the read starts again from the first row, and yields :class:`Restart` first so that the pull
    discards what it wrote of the interrupted read."""

    def __init__(
        self,
        source: str,
        entity: DatabaseEntity,
        *,
        url: str,
        batch_size: int,
        keys_only: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.source = source
        self.entity = entity
        self.url = url
        register_url_password(url)  # whatever a driver's error shows of it: redact() hides
        self.batch_size = batch_size
        #: a key listing (reconcile_keys): the key columns of every row, in key order, no watermark
        self.keys_only = keys_only
        self.retry = retry or RetryPolicy()
        self.state = ExtractState()
        #: the watermark column is a numeric, read as text (source_connection)
        self._numeric_cursor = False

    def order(self) -> list[str]:
        """The columns the rows are read in order of."""
        if self.keys_only:
            return list(self.entity.key)
        order = [self.entity.cursor] if self.entity.cursor else []
        return order + [k for k in self.entity.key if k not in order]

    def query(
        self,
        watermark: str | None,
        window: tuple[Any, Any] | None = None,
        *,
        after: Sequence[Any] | None = None,
        nulls_last: bool = True,
    ) -> tuple[sql.Composable, tuple[Any, ...]]:
        """The extraction query: rows past the watermark, or with ``window`` (a backfill) the rows
        whose cursor is in [from, to), whatever the watermark; with ``after`` (the values of
        :meth:`order` of a row), only the rows that come after that row, ``nulls_last`` saying where the
        server sorts NULLs."""
        schema, table = self.entity.table.split(".")
        conditions: list[sql.Composable] = []
        params: list[Any] = []
        if self.keys_only:
            keys = sql.SQL(", ").join(sql.Identifier(k) for k in self.entity.key)
            query: sql.Composable = sql.SQL("select {keys} from {table}").format(
                keys=keys, table=sql.Identifier(schema, table)
            )
        else:
            query = sql.SQL("select * from {}").format(sql.Identifier(schema, table))
            if self.entity.cursor and window is not None:
                conditions.append(
                    sql.SQL("{} >= %s and {} < %s").format(
                        sql.Identifier(self.entity.cursor), sql.Identifier(self.entity.cursor)
                    )
                )
                params += [window[0], window[1]]
            elif self.entity.cursor and watermark is not None:
                conditions.append(sql.SQL("{} > %s").format(sql.Identifier(self.entity.cursor)))
                params.append(watermark)
        order = self.order()
        if after is not None:
            condition, values = rows_after(order, after, nulls_last=nulls_last)
            conditions.append(condition)
            params += values
        if conditions:
            query = sql.SQL("{} where {}").format(query, sql.SQL(" and ").join(conditions))
        if order:
            query = sql.SQL("{} order by {}").format(
                query, sql.SQL(", ").join(sql.Identifier(c) for c in order)
            )
        return query, tuple(params)

    def extract(
        self, watermark: str | None, window: tuple[Any, Any] | None = None
    ) -> Iterator[Batch | Payload | Restart]:
        self.state.watermark_after = watermark
        where = f"source {self.source}, table {self.entity.table}"
        order = self.order()
        resumable = bool(self.entity.key)  # the key makes the order unique
        positions: list[int] = []

        def position(row: Sequence[Any]) -> list[Any]:
            if not positions:
                names = [d.name for d in read.description or []]
                positions[:] = [names.index(name) for name in order]
            return [row[i] for i in positions]

        def statement(
            conn: psycopg.Connection[Any], after: Sequence[Any] | None
        ) -> tuple[Any, Sequence[Any]]:
            nulls_last = True if after is None else _sorts_nulls_last(conn)
            return self.query(watermark, window, after=after, nulls_last=nulls_last)

        read = KeysetRead(
            statement,
            connect=lambda: source_connection(self.url),
            name=f"extract {self.source}.{self.entity.name}",
            cursor_name=f"etl_extract_{self.entity.name}",
            fetch_rows=self.batch_size,
            position=position if resumable else None,
            restartable=True,
            policy=self.retry,
        )
        try:
            columns: list[str] | None = None
            cursor_index: int | None = None
            for rows in read.batches():
                if isinstance(rows, Restarted):
                    self.state = ExtractState(watermark_after=watermark)
                    columns = None
                    yield Restart(rows.reason)
                    continue
                described = [d.name for d in read.description or []]
                if columns is None:
                    columns, cursor_index = self._columns(read, where)
                elif described != columns:
                    raise SourceTransientError(
                        f"{where}: the table's columns changed while it was read ({columns} before the"
                        f" connection was lost, {described} after); run the job again"
                    )
                batch = [list(r) for r in rows]
                if cursor_index is not None:
                    self._advance(batch, cursor_index)
                yield Batch(columns, batch, header=True)
        except psycopg.OperationalError as exc:
            raise SourceTransientError(
                f"{where}: source database failed: {str(exc).strip().splitlines()[0]}"
            ) from None
        except psycopg.errors.UndefinedTable:
            raise SourceFatalError(f"{where}: table does not exist") from None
        except psycopg.errors.UndefinedColumn as exc:
            raise SourceFatalError(f"{where}: {str(exc).strip().splitlines()[0]}") from None
        except psycopg.errors.UndefinedFunction as exc:
            if window is None:
                raise
            raise ConfigurationError(
                f"{where}: a backfill compares the cursor column {self.entity.cursor!r} with dates, and it is"
                f" not a date or timestamp column ({str(exc).strip().splitlines()[0]})"
            ) from None

    def _columns(self, read: KeysetRead, where: str) -> tuple[list[str], int | None]:
        """The result's column names and the index of the watermark column (None: no watermark)."""
        description = read.description or []
        columns = [d.name for d in description]
        if not self.keys_only:
            # the source's own column types (numeric(15,2), character(4), ...): what
            # `etl-conformed scaffold` casts each column to
            self.state.metadata["column_types"] = {d.name: d.type_display for d in description}
        if self.keys_only or not self.entity.cursor:
            return columns, None
        if self.entity.cursor not in columns:
            raise SourceFatalError(f"{where}: watermark column {self.entity.cursor!r} does not exist")
        index = columns.index(self.entity.cursor)
        self._numeric_cursor = description[index].type_code == NUMERIC_OID
        return columns, index

    def _advance(self, rows: list[list[Any]], index: int) -> None:
        values = [r[index] for r in rows if r[index] is not None]
        if not values:
            return
        # a numeric cursor arrives as its text (source_connection): compared as the number it is
        top = max(values, key=Decimal) if self._numeric_cursor else max(values)
        text = top.isoformat() if hasattr(top, "isoformat") else str(top)
        current = self.state.watermark_after
        # Rows arrive ordered by the cursor column, so the last batch's maximum is the new watermark.
        if current is None or text != current:
            self.state.watermark_after = text


#: the type OID of numeric (PostgreSQL and CockroachDB)
NUMERIC_OID = 1700


class _NumericLoader(Loader):
    """A numeric as its exact decimal text (what staging stores for a decimal), without the Decimal
    object in between, which cost a fifth of a database pull (bench/README.md)."""

    def load(self, data: Any) -> str:
        return bytes(data).decode("ascii")


class _RawJsonLoader(Loader):
    def load(self, data: Any) -> RawJson:
        return RawJson(bytes(data).decode("utf-8"))


def source_connection(url: str) -> psycopg.Connection[Any]:
    """A connection to a source database that reads numerics as their exact text and json/jsonb as
    the JSON text the server sends (the extraction's two slowest conversions; bench/README.md)."""
    conn = psycopg.connect(url, application_name="etl-staging-extract", connect_timeout=10)
    conn.adapters.register_loader("numeric", _NumericLoader)
    for name in ("json", "jsonb"):
        conn.adapters.register_loader(name, _RawJsonLoader)
    return conn


def rows_after(
    order: Sequence[str], values: Sequence[Any], *, nulls_last: bool
) -> tuple[sql.Composable, list[Any]]:
    """The condition for the rows that come after a row whose ``order`` columns hold ``values``, in
    ``order by <order>`` (ascending), NULLs sorted last or first as the server does: (a > x) or (a = x
    and b > y) ..., with NULLs placed (a row value comparison would drop them)."""
    terms: list[sql.Composable] = []
    params: list[Any] = []
    for index, (name, value) in enumerate(zip(order, values, strict=True)):
        column = sql.Identifier(name)
        if value is None and nulls_last:
            continue  # nothing comes after NULL in this column
        parts: list[sql.Composable] = []
        term_params: list[Any] = []
        for before, before_value in zip(order[:index], values[:index], strict=True):
            if before_value is None:
                parts.append(sql.SQL("{} is null").format(sql.Identifier(before)))
            else:
                parts.append(sql.SQL("{} = %s").format(sql.Identifier(before)))
                term_params.append(before_value)
        if value is None:
            parts.append(sql.SQL("{} is not null").format(column))
        elif nulls_last:
            parts.append(sql.SQL("({} > %s or {} is null)").format(column, column))
            term_params.append(value)
        else:
            parts.append(sql.SQL("{} > %s").format(column))
            term_params.append(value)
        terms.append(sql.SQL("({})").format(sql.SQL(" and ").join(parts)))
        params += term_params
    if not terms:
        return sql.SQL("false"), []
    return sql.SQL("({})").format(sql.SQL(" or ").join(terms)), params


def _sorts_nulls_last(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server sorts NULLs after other values in ascending order (PostgreSQL does,
    CockroachDB does not, unless its session says ``null_ordered_last``)."""
    row = conn.execute("select x from (values (1), (null)) as probe (x) order by x limit 1").fetchone()
    return row is not None and row[0] is not None
