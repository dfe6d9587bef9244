"""The same migrations and a staging pull on a real CockroachDB, through testcontainers.

Runs wherever a Docker engine answers; skipped with the reason otherwise (this project's CI machine
has none). ``ETL_TEST_DATABASE=cockroach`` runs the whole database suite on CockroachDB instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import COCKROACH_IMAGE, docker_unavailable_reason

from etl_shared import Database, apply_migrations
from etl_staging import RawPullWriter

pytestmark = pytest.mark.cockroach


@pytest.fixture(scope="module")
def cockroach_url() -> Iterator[str]:
    reason = docker_unavailable_reason()
    if reason:
        pytest.skip(f"CockroachDB tests need a Docker engine: {reason}")
    from testcontainers.cockroachdb import CockroachDBContainer

    with CockroachDBContainer(COCKROACH_IMAGE) as crdb:
        yield crdb.get_connection_url().replace("cockroachdb+psycopg2", "postgresql")


def test_migrations_and_a_pull_on_cockroachdb(cockroach_url: str, tmp_path: Path) -> None:
    db = Database(cockroach_url)
    assert apply_migrations(db)
    assert apply_migrations(db) == []
    writer = RawPullWriter(
        db, run_id="crdb", job_id=None, source="s", entity="e", mode="full", watermark_before=None
    )
    writer.open()
    writer.add_batch(["id", "amount"], [[1, "1.50"], [2, "2.25"]])
    summary = writer.commit(watermark_after=None)
    with psycopg.connect(cockroach_url) as conn:
        version = conn.execute("select version()").fetchone()
        status = conn.execute(
            "select status, record_count from staging.pulls where pull_id = %s", (summary.pull_id,)
        ).fetchone()
    assert version is not None and "CockroachDB" in version[0]
    assert status == ("committed", 2)
