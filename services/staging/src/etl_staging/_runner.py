"""The staging job: pull every selected source entity into raw storage, with bounded parallelism."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from etl_shared import (
    ConfigurationError,
    DataQualityError,
    Dataset,
    EtlError,
    JobContext,
    LeaseLock,
    SourceError,
    SourceFatalError,
    database_namespace,
    file_namespace,
    log_context,
    record_lineage_edges,
    url_namespace,
)

from ._config import (
    AsyncRestSource,
    DatabaseEntity,
    DatabaseSource,
    FileEntity,
    RestSource,
    SourceConfig,
    SourcesFile,
    entity_config,
)
from ._config import resolve_database_url as resolve_source_url
from ._contract import ContractChecker, ContractViolation, SchemaChange, record_schema_changes
from ._extract import Batch, DatabaseExtractor, FileExtractor, Rejected, Restart
from ._raw import (
    PullSummary,
    RawPullWriter,
    clean_abandoned_pulls,
    file_already_loaded,
    key_listing_due,
    previous_columns,
    read_watermark,
)
from ._rest import (
    AsyncRestEntity,
    AsyncRestExtractor,
    PauseGate,
    RateBudget,
    RestEntity,
    RestExtractor,
)
from ._roots import FileRoots
from ._sizes import ValueSizes, resolve_value_sizes

_log = logging.getLogger(__name__)


class Cancelled(EtlError):
    """Another pull of the same job failed or the job was stopped."""


class StagingJob:
    def __init__(
        self,
        context: JobContext,
        sources: SourcesFile,
        *,
        data_dir: Path,
        parallelism: int,
        backfill: tuple[datetime, datetime] | None = None,
        sizes: ValueSizes | None = None,
        file_roots: FileRoots | None = None,
    ) -> None:
        self.context = context
        # Where file sources may read (the data folder only, unless the settings add more)
        self.file_roots = file_roots or FileRoots.data_folder_only(data_dir)
        # The byte limits of stored values (batches, payload chunks, one record); None: the
        # warehouse's, asked once when the job runs.
        self.sizes = sizes
        # With a backfill window [from, to), each pull re-extracts that cursor range and leaves the
        # stored watermark alone; only incremental entities can be backfilled.
        self.backfill = backfill
        self.sources = sources
        self.data_dir = data_dir
        self.parallelism = max(1, parallelism)
        self.cancel = threading.Event()
        self._budgets: dict[str, RateBudget | None] = {}
        self._gates: dict[str, PauseGate] = {}
        self._budget_lock = threading.Lock()

    def run(self, source: str | None = None, entity: str | None = None) -> list[PullSummary]:
        pairs = list(self.sources.select(source, entity))
        if self.sizes is None:
            self.sizes = resolve_value_sizes(self.context.db)
        if self.backfill is not None:
            check_backfill(pairs)
            self.context.counts["backfill"] = {
                "from": self.backfill[0].isoformat(),
                "to": self.backfill[1].isoformat(),
            }
        _log.info("staging %d source entities with parallelism %d", len(pairs), self.parallelism)
        summaries: list[PullSummary] = []
        errors: list[tuple[str, str, BaseException]] = []  # source, entity, error
        if self.parallelism == 1 or len(pairs) == 1:
            for src, ent in pairs:
                try:
                    summaries.append(self.pull(src, ent))
                except Exception as exc:
                    errors.append((src.name, ent, exc))
        else:
            with ThreadPoolExecutor(self.parallelism, thread_name_prefix="pull") as pool:
                futures: list[tuple[str, str, Future[PullSummary]]] = [
                    (src.name, ent, pool.submit(contextvars.copy_context().run, self.pull, src, ent))
                    for src, ent in pairs
                ]
                try:
                    for src_name, ent, future in futures:
                        try:
                            summaries.append(future.result())
                        except Exception as exc:
                            errors.append((src_name, ent, exc))
                except BaseException:
                    self.cancel.set()
                    raise
        self.context.counts["pulls"] = {
            f"{s.source}.{s.entity}": {
                "pull_id": str(s.pull_id),
                "records": s.records,
                "bytes": s.bytes,
                **({"unchanged_since": s.same_as} if s.same_as else {}),
            }
            for s in summaries
        }
        unchanged = {f"{s.source}.{s.entity}": s.same_as for s in summaries if s.same_as}
        if unchanged:
            self.context.counts["unchanged"] = unchanged
        # rows written: an unchanged pull keeps none (its batches are removed)
        self.context.counts["rows"] = sum(s.records for s in summaries if not s.same_as)
        self.observe_freshness()
        if errors:
            for src_name, ent, exc in errors:
                with log_context(source=src_name, entity=ent):
                    _log.error("source entity %s.%s failed: %s", src_name, ent, exc)
            self.context.counts["failed"] = [f"{src_name}.{ent}" for src_name, ent, _ in errors]
            first_source, first_entity, first = errors[0]
            if isinstance(first, EtlError):
                first.source, first.entity = first_source, first_entity  # for the job's ERROR line
                if len(errors) > 1:
                    summary = type(first)(
                        f"{len(errors)} source entities failed; first {first_source}.{first_entity}: {first}"
                    )
                    summary.source, summary.entity = first_source, first_entity
                    raise summary from first
            raise first
        return summaries

    def observe_freshness(self) -> None:
        """Every configured source entity's last committed pull and freshness SLA, into the metrics
        (from the database: a failed pull keeps the age of the last good one; an unchanged pull is a
        successful check of the source, and counts as fresh as a committed one)."""
        try:
            with self.context.db.connect(autocommit=True) as conn:
                found = conn.execute(
                    "select source, entity, extract(epoch from max(committed_at)) from staging.pulls"
                    " where status in ('committed', 'unchanged') and backfill_from is null"
                    " group by source, entity"
                ).fetchall()
        except Exception as exc:
            _log.warning("could not read the last committed pulls for the freshness metrics: %s", exc)
            return
        last = {(src, ent): float(epoch) for src, ent, epoch in found if epoch is not None}
        for src in self.sources.sources:
            for ent in src.entities:
                hours = src.effective_freshness_sla_hours(ent.name)
                self.context.metrics.observe_freshness(
                    src.name,
                    ent.name,
                    last_pull=last.get((src.name, ent.name)),
                    sla_s=hours * 3600 if hours else None,
                )

    def pull(self, source: SourceConfig, entity: str) -> PullSummary:
        started = time.monotonic()
        try:
            return self._pull(source, entity, started)
        except BaseException:
            self.context.metrics.observe_pull_failed(source.name, entity, seconds=time.monotonic() - started)
            raise

    def _pull(self, source: SourceConfig, entity: str, started: float) -> PullSummary:
        db = self.context.db
        with log_context(source=source.name, entity=entity):
            with LeaseLock(db, f"pull:{source.name}:{entity}", lease_s=300, wait_s=900) as lock:
                clean_abandoned_pulls(db, source.name, entity)
                config = entity_config(source, entity)
                incremental = _is_incremental(config)
                watermark = read_watermark(db, source.name, entity) if incremental else None
                writer = self._writer(
                    source,
                    entity,
                    lock,
                    incremental=incremental,
                    watermark=watermark,
                    detect_unchanged=_is_snapshot(config) and not config.keep_unchanged_pulls,
                )
                try:
                    summary = self._extract_into(writer, source, config, watermark)
                except SourceError as exc:  # the pull is already failed and cleaned by _extract_into
                    fallback = source.fallback.get(entity) if isinstance(source, RestSource) else None
                    if self.backfill is not None:
                        fallback = None  # a backfill asks the API for its range, or fails
                    if not fallback:
                        raise
                    _log.warning(
                        "%s.%s: the API failed (%s); reading the fallback files instead",
                        source.name,
                        entity,
                        exc,
                    )
                    # The watermark stays where it was: the next run asks the API again.
                    writer = self._writer(
                        source, entity, lock, incremental=False, watermark=watermark, detect_unchanged=False
                    )
                    # The fallback files are held to the entity's contract too.
                    files = FileEntity(
                        name=entity, files=fallback, contract=config.contract, columns=config.columns
                    )
                    summary = self._extract_into(
                        writer,
                        source,
                        files,
                        watermark,
                        extra={"fallback": True, "fallback_reason": str(exc)},
                    )
                listing = getattr(config, "reconcile_keys", None)
                if (
                    isinstance(config, DatabaseEntity | RestEntity)
                    and listing is not None
                    and self.backfill is None
                    and key_listing_due(db, source.name, entity, listing.every_days)
                ):
                    self._key_listing(source, config, lock)
        self.context.metrics.observe_pull(
            source.name,
            entity,
            records=summary.records,
            byte_count=summary.bytes,
            pages=summary.pages,
            retries=summary.retries,
            requests=summary.requests,
            seconds=time.monotonic() - started,
        )
        self._record_lineage(source, entity, summary)
        _log.info(
            "pulled %s.%s: %d records in %.1fs%s",
            source.name,
            entity,
            summary.records,
            time.monotonic() - started,
            f", unchanged since pull {summary.same_as}" if summary.same_as else "",
            extra={
                "source": source.name,
                "entity": entity,
                "records": summary.records,
                **({"unchanged_since": summary.same_as} if summary.same_as else {}),
            },
        )
        return summary

    def _key_listing(
        self, source: SourceConfig, config: DatabaseEntity | RestEntity, lock: LeaseLock
    ) -> PullSummary:
        """Pull the entity's key set (mode ``keys``), under the same lease and after its data pull:
        the conformed history deletes each current key missing from it (reconcile_keys). A database
        entity's keys come from its table, a REST entity's from its listing endpoint."""
        assert config.reconcile_keys is not None
        key = list(config.key) if isinstance(config, DatabaseEntity) else list(config.reconcile_keys.key)
        writer = RawPullWriter(
            self.context.db,
            run_id=self.context.settings.run_id,
            job_id=self.context.audit.job_id,
            source=source.name,
            entity=config.name,
            mode="keys",
            watermark_before=None,
            lock=lock,
            sizes=self.sizes,
            detect_unchanged=not config.keep_unchanged_pulls,
        )
        writer.open()
        metadata: dict[str, Any] = {"key_listing": True, "key": key}
        try:
            for columns, rows in self._listed_keys(source, config, key):
                if self.cancel.is_set():
                    raise Cancelled("cancelled because another part of the job failed or it was stopped")
                writer.add_batch(columns, rows)
            writer.count_bytes(writer.json_bytes)
            self._check_key_drop(source.name, config, writer.records)
            summary = writer.commit(watermark_after=None, metadata=metadata)
        except BaseException as exc:
            writer.fail(f"{type(exc).__name__}: {exc}", metadata=metadata)
            raise
        self.context.counts.setdefault("key_listings", {})[f"{source.name}.{config.name}"] = {
            "pull_id": str(summary.pull_id),
            "keys": summary.records,
            **({"unchanged_since": summary.same_as} if summary.same_as else {}),
        }
        _log.info(
            "listed the keys of %s.%s: %d keys%s",
            source.name,
            config.name,
            summary.records,
            f", unchanged since listing {summary.same_as}" if summary.same_as else "",
            extra={"source": source.name, "entity": config.name, "keys": summary.records},
        )
        return summary

    def _listed_keys(
        self, source: SourceConfig, config: DatabaseEntity | RestEntity, key: list[str]
    ) -> Iterator[tuple[list[str], list[list[Any]]]]:
        """(columns, rows) batches of the key columns only, in key order."""
        if isinstance(config, DatabaseEntity):
            assert isinstance(source, DatabaseSource)
            extractor = DatabaseExtractor(
                source.name,
                config,
                url=self._database_source_url(source),
                batch_size=source.batch_size,
                keys_only=True,
                retry=self.context.db.retry_policy,
            )
            for item in extractor.extract(None):
                assert isinstance(item, Batch)
                yield item.columns, item.rows
            return
        assert isinstance(source, RestSource) and config.reconcile_keys is not None
        listing = config.reconcile_keys
        endpoint = RestEntity(
            name=config.name,
            path=listing.path,
            params=listing.params,
            records_path=listing.records_path,
            pagination=listing.pagination,
            keep_payload=False,
        )
        rest = RestExtractor(
            source.name,
            source.connection,
            source.auth,
            endpoint,
            batch_size=source.batch_size,
            budget=self._rate_budget(source),
            gate=self._pause_gate(source),
        )
        for item in rest.extract(None, None):
            if not isinstance(item, Batch):
                continue
            missing = [k for k in key if k not in item.columns]
            if missing:
                raise SourceFatalError(
                    f"source {source.name}, entity {config.name}: the key listing {listing.path} returned"
                    f" records without the key field(s) {', '.join(missing)} (fields: {', '.join(item.columns)})"
                )
            positions = [item.columns.index(k) for k in key]
            rows = [[row[i] for i in positions] for row in item.rows]
            for number, row in enumerate(rows):
                if any(value is None for value in row):
                    raise SourceFatalError(
                        f"source {source.name}, entity {config.name}: the key listing {listing.path} has a"
                        f" record without a key value ({dict(zip(key, row, strict=True))}, record {number + 1}"
                        " of its batch): a key missing from the listing would be deleted"
                    )
            yield list(key), rows

    def _check_key_drop(self, source: str, config: DatabaseEntity | RestEntity, keys: int) -> None:
        """Refuse a key listing that lost more keys than reconcile_keys.max_drop_share allows against
        the previous committed listing: the history would delete every key missing from it."""
        assert config.reconcile_keys is not None
        limit = config.reconcile_keys.max_drop_share
        if limit >= 1:
            return
        with self.context.db.connect(autocommit=True) as conn:
            row = conn.execute(
                "select record_count from staging.pulls where source = %s and entity = %s and mode = 'keys'"
                " and status = 'committed' order by committed_at desc limit 1",
                (source, config.name),
            ).fetchone()
        if row is None or not row[0]:
            return
        previous = int(row[0])
        drop = (previous - keys) / previous
        if drop > limit:
            raise DataQualityError(
                f"{source}.{config.name}: the key listing has {keys} keys, the previous one {previous}: a drop of"
                f" {drop:.1%}, above reconcile_keys.max_drop_share {limit:.0%}. Nothing is deleted; if the source"
                " really lost those rows, raise max_drop_share in the sources file for one run"
                ' (docs/runbook.md, "A key listing was refused")'
            )

    def _record_lineage(self, source: SourceConfig, entity: str, summary: PullSummary) -> None:
        """The source entity -> the staging tables, in ops.lineage_edges (best effort)."""
        try:
            warehouse = database_namespace(self.context.db.url)
            outputs = [Dataset(warehouse, "staging.pulls"), Dataset(warehouse, "staging.pull_batches")]
            if summary.payloads:
                outputs.append(Dataset(warehouse, "staging.pull_payloads"))
            inputs = self._source_datasets(source, entity_config(source, entity))
            record_lineage_edges(
                self.context.db,
                job_id=self.context.audit.job_id,
                run_id=self.context.settings.run_id,
                zone="staging",
                edges=[(i, o) for i in inputs for o in outputs],
            )
        except Exception as exc:
            _log.warning("the lineage of %s.%s was not recorded: %s", source.name, entity, exc)

    def _database_source_url(self, source: DatabaseSource) -> str:
        return resolve_source_url(
            source.connection,
            warehouse_url=self.context.db.url,
            embedded=self.context.settings.uses_embedded_database,
        )

    def _source_datasets(
        self, source: SourceConfig, config: DatabaseEntity | FileEntity | RestEntity | AsyncRestEntity
    ) -> list[Dataset]:
        """The source entity as OpenLineage datasets: the source table, API path or file patterns."""
        if isinstance(config, DatabaseEntity):
            assert isinstance(source, DatabaseSource)
            url = self._database_source_url(source)
            return [Dataset(database_namespace(url), config.table)]
        if isinstance(config, FileEntity):
            return [
                Dataset(file_namespace(), group.path.replace("{data_dir}", str(self.data_dir.resolve())))
                for group in config.files
            ]
        assert isinstance(source, RestSource | AsyncRestSource)
        base = source.connection.resolve_base_url()
        path = getattr(config, "path", "") or ""
        prefix = urlsplit(base).path.rstrip("/")
        return [Dataset(url_namespace(base), (prefix + "/" + path.lstrip("/")) if path else prefix or "/")]

    def _rate_budget(self, source: RestSource | AsyncRestSource) -> RateBudget | None:
        """One rate budget per source, shared by its entities pulled in parallel."""
        with self._budget_lock:
            if source.name not in self._budgets:
                self._budgets[source.name] = RateBudget.from_config(source.connection.rate_limit)
            return self._budgets[source.name]

    def _pause_gate(self, source: RestSource | AsyncRestSource) -> PauseGate:
        """One pause gate per source: a Retry-After or rate-limit reset holds all its entities."""
        with self._budget_lock:
            return self._gates.setdefault(source.name, PauseGate())

    def _writer(
        self,
        source: SourceConfig,
        entity: str,
        lock: LeaseLock,
        *,
        incremental: bool,
        watermark: str | None,
        detect_unchanged: bool,
    ) -> RawPullWriter:
        writer = RawPullWriter(
            self.context.db,
            run_id=self.context.settings.run_id,
            job_id=self.context.audit.job_id,
            source=source.name,
            entity=entity,
            mode="incremental" if incremental else "full",
            watermark_before=watermark,
            lock=lock,
            backfill=self.backfill if incremental else None,
            sizes=self.sizes,
            # a full pull equal to the last committed one ends 'unchanged' (RawPullWriter), unless the
            # entity sets keep_unchanged_pulls; never an incremental pull (a delta) or a fallback
            detect_unchanged=detect_unchanged,
        )
        writer.open()
        return writer

    def _extract_into(
        self,
        writer: RawPullWriter,
        source: SourceConfig,
        config: DatabaseEntity | FileEntity | RestEntity | AsyncRestEntity,
        watermark: str | None,
        extra: dict[str, Any] | None = None,
    ) -> PullSummary:
        """Stream one extraction into ``writer`` and commit it (a failure leaves the pull for the caller).

        A failed pull keeps in its metadata what the extractor counted so far (pages, requests,
        retries, files read...)."""
        extractor: Any = None
        try:
            checker = ContractChecker(
                source=source.name,
                entity=config.name,
                contract=source.effective_contract(config.name),
                declared=dict(config.columns) if config.columns else None,
                previous=previous_columns(self.context.db, source.name, config.name, writer.mode),
            )
            extractor, items = self._extractor(writer, source, config, watermark)
            return self._stream(writer, extractor, items, watermark, extra or {}, checker)
        except ContractViolation as exc:
            self._record_schema_changes(writer, checker.contract, checker.changes)
            writer.fail(f"{type(exc).__name__}: {exc}", metadata=_so_far(extractor, extra))
            raise
        except BaseException as exc:
            writer.fail(f"{type(exc).__name__}: {exc}", metadata=_so_far(extractor, extra))
            raise

    def _record_schema_changes(
        self, writer: RawPullWriter, contract: str, changes: list[SchemaChange]
    ) -> None:
        """What a strict pull found before it stopped, in a transaction of its own (the pull itself is
        failed and removed); best effort: the violation is what the job reports."""
        self._count_schema_changes(writer, changes)
        try:
            self.context.db.transaction(
                lambda conn: record_schema_changes(
                    conn, changes, contract=contract, **_pull_identity(writer)
                ),
                name=f"schema changes of pull {writer.pull_id}",
            )
        except Exception as exc:
            _log.warning("the schema changes of pull %s were not recorded: %s", writer.pull_id, exc)

    def _count_schema_changes(self, writer: RawPullWriter, changes: list[SchemaChange]) -> None:
        if not changes:
            return
        self.context.counts.setdefault("schema_changes", {})[f"{writer.source}.{writer.entity}"] = [
            {**c.as_json(), "pull_id": str(writer.pull_id)} for c in changes
        ]
        for change in changes:
            self.context.metrics.observe_schema_change(
                writer.source, writer.entity, change.kind, change.action
            )

    def _extractor(
        self,
        writer: RawPullWriter,
        source: SourceConfig,
        config: DatabaseEntity | FileEntity | RestEntity | AsyncRestEntity,
        watermark: str | None,
    ) -> tuple[Any, Iterator[Any]]:
        """The extractor of the entity and its items (batches, payloads, restarts)."""
        extractor: Any
        if isinstance(config, DatabaseEntity):
            assert isinstance(source, DatabaseSource)
            url = self._database_source_url(source)
            extractor = DatabaseExtractor(
                source.name, config, url=url, batch_size=source.batch_size, retry=self.context.db.retry_policy
            )
            items = extractor.extract(watermark, self.backfill)
        elif isinstance(config, RestEntity):
            assert isinstance(source, RestSource)
            extractor = RestExtractor(
                source.name,
                source.connection,
                source.auth,
                config,
                batch_size=source.batch_size,
                budget=self._rate_budget(source),
                gate=self._pause_gate(source),
            )
            items = extractor.extract(watermark, self.backfill)
        elif isinstance(config, AsyncRestEntity):
            assert isinstance(source, AsyncRestSource)
            extractor = AsyncRestExtractor(
                source.name,
                source.connection,
                source.auth,
                config,
                batch_size=source.batch_size,
                concurrency=source.concurrency,
                budget=self._rate_budget(source),
                gate=self._pause_gate(source),
            )
            items = extractor.extract(watermark)
        else:
            entity_name = config.name
            extractor = FileExtractor(
                source.name,
                config,
                data_dir=self.data_dir,
                roots=self.file_roots,
                batch_size=source.batch_size,
                already_loaded=lambda checksum: file_already_loaded(
                    self.context.db, source.name, entity_name, checksum
                ),
                payload_chunk_bytes=writer.sizes.payload_chunk_bytes,
            )
            items = extractor.extract()
        return extractor, items

    def _stream(
        self,
        writer: RawPullWriter,
        extractor: Any,
        items: Iterator[Any],
        watermark: str | None,
        extra: dict[str, Any],
        checker: ContractChecker,
    ) -> PullSummary:
        try:
            for item in items:
                if self.cancel.is_set():
                    raise Cancelled("cancelled because another part of the job failed or it was stopped")
                if isinstance(item, Restart):
                    # the source read starts again from its first row: forget what it wrote so far
                    writer.restart()
                    checker.restart()
                elif isinstance(item, Batch):
                    if item.rows:
                        checker.check_batch(
                            item.columns,
                            item.rows,
                            batch_no=writer.batches + 1,
                            header=item.header,
                            where=item.where,
                        )
                    writer.add_batch(
                        item.columns,
                        item.rows,
                        where=item.where,
                        json_numbers=item.json_numbers,
                        origin=item.origin,
                    )
                elif isinstance(item, Rejected):
                    writer.add_rejected(item.origin, item.unit, item.position, item.reason, item.content)
                else:
                    writer.add_payload(item.name, item.content_type, item.body)
        finally:
            # Stopped early (a strict contract, a cancel): close the extraction now, so that its source
            # connection, transaction and open files go at once rather than when garbage collected.
            close = getattr(items, "close", None)
            if close is not None:
                close()
        changes = checker.finish()
        if writer.payloads == 0:
            writer.count_bytes(extractor.state.bytes_read or writer.json_bytes)
        metadata = {**extractor.state.metadata, **extra}
        if checker.columns:
            metadata["columns"] = list(checker.columns)  # what the next pull's columns are compared with
        if changes:
            metadata["schema_changes"] = len(changes)
        summary = writer.commit(
            watermark_after=extractor.state.watermark_after or watermark,
            metadata=metadata,
            loaded_files=getattr(extractor, "loaded", ()),
            also=(
                (
                    lambda conn: record_schema_changes(
                        conn, changes, contract=checker.contract, **_pull_identity(writer)
                    )
                )
                if changes
                else None
            ),
        )
        self._count_schema_changes(writer, changes)
        return summary


def _so_far(extractor: Any, extra: dict[str, Any] | None) -> dict[str, Any]:
    """The metadata of a pull that failed: what its extractor counted until then."""
    state = getattr(extractor, "state", None)
    return {**(state.metadata if state is not None else {}), **(extra or {})}


def _pull_identity(writer: RawPullWriter) -> dict[str, Any]:
    return {
        "pull_id": writer.pull_id,
        "job_id": writer.job_id,
        "run_id": writer.run_id,
        "source": writer.source,
        "entity": writer.entity,
        "mode": writer.mode,
    }


def check_backfill(pairs: list[tuple[SourceConfig, str]]) -> None:
    """A backfill re-extracts a cursor range: refuse (exit 2) entities pulled whole, whose pulls the
    conformed zone reads as complete snapshots (a partial one would look like mass deletions)."""
    whole = [f"{src.name}.{ent}" for src, ent in pairs if not _is_incremental(entity_config(src, ent))]
    if whole:
        raise ConfigurationError(
            f"cannot backfill {', '.join(whole)}: pulled whole (no cursor column or incremental parameter),"
            " so every pull is already complete; run it without --backfill-from/--backfill-to instead"
        )


def _is_snapshot(config: DatabaseEntity | FileEntity | RestEntity | AsyncRestEntity) -> bool:
    """Whether every pull of the entity reads the whole source (a snapshot, which may be found
    unchanged), not a delta: an incremental entity's pulls hold what changed since the watermark, and
    a drop folder's (skip_loaded_files) the files not loaded before."""
    if isinstance(config, FileEntity):
        return not config.skip_loaded_files
    return not _is_incremental(config)


def _is_incremental(config: DatabaseEntity | FileEntity | RestEntity | AsyncRestEntity) -> bool:
    if isinstance(config, DatabaseEntity):
        return config.cursor is not None
    if isinstance(config, RestEntity):
        return config.incremental is not None
    return False
