"""The conformed and semantic zones against a real PostgreSQL: staging pulls written with the staging writer, the
zone run in-process as `etl-conformed run`, and the rows read back."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from etl_conformed.cli import main as conformed_main
from etl_shared import Database, apply_migrations
from etl_staging import RawPullWriter, ValueSizes

#: The columns of an oltp.customers staging pull, as the demo OLTP source delivers them.
CUSTOMER_COLUMNS = [
    "customer_id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "country",
    "created_at",
    "updated_at",
]


class Warehouse:
    """One test's warehouse: write staging pulls, run the conformed job, query."""

    def __init__(self, url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.url = url
        self.db = Database(url)
        self.data_dir = data_dir
        self.monkeypatch = monkeypatch
        self.runs = 0
        apply_migrations(self.db)

    def pull(
        self,
        source: str,
        entity: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        mode: str = "full",
        batch_size: int | None = None,
        sizes: ValueSizes | None = None,
    ) -> uuid.UUID:
        """A committed staging pull holding ``rows`` (values as the source gave them), in batches of
        ``batch_size`` rows (one batch by default), each cut again at ``sizes.batch_bytes`` of JSON
        (by default the warehouse's value sizes)."""
        writer = RawPullWriter(
            self.db,
            run_id=f"test-staging-{uuid.uuid4().hex[:6]}",
            job_id=None,
            source=source,
            entity=entity,
            mode=mode,
            watermark_before=None,
            write_behind=False,
            sizes=sizes,
        )
        writer.open()
        size = batch_size or max(len(rows), 1)
        for start in range(0, len(rows), size):
            writer.add_batch(list(columns), [list(r) for r in rows[start : start + size]])
        writer.commit(watermark_after=None)
        return writer.pull_id

    def run(self, *args: str, **settings: str) -> int:
        """``etl-conformed run`` (or another command) in-process; returns the exit code."""
        self._environment(settings)
        return conformed_main(list(args or ["run"]))

    def semantic(self, *args: str, **settings: str) -> int:
        """``etl-semantic run`` (or another command) in-process; returns the exit code."""
        from etl_semantic.cli import main as semantic_main

        self._environment(settings)
        return semantic_main(list(args or ["run"]))

    def _environment(self, settings: dict[str, str]) -> None:
        self.runs += 1
        self.monkeypatch.setenv("ETL_DATABASE_URL", self.url)
        self.monkeypatch.setenv("ETL_DATA_DIR", str(self.data_dir))
        self.monkeypatch.setenv("ETL_RUN_ID", f"run-{self.runs}")
        for name, value in settings.items():
            self.monkeypatch.setenv(f"ETL_{name.upper()}", value)

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def execute(self, statement: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def snapshot(self, *tables: str) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of each table, sorted: to compare before and after a run."""
        return {t: sorted(self.rows(f"select * from {t}"), key=repr) for t in tables}
