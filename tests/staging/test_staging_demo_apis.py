"""The demo sources against the real sample APIs on loopback, with faults injected."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from etl_samples import Faults, SampleApiServer, generate
from etl_staging.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory, db_server: Any) -> Path:
    data_dir = tmp_path_factory.mktemp("demo")
    generate(data_dir, db_server.create_database("oltp"), orders=200, seed=3)
    return data_dir


@pytest.fixture
def api(demo_data: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SampleApiServer]:
    with SampleApiServer(demo_data, client_secret="s3cret", rate_limit_per_s=None) as server:
        monkeypatch.delenv("ETL_SOURCES_FILE", raising=False)
        monkeypatch.setenv("ETL_DATABASE_URL", database_url)
        monkeypatch.setenv("ETL_DATA_DIR", str(demo_data))
        monkeypatch.setenv("ETL_SECRETS_DIR", str(demo_data))
        monkeypatch.setenv("ETL_SAMPLE_API_URL", server.url)
        monkeypatch.setenv("ETL_SAMPLE_CLIENT_ID", "demo-client")
        monkeypatch.setenv("ETL_SAMPLE_CLIENT_SECRET", "s3cret")
        yield server


def _committed(url: str, source: str) -> dict[str, tuple[int, dict]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select entity, record_count, metadata from staging.pulls where source = %s and status = 'committed'",
            (source,),
        ).fetchall()
    return {entity: (records, metadata) for entity, records, metadata in rows}


def _jsonl_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def test_crm_through_429_and_500_storms_and_expiring_tokens(
    api: SampleApiServer, demo_data: Path, database_url: str
) -> None:
    api.faults = Faults(crm_429_times=3, crm_500_times=2, expire_tokens_after_requests=2)
    assert main(["run", "--source", "crm"]) == 0
    pulls = _committed(database_url, "crm")
    for entity in ("accounts", "contacts", "opportunities"):
        records, _ = pulls[entity]
        assert records == _jsonl_lines(demo_data / "sources" / "crm" / f"{entity}.jsonl")
    assert sum(meta["retries"] for _, meta in pulls.values()) >= 5


def test_fx_api_down_falls_back_to_the_csv_and_says_so(api: SampleApiServer, database_url: str) -> None:
    api.faults = Faults(fx_down=True)
    assert main(["run", "--source", "fx"]) == 0
    records, metadata = _committed(database_url, "fx")["ecb_rates"]
    assert metadata["fallback"] is True
    assert "503" in metadata["fallback_reason"]
    assert records > 6000  # one row per ECB publication day, in the wide CSV shape
    with psycopg.connect(database_url) as conn:
        failed = conn.execute(
            "select count(*) from staging.pulls where source = 'fx' and status = 'failed'"
        ).fetchone()
    assert failed == (1,)  # the API attempt, recorded and cleaned up


def test_fx_api_up_gives_long_rates_without_fallback(api: SampleApiServer, database_url: str) -> None:
    assert main(["run", "--source", "fx"]) == 0
    records, metadata = _committed(database_url, "fx")["ecb_rates"]
    assert "fallback" not in metadata
    assert metadata["pages"] >= 2
    assert records > 100_000


def test_a_cursor_loop_fails_the_pull_with_a_clear_error(api: SampleApiServer, database_url: str) -> None:
    api.faults = Faults(cursor_loop=True)
    assert main(["run", "--source", "crm", "--entity", "accounts"]) == 3
    assert _committed(database_url, "crm") == {}
    with psycopg.connect(database_url) as conn:
        error = conn.execute("select error from ops.job_runs where status = 'failed'").fetchone()
    assert error is not None and "loop" in error[0]
