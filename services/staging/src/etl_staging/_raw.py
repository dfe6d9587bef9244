"""Raw storage of pulls in the staging schema.

A pull is written in batches, each batch its own (retried) transaction, while its row says
``running``; it becomes visible to readers only when :meth:`RawPullWriter.commit` flips it to
``committed`` in the same transaction that advances the watermark. Whatever a failed or killed
pull left behind is removed by :func:`clean_abandoned_pulls` before the next pull of the same
source entity. After a commit, only the newest ``keep`` committed pulls are kept.

A writer made with ``detect_unchanged`` (the staging job's full pulls and key listings, unless the
entity sets ``keep_unchanged_pulls``) compares its checksum and record count with the newest committed
pull of the same source entity and mode: when they are equal, the pull ends ``unchanged`` rather than
``committed`` (metadata ``same_as``: the pull it equals), its batches and payloads are removed, and no
reader ever sees it (docs/data-model.md, "Unchanged pulls").

Every write is safe to run again after an unknown outcome (40003, a connection lost while
committing; docs/cockroachdb.md, "Reconnect and retry"): the pull row, its batches and payloads are
inserted with ``on conflict do nothing`` on their keys, the commit recognises a pull it already
committed, and the deletes and status updates are by key.
"""

from __future__ import annotations

import contextvars
import hashlib
import ipaddress
import json
import logging
import os
import queue
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb
from psycopg.types.range import Range

from etl_shared import Database, LeaseLock, Session, SourceFatalError

from ._json import RawJson, exact_numbers, holds_nul
from ._sizes import ValueSizes, resolve_value_sizes

_log = logging.getLogger(__name__)

KEEP_COMMITTED_PULLS = 3
DELETE_BATCH_ROWS = 500
#: How full of the byte budget a batch is planned: the rows expected to fit are counted from the
#: previous batch's bytes per row with this margin, so that a batch is rarely encoded twice.
BATCH_FILL = 0.9
#: Oversized records logged one by one per pull; the rest are counted in the commit's log line.
OVERSIZED_WARNINGS = 10
#: Writer threads (and connections) of a pull with write-behind: two keep both cores busy, the job
#: parsing on one while the server parses the JSON of two batches (bench/README.md, staging).
WRITERS = 2

# A batch is one row holding thousands of records and a payload one row holding megabytes, so each is
# written with a single-row INSERT rather than COPY: the JSON goes as a plain text parameter and the
# payload as a binary one. COPY's text format would escape both (bytea as hex, doubling the bytes sent),
# which measured 2.4x slower for payloads and 1.3x slower for batches (bench/README.md). The key makes a
# batch transaction retried after an unknown outcome harmless.
_INSERT_BATCH = (
    "insert into staging.pull_batches (pull_id, batch_no, record_count, data, origin)"
    " values (%s, %s, %s, %t, %s) on conflict (pull_id, batch_no) do nothing"
)
_INSERT_REJECTED = (
    "insert into staging.rejected_records (pull_id, seq, origin, unit, position, reason, content, truncated)"
    " values (%s, %s, %s, %s, %s, %s, %s, %s) on conflict (pull_id, seq) do nothing"
)
#: rejected records written per transaction
REJECTED_PER_WRITE = 500
_INSERT_PAYLOAD = (
    "insert into staging.pull_payloads (pull_id, seq, name, content_type, byte_count, checksum, body)"
    " values (%s, %s, %s, %s, %s, %s, %b) on conflict (pull_id, seq) do nothing"
)


@dataclass
class PullSummary:
    pull_id: uuid.UUID
    source: str
    entity: str
    records: int
    bytes: int
    batches: int
    payloads: int
    checksum: str
    watermark_before: str | None
    watermark_after: str | None
    deleted_pulls: list[str] = field(default_factory=list)
    #: an unchanged pull (status 'unchanged'): the committed pull it equals; None: committed
    same_as: str | None = None
    pages: int = 0  # pages fetched (REST) or files read (files)
    retries: int = 0  # HTTP requests retried
    requests: int = 0  # HTTP requests sent (REST), retries included


def _as_is(data: bytes) -> bytes:
    return data  # the batch is already JSON: hand psycopg the bytes, in text format (%t)


def encode_batch(columns: list[str], rows: list[list[Any]], *, json_numbers: bool = False) -> bytes:
    """The list-of-arrays JSON of one batch. ``json_numbers``: a Decimal is a number the source sent
    as JSON (or a Parquet decimal), written back as a JSON number with all its digits; otherwise (a
    database's numeric column) it is stored as its exact string, as the data model says."""
    default = _json_number_default if json_numbers else _json_default
    try:
        return orjson.dumps({"columns": columns, "rows": rows}, default=default)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
        # an integer past 64 bits (JSON allows any): written as its digits, exactly
        return orjson.dumps({"columns": columns, "rows": exact_numbers(rows)}, default=default)


def _json_number_default(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value).encode("ascii"))
    return _json_default(value)


_IP_TYPES = (
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
)


def _json_default(value: Any) -> Any:
    # Decimals stay exact as strings; datetimes/dates/times as ISO 8601; UUIDs as text; bytes base64.
    import base64
    import datetime as dt
    from decimal import Decimal

    if type(value) is RawJson:
        return orjson.Fragment(value.text)  # a database's json value, embedded as the JSON it is
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, _IP_TYPES):
        return str(value)  # inet / cidr columns
    if isinstance(value, Range):
        if value.isempty:
            return {"empty": True}
        return {"lower": value.lower, "upper": value.upper, "bounds": value.bounds}
    raise TypeError(f"cannot store a {type(value).__name__} value as JSON")


class _WriteBehind:
    """Runs a pull's batch transactions on threads of their own, behind the extractor, so that parsing
    the next batch overlaps writing the last ones. ``workers`` threads write at once (each on its own
    connection: the server parses each batch's JSON on its own backend, on its own core); at most
    ``depth`` more batches wait in memory. Batches may commit out of order: they are keyed by number and
    nothing reads them before the pull's own commit, which waits for all of them. The first failure is
    kept and raised to the extractor's thread at its next call."""

    def __init__(self, write: Callable[[Any, str], None], depth: int = 2, workers: int = 1) -> None:
        self._write = write
        self._queue: queue.Queue[tuple[Any, str] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._threads = [
            threading.Thread(
                target=contextvars.copy_context().run, args=(self._run,), name=f"pull-writer-{n}", daemon=True
            )
            for n in range(1, workers + 1)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(*item)
                except BaseException as exc:
                    self._error = self._error or exc

    def submit(self, work: Any, name: str) -> None:
        self.raise_if_failed()
        self._queue.put((work, name))

    def raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def finish(self) -> None:
        """Wait for every submitted transaction; raise the first failure."""
        alive = [thread for thread in self._threads if thread.is_alive()]
        for _ in alive:
            self._queue.put(None)
        for thread in alive:
            thread.join()
        self.raise_if_failed()


class RawPullWriter:
    """Writes one pull of one source entity."""

    def __init__(
        self,
        db: Database,
        *,
        run_id: str,
        job_id: uuid.UUID | None,
        source: str,
        entity: str,
        mode: str,
        watermark_before: str | None,
        lock: LeaseLock | None = None,
        write_behind: bool = True,
        writers: int = WRITERS,
        backfill: tuple[Any, Any] | None = None,
        sizes: ValueSizes | None = None,
        detect_unchanged: bool = False,
    ) -> None:
        self.db = db
        # A full snapshot (or key listing) equal to the newest committed pull of the entity and mode
        # ends 'unchanged' instead of committed (see the module's docstring); never for a delta.
        self.detect_unchanged = detect_unchanged and mode in ("full", "keys") and backfill is None
        # The byte limits of the stored values; None: the warehouse's, asked when first needed.
        self._sizes = sizes
        # A backfill pull re-extracts the cursor range [from, to): it is recorded with its range and
        # never moves the stored watermark.
        self.backfill = backfill
        self.write_behind = write_behind
        self.writers = writers
        self.run_id = run_id
        self.job_id = job_id
        self.source = source
        self.entity = entity
        self.mode = mode
        self.watermark_before = watermark_before
        self.lock = lock
        self.pull_id = uuid.uuid4()
        self.records = 0
        self.bytes = 0
        self.batches = 0
        self.payloads = 0
        self.json_bytes = 0
        #: records stored alone in a batch over the byte budget
        self.oversized = 0
        #: records set aside by on_bad_record: quarantine (staging.rejected_records), and those not
        #: written yet
        self.rejected = 0
        self._pending_rejects: list[tuple[Any, ...]] = []
        #: per origin (file), in the order first seen: [first batch, last batch, records]
        self.origins: dict[str, list[int]] = {}
        # rows expected to fit the byte budget, learnt from the last batch's bytes per row
        self._rows_that_fit = 1 << 62
        self._digest = hashlib.sha256()
        #: the writing connections, one per writer thread (or the caller's, without write-behind)
        self._sessions: dict[int, Session] = {}
        self._sessions_lock = threading.Lock()
        self._behind: _WriteBehind | None = None

    @property
    def sizes(self) -> ValueSizes:
        if self._sizes is None:
            self._sizes = resolve_value_sizes(self.db)
        return self._sizes

    def _submit(self, work: Any, name: str) -> None:
        if not self.write_behind:
            self._write(work, name)
            return
        if self._behind is None:
            self._behind = _WriteBehind(self._write, workers=self.writers)
        self._behind.submit(work, name)

    def flush(self) -> None:
        """Wait until every batch and payload handed over so far is written (they are written one step
        behind the caller); raise the first write failure."""
        self._finish_writes()

    def _finish_writes(self) -> None:
        behind, self._behind = self._behind, None
        try:
            if behind is not None:
                behind.finish()
        finally:
            self.close()

    def _write(self, work: Any, name: str) -> None:
        """Run one batch transaction on the pull's own session (opening a connection per batch costs more
        than the batch); a lost connection is replaced and the transaction run again."""
        thread = threading.get_ident()
        session = self._sessions.get(thread)
        if session is None:
            session = self.db.session()
            with self._sessions_lock:
                self._sessions[thread] = session
        session.transaction(work, name=name)

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()

    def restart(self) -> None:
        """Discard everything written so far, to extract the pull again from the start (a source read
        that was interrupted and cannot resume where it stopped). Nothing of it was visible: the pull is
        still running."""
        self._finish_writes()
        delete_pull_data(self.db, self.pull_id)
        self.records = self.bytes = self.batches = self.payloads = self.json_bytes = 0
        self.rejected = 0
        self._pending_rejects = []
        self.origins = {}
        self._digest = hashlib.sha256()
        _log.warning(
            "pull %s: the extraction starts again; what it wrote so far was discarded",
            self.pull_id,
            extra={"pull_id": str(self.pull_id)},
        )

    def open(self) -> uuid.UUID:
        self.db.transaction(
            lambda conn: conn.execute(
                "insert into staging.pulls (pull_id, run_id, job_id, source, entity, status, mode, started_at,"
                " heartbeat_at, watermark_before, backfill_from, backfill_to)"
                " values (%s, %s, %s, %s, %s, 'running', %s, now(), now(), %s, %s, %s)"
                " on conflict (pull_id) do nothing",
                (
                    self.pull_id,
                    self.run_id,
                    self.job_id,
                    self.source,
                    self.entity,
                    self.mode,
                    self.watermark_before,
                    self.backfill[0] if self.backfill else None,
                    self.backfill[1] if self.backfill else None,
                ),
            ),
            name="open pull",
        )
        _log.info("pull %s opened", self.pull_id, extra={"pull_id": str(self.pull_id), "mode": self.mode})
        return self.pull_id

    def add_batch(
        self,
        columns: list[str],
        rows: list[list[Any]],
        *,
        where: Callable[[int], str] | None = None,
        json_numbers: bool = False,
        origin: str | None = None,
    ) -> None:
        """Store ``rows`` as one or more batches in order, each at most ``sizes.batch_bytes`` of JSON
        (a record over the budget alone in a batch; over ``sizes.record_max_bytes`` it is refused).
        ``where(i)`` says where row i came from, for those messages; ``json_numbers`` as in
        :func:`encode_batch`; ``origin`` is the file the rows were read from (staging.pull_batches.origin)."""
        budget = self.sizes.batch_bytes
        start = 0
        while start < len(rows):
            count = min(len(rows) - start, self._rows_that_fit)
            piece = rows if count == len(rows) else rows[start : start + count]
            data = encode_batch(columns, piece, json_numbers=json_numbers)
            while len(data) > budget and count > 1:
                # cut at the rows that fit, by this piece's bytes per row (the rows differ in size)
                count = max(1, min(count - 1, int(count * budget * BATCH_FILL / len(data))))
                piece = rows[start : start + count]
                data = encode_batch(columns, piece, json_numbers=json_numbers)
            if len(data) > budget:
                self._oversized_record(len(data), start, where)
            if _NUL_ESCAPE in data:
                self._refuse_nul(columns, piece, start, where)
            self._rows_that_fit = max(1, int(count * budget * BATCH_FILL / len(data)))
            self._store_batch(len(piece), data, origin)
            start += count

    def _refuse_nul(
        self, columns: list[str], rows: list[list[Any]], start: int, where: Callable[[int], str] | None
    ) -> None:
        """A NUL character in a value: the warehouse's JSON cannot hold it (PostgreSQL refuses it with a
        raw UntranslatableCharacter error). Refused here, naming the record and the field; the file
        formats that can set such a line aside (on_bad_record: quarantine) have done so before."""
        for index, row in enumerate(rows):
            for name, value in zip(columns, row, strict=False):
                if holds_nul(value):
                    position = f"record {self.records + 1 + index:,} of the pull" + (
                        f" ({where(start + index)})" if where else ""
                    )
                    raise SourceFatalError(
                        f"source {self.source}, entity {self.entity}: {position}: field {name!r} holds a NUL"
                        " character (\\u0000), which the warehouse cannot store: remove it at the source, or"
                        " set on_bad_record: quarantine on a file entity to set such records aside"
                    )

    def _oversized_record(self, size: int, index: int, where: Callable[[int], str] | None) -> None:
        """A single record over the batch budget: refused above the hard limit, else stored alone."""
        sizes = self.sizes
        position = f"record {self.records + 1:,} of the pull" + (f" ({where(index)})" if where else "")
        if size > sizes.record_max_bytes:
            raise SourceFatalError(
                f"source {self.source}, entity {self.entity}: {position} is {size:,} bytes of JSON, more than"
                f" the largest record the warehouse is given ({sizes.record_max_bytes:,} bytes, value sizes"
                f" {sizes.profile}): the pull is refused. Shorten or drop the field at the source, or raise"
                " ETL_RECORD_MAX_BYTES within the warehouse's limits (docs/cockroachdb.md, Value sizes)"
            )
        self.oversized += 1
        if self.oversized <= OVERSIZED_WARNINGS:
            _log.warning(
                "source %s, entity %s: %s is %d bytes of JSON, over the batch budget of %d bytes (value sizes"
                " %s): stored alone as batch %d",
                self.source,
                self.entity,
                position,
                size,
                sizes.batch_bytes,
                sizes.profile,
                self.batches + 1,
                extra={"pull_id": str(self.pull_id), "record_bytes": size, "batch_no": self.batches + 1},
            )
        elif self.oversized == OVERSIZED_WARNINGS + 1:
            _log.warning(
                "source %s, entity %s: more records over the batch budget; counted, not logged one by one",
                self.source,
                self.entity,
                extra={"pull_id": str(self.pull_id)},
            )

    def _store_batch(self, record_count: int, data: bytes, origin: str | None = None) -> None:
        batch_no = self.batches + 1
        # Insert-only: a batch transaction reads nothing, so parallel pulls never conflict on it under
        # SERIALIZABLE. The pull row gets its counts once, in the committing transaction.
        self._submit(
            lambda conn: conn.execute(
                _INSERT_BATCH, (self.pull_id, batch_no, record_count, Jsonb(data, dumps=_as_is), origin)
            ),
            f"pull {self.pull_id} batch {batch_no}",
        )
        if origin is not None:
            span = self.origins.setdefault(origin, [batch_no, batch_no, 0])
            span[1] = batch_no
            span[2] += record_count
        self.batches = batch_no
        self.records += record_count
        self._digest.update(data)
        self.json_bytes += len(data)
        if self.lock is not None and batch_no % 20 == 0:
            self.lock.renew()

    def add_payload(self, name: str, content_type: str, body: bytes) -> None:
        """Store bytes as fetched, in chunks of at most ``sizes.payload_chunk_bytes``: a larger body
        (a REST page) becomes consecutive payloads named ``<name>#1``, ``<name>#2``, ... in seq order."""
        limit = self.sizes.payload_chunk_bytes
        if len(body) <= limit:
            self._store_payload(name, content_type, body)
            return
        view = memoryview(body)
        for part, offset in enumerate(range(0, len(body), limit), start=1):
            self._store_payload(f"{name}#{part}", content_type, view[offset : offset + limit])

    def _store_payload(self, name: str, content_type: str, body: bytes | memoryview) -> None:
        seq = self.payloads + 1
        checksum = hashlib.sha256(body).hexdigest()
        self._submit(
            lambda conn: conn.execute(
                _INSERT_PAYLOAD, (self.pull_id, seq, name, content_type, len(body), checksum, body)
            ),
            f"pull {self.pull_id} payload {seq}",
        )
        self.payloads = seq
        self.bytes += len(body)

    def add_rejected(self, origin: str, unit: str, position: int, reason: str, content: str | bytes) -> None:
        """Keep a record that could not be read (on_bad_record: quarantine) in staging.rejected_records,
        written with the pull's batches, REJECTED_PER_WRITE rows per transaction."""
        text, truncated = rejected_text(content)
        self.rejected += 1
        self._pending_rejects.append(
            (self.pull_id, self.rejected, origin, unit, position, reason[:2000], text, truncated)
        )
        if len(self._pending_rejects) >= REJECTED_PER_WRITE:
            self._flush_rejects()

    def _flush_rejects(self) -> None:
        rows, self._pending_rejects = self._pending_rejects, []
        if not rows:
            return

        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cur:
                cur.executemany(_INSERT_REJECTED, rows)

        self._submit(work, f"pull {self.pull_id} rejected records {rows[0][1]}-{rows[-1][1]}")

    def count_bytes(self, n: int) -> None:
        """Bytes read from the source when no payload is stored."""
        self.bytes += n

    def commit(
        self,
        *,
        watermark_after: str | None,
        metadata: dict[str, Any] | None = None,
        loaded_files: Sequence[Any] = (),
        also: Callable[[psycopg.Connection[Any]], None] | None = None,
    ) -> PullSummary:
        """Make the pull visible, advance the watermark and record the files it loaded, atomically;
        ``also`` writes more in the same transaction (the pull's schema changes)."""
        checksum = self._digest.hexdigest()
        metadata = {**self.counters(), **(metadata or {})}
        self._flush_rejects()
        self._finish_writes()
        # Read before the commit's transaction: the entity's lease (held by the caller) keeps any
        # other pull of it from committing in between.
        same_as = self._same_as(checksum, metadata) if self.detect_unchanged else None
        status = "committed" if same_as is None else "unchanged"
        if same_as is not None:
            metadata["same_as"] = same_as

        def work(conn: psycopg.Connection[Any]) -> None:
            cur = conn.execute(
                "update staging.pulls set status = %s, committed_at = now(), heartbeat_at = now(),"
                " record_count = %s, byte_count = %s, batch_count = %s, payload_count = %s, checksum = %s,"
                " watermark_after = %s, metadata = %s::jsonb where pull_id = %s and status = 'running'",
                (
                    status,
                    self.records,
                    self.bytes,
                    self.batches,
                    self.payloads,
                    checksum,
                    watermark_after,
                    json.dumps(metadata or {}),
                    self.pull_id,
                ),
            )
            if cur.rowcount != 1:
                if self._committed_already(conn, checksum, status):
                    return  # an earlier attempt committed; its commit only looked failed (40003)
                raise RuntimeError(
                    f"pull {self.pull_id} is no longer running; it was cleaned up by another job"
                )
            if self.backfill is None and self.mode != "keys":  # a key listing has no watermark
                conn.execute(
                    "insert into staging.watermarks (source, entity, value, pull_id, updated_at)"
                    " values (%s, %s, %s, %s, now()) on conflict (source, entity) do update"
                    " set value = excluded.value, pull_id = excluded.pull_id, updated_at = excluded.updated_at",
                    (self.source, self.entity, watermark_after, self.pull_id),
                )
            if loaded_files:
                with conn.cursor() as cur:
                    cur.executemany(
                        "insert into staging.loaded_files (source, entity, checksum, path, byte_count, pull_id,"
                        " loaded_at) values (%s, %s, %s, %s, %s, %s, now())"
                        " on conflict (source, entity, checksum) do nothing",
                        [
                            (self.source, self.entity, f.checksum, f.path, f.bytes, self.pull_id)
                            for f in loaded_files
                        ],
                    )
            if also is not None:
                also(conn)
            if self.backfill is not None:
                record_operator_action(
                    conn,
                    "backfill",
                    source=self.source,
                    entity=self.entity,
                    run_id=self.run_id,
                    details={
                        "pull_id": str(self.pull_id),
                        "from": str(self.backfill[0]),
                        "to": str(self.backfill[1]),
                        "records": self.records,
                        "watermark_kept": self.watermark_before,
                    },
                )

        self.db.transaction(work, name=f"commit pull {self.pull_id}")
        if same_as is not None:
            # Never read (readers only read committed pulls): what it wrote goes now, or, if this job
            # dies first, with the next pull of the entity (clean_abandoned_pulls).
            delete_pull_data(self.db, self.pull_id)
        deleted = apply_retention(self.db, self.source, self.entity)
        oversized = (
            f" ({self.oversized} records over the batch budget, each alone in a batch)"
            if self.oversized
            else ""
        )
        extra = {
            "pull_id": str(self.pull_id),
            "records": self.records,
            "bytes": self.bytes,
            "watermark_after": watermark_after,
            "deleted_pulls": deleted,
            "oversized_records": self.oversized,
        }
        if same_as is not None:
            _log.info(
                "%s %s of %s.%s unchanged since pull %s: %d records in %d batches, checksum %s, the same as"
                " then; recorded as unchanged, its batches removed (nothing new downstream)",
                "key listing" if self.mode == "keys" else "pull",
                self.pull_id,
                self.source,
                self.entity,
                same_as,
                self.records,
                self.batches,
                checksum[:12],
                extra={**extra, "status": "unchanged", "same_as": same_as},
            )
        else:
            _log.info(
                "pull %s committed: %d records in %d batches, %d bytes%s",
                self.pull_id,
                self.records,
                self.batches,
                self.bytes,
                oversized,
                extra=extra,
            )
        return PullSummary(
            pull_id=self.pull_id,
            source=self.source,
            entity=self.entity,
            records=self.records,
            bytes=self.bytes,
            batches=self.batches,
            payloads=self.payloads,
            checksum=checksum,
            watermark_before=self.watermark_before,
            watermark_after=watermark_after,
            deleted_pulls=deleted,
            same_as=same_as,
            pages=int((metadata or {}).get("pages", len((metadata or {}).get("files", [])))),
            retries=int((metadata or {}).get("retries", 0)),
            requests=int((metadata or {}).get("requests", 0)),
        )

    def counters(self) -> dict[str, Any]:
        """What this writer counted, for the pull's metadata: records over the batch budget, rejected
        records, and the file (or zip member) of each run of batches."""
        out: dict[str, Any] = {}
        if self.oversized:
            out["oversized_records"] = self.oversized
        if self.rejected:
            out["rejected_records"] = self.rejected
        if self.origins:
            out["record_origins"] = [
                {"origin": origin, "first_batch": first, "last_batch": last, "records": records}
                for origin, (first, last, records) in self.origins.items()
            ]
        return out

    def _committed_already(self, conn: psycopg.Connection[Any], checksum: str, status: str) -> bool:
        """Whether this pull is committed (or recorded unchanged) with what this writer wrote: the commit
        transaction ran before, and its outcome was unknown (everything in it committed together)."""
        row = conn.execute(
            "select status, checksum, record_count from staging.pulls where pull_id = %s", (self.pull_id,)
        ).fetchone()
        return row is not None and tuple(row) == (status, checksum, self.records)

    def _same_as(self, checksum: str, metadata: dict[str, Any]) -> str | None:
        """The newest committed pull of this source entity and mode (backfills aside) if this pull
        holds the same: the same checksum over its batches (columns and rows, in order), the same
        record count and the same source column types; else None.

        A key listing is unchanged only when no pull of the entity's records with records committed
        since that listing: the conformed history deletes the current keys a listing lacks among those
        recorded before the listing's commit, so a key added and deleted since the last listing is
        seen only by a new listing."""
        with self.db.connect(autocommit=True) as conn:
            row = conn.execute(
                "select pull_id::text, checksum, record_count, metadata -> 'column_types', committed_at"
                " from staging.pulls where source = %s and entity = %s and mode = %s and status = 'committed'"
                " and backfill_from is null order by committed_at desc, pull_id desc limit 1",
                (self.source, self.entity, self.mode),
            ).fetchone()
            if row is None:
                return None
            pull_id, previous_checksum, previous_records, column_types, committed_at = row
            if (previous_checksum, previous_records) != (checksum, self.records):
                return None
            if column_types != metadata.get("column_types"):
                return None  # the same values, but the source's declared types changed
            if self.mode == "keys":
                newer = conn.execute(
                    "select 1 from staging.pulls where source = %s and entity = %s and mode <> 'keys'"
                    " and status = 'committed' and record_count > 0 and committed_at > %s limit 1",
                    (self.source, self.entity, committed_at),
                ).fetchone()
                if newer is not None:
                    return None
        return str(pull_id)

    def fail(self, error: str, *, metadata: dict[str, Any] | None = None) -> None:
        """Best effort: mark the pull failed and remove its data (the next run cleans up otherwise).
        The pull row keeps its counts and ``metadata``, what the extractor counted until it failed
        (pages, requests, retries, files read...), for the operator to see how far it got."""
        try:
            self._finish_writes()
        except BaseException as exc:  # the failure being reported may be this one
            _log.debug("pending batch writes of failed pull %s: %s", self.pull_id, exc)
        kept = {**self.counters(), **(metadata or {})}
        try:
            self.db.transaction(
                lambda conn: conn.execute(
                    "update staging.pulls set status = 'failed', error = %s, batch_count = %s, record_count = %s,"
                    " payload_count = %s, byte_count = %s, metadata = %s::jsonb"
                    " where pull_id = %s and status = 'running'",
                    (
                        error[:4000],
                        self.batches,
                        self.records,
                        self.payloads,
                        self.bytes,
                        json.dumps(kept, default=str),
                        self.pull_id,
                    ),
                ),
                name="fail pull",
            )
            delete_pull_data(self.db, self.pull_id)
        except Exception as exc:
            _log.warning("could not clean up failed pull %s now (the next run will): %s", self.pull_id, exc)


_NUL_ESCAPE = b"\\u0000"
#: the longest text of a rejected record kept (characters)
REJECTED_TEXT_CHARS = 16 * 1024


def rejected_text(content: str | bytes) -> tuple[str, bool]:
    """A rejected record's text as the warehouse can store it: bytes decoded as UTF-8 with the bytes
    that are not as ``\\xNN``, NUL as the six characters ``\\u0000``, cut at REJECTED_TEXT_CHARS
    (True when cut)."""
    text = content.decode("utf-8", "backslashreplace") if isinstance(content, bytes) else content
    text = text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")
    text = text.rstrip("\r\n")
    if len(text) > REJECTED_TEXT_CHARS:
        return text[:REJECTED_TEXT_CHARS], True
    return text, False


def operator_name() -> str:
    """Who runs an operator action: ETL_OPERATOR, else the login name."""
    import getpass

    name = os.environ.get("ETL_OPERATOR")
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def record_operator_action(
    conn: psycopg.Connection[Any],
    action: str,
    *,
    source: str | None,
    entity: str | None,
    run_id: str | None,
    details: dict[str, Any],
    action_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """One row of ``ops.operator_actions`` (in the caller's transaction). ``action_id`` chosen by the
    caller lets a transaction retried after an unknown outcome find the row its earlier attempt wrote."""
    action_id = action_id or uuid.uuid4()
    conn.execute(
        "insert into ops.operator_actions (action_id, action, source, entity, actor, host, run_id,"
        " performed_at, details) values (%s, %s, %s, %s, %s, %s, %s, now(), %s::jsonb)",
        (
            action_id,
            action,
            source,
            entity,
            operator_name(),
            socket.gethostname(),
            run_id,
            json.dumps(details),
        ),
    )
    return action_id


def file_already_loaded(db: Database, source: str, entity: str, checksum: str) -> bool:
    with db.connect(autocommit=True) as conn:
        row = conn.execute(
            "select 1 from staging.loaded_files where source = %s and entity = %s and checksum = %s",
            (source, entity, checksum),
        ).fetchone()
    return row is not None


def read_watermark(db: Database, source: str, entity: str) -> str | None:
    with db.connect(autocommit=True) as conn:
        row = conn.execute(
            "select value from staging.watermarks where source = %s and entity = %s", (source, entity)
        ).fetchone()
    return row[0] if row else None


def previous_columns(db: Database, source: str, entity: str, mode: str) -> list[str] | None:
    """The columns of the newest committed pull of the entity in ``mode`` that recorded them (pulls
    committed before schema contracts, and empty pulls, did not); None when there is none."""
    with db.connect(autocommit=True) as conn:
        row = conn.execute(
            "select metadata -> 'columns' from staging.pulls where source = %s and entity = %s"
            " and status = 'committed' and mode = %s and metadata -> 'columns' is not null"
            " order by committed_at desc, pull_id limit 1",
            (source, entity, mode),
        ).fetchone()
    if row is None or not isinstance(row[0], list):
        return None
    return [str(name) for name in row[0]]


def delete_pull_data(db: Database, pull_id: uuid.UUID | str) -> None:
    """Delete a pull's batches and payloads in small transactions (CockroachDB dislikes big ones)."""
    for table, key in (("pull_batches", "batch_no"), ("pull_payloads", "seq"), ("rejected_records", "seq")):
        statement = (
            f"delete from staging.{table} where pull_id = %(p)s and {key} in"
            f" (select {key} from staging.{table} where pull_id = %(p)s order by {key} limit %(n)s)"
        )
        while True:
            deleted = db.transaction(
                lambda conn, s=statement: conn.execute(s, {"p": pull_id, "n": DELETE_BATCH_ROWS}).rowcount,
                name=f"delete {table} of {pull_id}",
            )
            if deleted < DELETE_BATCH_ROWS:
                break


def clean_abandoned_pulls(db: Database, source: str, entity: str) -> list[str]:
    """Remove what failed or killed pulls of this source entity left behind.

    Must be called while holding the source entity's lock: any pull still ``running`` then belongs to
    a job that died."""
    with db.connect(autocommit=True) as conn:
        rows = conn.execute(
            "select pull_id, status from staging.pulls where source = %s and entity = %s"
            " and status <> 'committed' and (status = 'running'"
            " or exists (select 1 from staging.pull_batches as b where b.pull_id = staging.pulls.pull_id)"
            " or exists (select 1 from staging.pull_payloads as p where p.pull_id = staging.pulls.pull_id)"
            " or exists (select 1 from staging.rejected_records as r where r.pull_id = staging.pulls.pull_id))",
            (source, entity),
        ).fetchall()
    cleaned = []
    for pull_id, status in rows:
        if status == "running":
            db.transaction(
                lambda conn, p=pull_id: conn.execute(
                    "update staging.pulls set status = 'failed', error = coalesce(error, 'abandoned: the job"
                    " stopped before committing') where pull_id = %s and status = 'running'",
                    (p,),
                ),
                name="mark abandoned pull",
            )
        delete_pull_data(db, pull_id)
        cleaned.append(str(pull_id))
        _log.warning("cleaned up abandoned pull %s (%s)", pull_id, status, extra={"pull_id": str(pull_id)})
    return cleaned


def apply_retention(db: Database, source: str, entity: str, keep: int = KEEP_COMMITTED_PULLS) -> list[str]:
    """Delete committed pulls older than the newest ``keep`` (never the only good one). Key listings
    (mode ``keys``) and data pulls are counted apart: a listing never pushes out a data pull."""
    keep = max(1, keep)
    with db.connect(autocommit=True) as conn:
        old = [
            row[0]
            for row in conn.execute(
                "select ranked.pull_id from ("
                " select pull_id, committed_at, row_number() over ("
                "  partition by mode = 'keys' order by committed_at desc nulls first, pull_id asc nulls last) as newest"
                " from staging.pulls where source = %s and entity = %s and status = 'committed'"
                ") as ranked where ranked.newest > %s order by ranked.committed_at desc, ranked.pull_id",
                (source, entity, keep),
            ).fetchall()
        ]
    for pull_id in old:
        delete_pull_data(db, pull_id)
        db.transaction(
            lambda conn, p=pull_id: conn.execute("delete from staging.pulls where pull_id = %s", (p,)),
            name="delete old pull",
        )
    if old:
        _log.info("retention: deleted %d old pull(s) of %s.%s", len(old), source, entity)
    unchanged = _old_unchanged_pulls(db, source, entity, keep)
    for pull_id in unchanged:
        delete_pull_data(db, pull_id)  # nothing, unless a job died between its commit and the delete
        db.transaction(
            lambda conn, p=pull_id: conn.execute(
                "delete from staging.pulls where pull_id = %s and status = 'unchanged'", (p,)
            ),
            name="delete old unchanged pull",
        )
    return [str(p) for p in old + unchanged]


def _old_unchanged_pulls(db: Database, source: str, entity: str, keep: int) -> list[Any]:
    """The unchanged pulls (status 'unchanged', rows without data) retention removes: they never count
    among the ``keep`` committed pulls, and they are kept while they are among the newest ``keep``
    unchanged ones (key listings and data pulls apart) and the committed pull they equal is kept."""
    with db.connect(autocommit=True) as conn:
        return [
            row[0]
            for row in conn.execute(
                "select ranked.pull_id from ("
                " select pulls.pull_id, pulls.committed_at, pulls.metadata ->> 'same_as' as same_as,"
                "  row_number() over (partition by pulls.mode = 'keys'"
                "   order by pulls.committed_at desc nulls first, pulls.pull_id asc nulls last) as newest"
                " from staging.pulls as pulls"
                " where pulls.source = %s and pulls.entity = %s and pulls.status = 'unchanged'"
                ") as ranked where ranked.newest > %s or not exists ("
                " select 1 from staging.pulls as equal where equal.status = 'committed'"
                "  and equal.pull_id::text = ranked.same_as)"
                " order by ranked.committed_at desc, ranked.pull_id",
                (source, entity, keep),
            ).fetchall()
        ]


def key_listing_due(db: Database, source: str, entity: str, every_days: float) -> bool:
    """Whether a key listing of the entity is due: always with ``every_days`` 0, else when no committed
    (or unchanged: the keys were listed, and found the same) listing is younger than that many days
    (by the database's clock)."""
    if every_days <= 0:
        return True
    with db.connect(autocommit=True) as conn:
        row = conn.execute(
            "select coalesce(now() - max(committed_at) >= %s * interval '1 day', true) from staging.pulls"
            " where source = %s and entity = %s and status in ('committed', 'unchanged') and mode = 'keys'",
            (every_days, source, entity),
        ).fetchone()
    return bool(row[0]) if row else True
