"""The staging job: pull every selected source entity into raw storage, with bounded parallelism."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from etl_shared import EtlError, JobContext, LeaseLock, SourceError, log_context

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
from ._extract import Batch, DatabaseExtractor, FileExtractor
from ._raw import PullSummary, RawPullWriter, clean_abandoned_pulls, file_already_loaded, read_watermark
from ._rest import AsyncRestEntity, AsyncRestExtractor, RateBudget, RestEntity, RestExtractor

_log = logging.getLogger(__name__)


class Cancelled(EtlError):
    """Another pull of the same job failed or the job was stopped."""


class StagingJob:
    def __init__(
        self, context: JobContext, sources: SourcesFile, *, data_dir: Path, parallelism: int
    ) -> None:
        self.context = context
        self.sources = sources
        self.data_dir = data_dir
        self.parallelism = max(1, parallelism)
        self.cancel = threading.Event()
        self._budgets: dict[str, RateBudget | None] = {}
        self._budget_lock = threading.Lock()

    def run(self, source: str | None = None, entity: str | None = None) -> list[PullSummary]:
        pairs = list(self.sources.select(source, entity))
        _log.info("staging %d source entities with parallelism %d", len(pairs), self.parallelism)
        summaries: list[PullSummary] = []
        errors: list[tuple[str, BaseException]] = []
        if self.parallelism == 1 or len(pairs) == 1:
            for src, ent in pairs:
                try:
                    summaries.append(self.pull(src, ent))
                except Exception as exc:
                    errors.append((f"{src.name}.{ent}", exc))
        else:
            with ThreadPoolExecutor(self.parallelism, thread_name_prefix="pull") as pool:
                futures: list[tuple[str, Future[PullSummary]]] = [
                    (f"{src.name}.{ent}", pool.submit(contextvars.copy_context().run, self.pull, src, ent))
                    for src, ent in pairs
                ]
                try:
                    for name, future in futures:
                        try:
                            summaries.append(future.result())
                        except Exception as exc:
                            errors.append((name, exc))
                except BaseException:
                    self.cancel.set()
                    raise
        self.context.counts["pulls"] = {
            f"{s.source}.{s.entity}": {"pull_id": str(s.pull_id), "records": s.records, "bytes": s.bytes}
            for s in summaries
        }
        self.context.counts["rows"] = sum(s.records for s in summaries)
        if errors:
            for name, exc in errors:
                _log.error("source entity %s failed: %s", name, exc)
            self.context.counts["failed"] = [name for name, _ in errors]
            first = errors[0][1]
            if len(errors) > 1 and isinstance(first, EtlError):
                raise type(first)(
                    f"{len(errors)} source entities failed; first {errors[0][0]}: {first}"
                ) from first
            raise first
        return summaries

    def pull(self, source: SourceConfig, entity: str) -> PullSummary:
        db = self.context.db
        started = time.monotonic()
        with log_context(source=source.name, entity=entity):
            with LeaseLock(db, f"pull:{source.name}:{entity}", lease_s=300, wait_s=900) as lock:
                clean_abandoned_pulls(db, source.name, entity)
                config = entity_config(source, entity)
                incremental = _is_incremental(config)
                watermark = read_watermark(db, source.name, entity) if incremental else None
                writer = self._writer(source, entity, lock, incremental=incremental, watermark=watermark)
                try:
                    summary = self._extract_into(writer, source, config, watermark)
                except SourceError as exc:  # the pull is already failed and cleaned by _extract_into
                    fallback = source.fallback.get(entity) if isinstance(source, RestSource) else None
                    if not fallback:
                        raise
                    _log.warning(
                        "%s.%s: the API failed (%s); reading the fallback files instead",
                        source.name,
                        entity,
                        exc,
                    )
                    # The watermark stays where it was: the next run asks the API again.
                    writer = self._writer(source, entity, lock, incremental=False, watermark=watermark)
                    files = FileEntity(name=entity, files=fallback)
                    summary = self._extract_into(
                        writer,
                        source,
                        files,
                        watermark,
                        extra={"fallback": True, "fallback_reason": str(exc)},
                    )
        self.context.metrics.observe_pull(
            source.name,
            entity,
            records=summary.records,
            byte_count=summary.bytes,
            pages=summary.pages,
            retries=summary.retries,
            seconds=time.monotonic() - started,
        )
        _log.info(
            "pulled %s.%s: %d records in %.1fs",
            source.name,
            entity,
            summary.records,
            time.monotonic() - started,
            extra={"source": source.name, "entity": entity, "records": summary.records},
        )
        return summary

    def _rate_budget(self, source: RestSource | AsyncRestSource) -> RateBudget | None:
        """One rate budget per source, shared by its entities pulled in parallel."""
        with self._budget_lock:
            if source.name not in self._budgets:
                self._budgets[source.name] = RateBudget.from_config(source.connection.rate_limit)
            return self._budgets[source.name]

    def _writer(
        self, source: SourceConfig, entity: str, lock: LeaseLock, *, incremental: bool, watermark: str | None
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
        """Stream one extraction into ``writer`` and commit it (a failure leaves the pull for the caller)."""
        try:
            return self._stream(writer, source, config, watermark, extra or {})
        except BaseException as exc:
            writer.fail(f"{type(exc).__name__}: {exc}")
            raise

    def _stream(
        self,
        writer: RawPullWriter,
        source: SourceConfig,
        config: DatabaseEntity | FileEntity | RestEntity | AsyncRestEntity,
        watermark: str | None,
        extra: dict[str, Any],
    ) -> PullSummary:
        extractor: Any
        if isinstance(config, DatabaseEntity):
            assert isinstance(source, DatabaseSource)
            url = resolve_source_url(
                source.connection,
                warehouse_url=self.context.db.url,
                embedded=self.context.settings.uses_embedded_database,
            )
            extractor = DatabaseExtractor(source.name, config, url=url, batch_size=source.batch_size)
            items = extractor.extract(watermark)
        elif isinstance(config, RestEntity):
            assert isinstance(source, RestSource)
            extractor = RestExtractor(
                source.name,
                source.connection,
                source.auth,
                config,
                batch_size=source.batch_size,
                budget=self._rate_budget(source),
            )
            items = extractor.extract(watermark)
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
            )
            items = extractor.extract(watermark)
        else:
            entity_name = config.name
            extractor = FileExtractor(
                source.name,
                config,
                data_dir=self.data_dir,
                batch_size=source.batch_size,
                already_loaded=lambda checksum: file_already_loaded(
                    self.context.db, source.name, entity_name, checksum
                ),
            )
            items = extractor.extract()
        for item in items:
            if self.cancel.is_set():
                raise Cancelled("cancelled because another part of the job failed or it was stopped")
            if isinstance(item, Batch):
                writer.add_batch(item.columns, item.rows)
            else:
                writer.add_payload(item.name, item.content_type, item.body)
        if writer.payloads == 0:
            writer.count_bytes(extractor.state.bytes_read or writer.json_bytes)
        return writer.commit(
            watermark_after=extractor.state.watermark_after or watermark,
            metadata={**extractor.state.metadata, **extra},
            loaded_files=getattr(extractor, "loaded", ()),
        )


def _is_incremental(config: DatabaseEntity | FileEntity | RestEntity | AsyncRestEntity) -> bool:
    if isinstance(config, DatabaseEntity):
        return config.cursor is not None
    if isinstance(config, RestEntity):
        return config.incremental is not None
    return False
