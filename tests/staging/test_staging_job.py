"""The etl-staging command end to end on a real warehouse and a real source database."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ops_support import create_shop, rows

from etl_shared import Database
from etl_staging import RawPullWriter
from etl_staging.cli import main

pytestmark = pytest.mark.integration

SOURCES = """
sources:
  - name: shop
    kind: database
    batch_size: 2
    connection: {url_env: STAGING_TEST_SHOP_URL}
    entities:
      - {name: customers, table: shop.customers, key: [customer_id]}
      - {name: orders, table: shop.orders, key: [order_id], cursor: updated_at}
  - name: web
    kind: file
    batch_size: 3
    entities:
      - name: events
        files: [{path: "{data_dir}/files/*.csv", format: csv}]
"""

EVENTS = 'event_id,kind,note\n1,click,plain\n2,view,"with, comma"\n3,click,x\n4,view,y\n5,click,z\n'


@pytest.fixture
def source_url(db_server: Any) -> str:
    url: str = db_server.create_database("src")
    create_shop(url)
    return url


@pytest.fixture
def sources_file(tmp_path: Path) -> Path:
    path = tmp_path / "sources.yml"
    path.write_text(SOURCES, encoding="utf-8")
    return path


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    path = folder / "events.csv"
    path.write_text(EVENTS, encoding="utf-8")
    return path


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
    source_url: str,
    sources_file: Path,
    events_file: Path,
) -> str:
    monkeypatch.setenv("ETL_DATABASE_URL", database_url)
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_SOURCES_FILE", str(sources_file))
    monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("STAGING_TEST_SHOP_URL", source_url)
    return database_url


def committed(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Committed pulls per source.entity, oldest first:
    (records, batches, payloads, bytes, watermark before, watermark after)."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows(
        url,
        "select source || '.' || entity, record_count, batch_count, payload_count, byte_count,"
        " watermark_before, watermark_after from staging.pulls where status = 'committed'"
        " order by committed_at",
    ):
        found.setdefault(row[0], []).append(row[1:])
    return found


def committed_records(url: str, key: str) -> list[list[Any]]:
    source, entity = key.split(".")
    data = rows(
        url,
        "select b.data from staging.pull_batches b join staging.pulls p using (pull_id)"
        " where p.status = 'committed' and p.source = %s and p.entity = %s"
        " order by p.committed_at, b.batch_no",
        (source, entity),
    )
    return [row for (batch,) in data for row in batch["rows"]]


def job_runs(url: str) -> list[tuple[Any, ...]]:
    return rows(url, "select job_name, status, exit_code, error from ops.job_runs order by started_at")


def test_run_pulls_every_entity_and_a_second_run_only_new_rows(
    env: str, source_url: str, events_file: Path
) -> None:
    assert main(["run"]) == 0

    pulls = committed(env)
    assert sorted(pulls) == ["shop.customers", "shop.orders", "web.events"]
    assert pulls["shop.customers"] == [(3, 2, 0, pulls["shop.customers"][0][3], None, None)]
    ((records, batches, payloads, _, before, after),) = pulls["shop.orders"]
    assert (records, batches, payloads, before) == (5, 3, 0, None)
    assert after is not None and after.startswith("2024-01-06")
    assert pulls["web.events"] == [(5, 2, 1, events_file.stat().st_size, None, None)]
    assert committed_records(env, "web.events")[1] == ["2", "view", "with, comma"]
    assert [r[:2] for r in committed_records(env, "shop.orders")] == [
        [i, f"{i * 10.5:.2f}"] for i in range(1, 6)
    ]
    assert job_runs(env) == [("staging", "succeeded", 0, None)]
    assert rows(env, "select value from staging.watermarks where entity = 'orders'") == [(after,)]

    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute(
            "insert into shop.orders values (6, 1, timestamptz '2024-02-01 00:00+00'),"
            " (7, 2, timestamptz '2024-02-02 00:00+00')"
        )

    assert main(["run"]) == 0

    pulls = committed(env)
    # customers and the events file are read whole again and found as before: recorded 'unchanged'
    # (tests/staging/test_unchanged_pulls.py), not committed a second time
    assert {key: len(value) for key, value in pulls.items()} == {
        "shop.customers": 1,
        "shop.orders": 2,
        "web.events": 1,
    }
    assert rows(
        env,
        "select source || '.' || entity, record_count from staging.pulls where status = 'unchanged'"
        " order by 1",
    ) == [("shop.customers", 3), ("web.events", 5)]
    second = pulls["shop.orders"][1]
    assert second[:3] == (2, 1, 0)
    assert (second[4], second[5][:10]) == (after, "2024-02-02")
    assert [r[0] for r in committed_records(env, "shop.orders")] == [1, 2, 3, 4, 5, 6, 7]
    assert [status for _, status, _, _ in job_runs(env)] == ["succeeded", "succeeded"]


def test_source_and_entity_filters(env: str) -> None:
    assert main(["run", "--source", "web"]) == 0
    assert sorted(committed(env)) == ["web.events"]

    assert main(["run", "--source", "shop", "--entity", "orders"]) == 0
    assert sorted(committed(env)) == ["shop.orders", "web.events"]

    assert main(["run", "--entity", "customers"]) == 0
    assert {key: len(value) for key, value in committed(env).items()} == {
        "shop.customers": 1,
        "shop.orders": 1,
        "web.events": 1,
    }
    assert [name for name, *_ in job_runs(env)] == ["staging:web", "staging:shop:orders", "staging:customers"]


def test_unknown_source_or_entity_is_a_usage_error_before_connecting(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--source", "nope"]) == 2
    assert "no source named 'nope'; known: shop, web" in capsys.readouterr().err
    assert main(["run", "--source", "web", "--entity", "orders"]) == 2
    assert "no entity 'orders' in source web; known: events" in capsys.readouterr().err

    # checked before any connection: nothing was migrated, no job row written
    assert rows(env, "select count(*) from information_schema.schemata where schema_name = 'ops'") == [(0,)]


def test_list_and_validate(env: str, sources_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"source": "shop", "kind": "database", "entity": "customers"},
        {"source": "shop", "kind": "database", "entity": "orders"},
        {"source": "web", "kind": "file", "entity": "events"},
    ]

    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [
        ["shop", "database", "customers"],
        ["shop", "database", "orders"],
        ["web", "file", "events"],
    ]

    assert main(["validate"]) == 0
    assert capsys.readouterr().out == f"{sources_file}: OK (2 sources, 3 entities)\n"


def test_sources_file_option_overrides_the_setting(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.yml"
    other.write_text(
        "sources:\n  - {name: fx, kind: file,"
        " entities: [{name: rates, files: [{path: r.csv, format: csv}]}]}\n",
        encoding="utf-8",
    )

    assert main(["validate", "--sources-file", str(other)]) == 0
    assert capsys.readouterr().out == f"{other}: OK (1 sources, 1 entities)\n"


@pytest.mark.parametrize("command", [["run"], ["list", "--json"], ["validate"]])
def test_bad_sources_file_exits_2(
    env: str, sources_file: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    sources_file.write_text(SOURCES.replace("kind: file", "kind: ftp"), encoding="utf-8")

    assert main(command) == 2

    err = capsys.readouterr().err
    assert "configuration error" in err
    assert str(sources_file) in err
    assert "'ftp'" in err


def test_missing_sources_file_exits_2(env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--sources-file", str(tmp_path / "missing.yml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_malformed_csv_fails_the_pull_and_a_fixed_file_reruns(env: str, events_file: Path) -> None:
    events_file.write_text(EVENTS + "6,click\n7,view,ok\n", encoding="utf-8")

    assert main(["run", "--source", "web"]) == 3

    assert committed(env) == {}
    pulls = rows(env, "select pull_id, status, error, batch_count from staging.pulls")
    assert len(pulls) == 1
    pull_id, status, error, written = pulls[0]
    assert status == "failed"
    assert written == 1  # the first batch of 3 rows was stored before line 7, then removed
    assert f"{events_file}, line 7" in error
    for table in ("pull_batches", "pull_payloads"):
        assert rows(env, f"select count(*) from staging.{table} where pull_id = %s", (pull_id,)) == [(0,)]
    ((name, run_status, code, run_error),) = job_runs(env)
    assert (name, run_status, code) == ("staging:web", "failed", 3)
    assert "SourceFatalError" in run_error
    assert str(events_file) in run_error
    assert "line 7" in run_error

    events_file.write_text(EVENTS + "6,click,fixed\n", encoding="utf-8")

    assert main(["run", "--source", "web"]) == 0

    assert [p[0] for p in committed(env)["web.events"]] == [6]
    assert committed_records(env, "web.events")[-1] == ["6", "click", "fixed"]
    assert sorted(
        status for _, status, _ in rows(env, "select pull_id, status, error from staging.pulls")
    ) == [
        "committed",
        "failed",
    ]


def test_one_failing_entity_does_not_hide_the_others(env: str, events_file: Path) -> None:
    events_file.write_text("event_id,kind\n1\n", encoding="utf-8")

    assert main(["run"]) == 3

    assert sorted(committed(env)) == ["shop.customers", "shop.orders"]
    ((_, status, code, error),) = job_runs(env)
    assert (status, code) == ("failed", 3)
    assert "line 2" in error


def test_a_killed_pull_is_cleaned_up_by_the_next_run(env: str) -> None:
    assert main(["run", "--source", "web"]) == 0
    db = Database(env)
    killed = RawPullWriter(
        db, run_id="killed", job_id=None, source="web", entity="events", mode="full", watermark_before=None
    )
    killed.open()
    killed.add_batch(["event_id"], [["99"]])
    killed.add_payload("events.csv#1", "text/csv", b"event_id\n99\n")
    killed.flush()  # what the killed job had written before it died
    with psycopg.connect(env, autocommit=True) as conn:
        # The killed job's lease on this host: its process no longer exists.
        taken = conn.execute(
            "update ops.locks set holder = %s, expires_at = now() + interval '1 hour'"
            " where name = 'pull:web:events'",
            (f"{socket.gethostname()}:{_dead_pid()}:killed",),
        )
        assert taken.rowcount == 1

    assert main(["run", "--source", "web"]) == 0

    # the rerun reads the same file: unchanged since the first pull (the killed pull's batch is gone)
    assert [p[0] for p in committed(env)["web.events"]] == [5]
    assert rows(env, "select record_count from staging.pulls where status = 'unchanged'") == [(5,)]
    status, error = rows(
        env, "select status, error from staging.pulls where pull_id = %s", (killed.pull_id,)
    )[0]
    assert status == "failed"
    assert "abandoned" in error
    for table in ("pull_batches", "pull_payloads"):
        assert rows(env, f"select count(*) from staging.{table} where pull_id = %s", (killed.pull_id,)) == [
            (0,)
        ]


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_missing_source_table_exits_3(env: str, source_url: str) -> None:
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("drop table shop.customers")

    assert main(["run", "--source", "shop", "--entity", "customers"]) == 3

    assert committed(env) == {}
    ((_, status, code, error),) = job_runs(env)
    assert (status, code) == ("failed", 3)
    assert "shop.customers: table does not exist" in error


def test_source_url_variable_not_set_exits_2(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STAGING_TEST_SHOP_URL")

    assert main(["run", "--source", "shop", "--entity", "orders"]) == 2

    ((_, status, code, error),) = job_runs(env)
    assert (status, code) == ("failed", 2)
    assert "STAGING_TEST_SHOP_URL" in error
    assert rows(env, "select status from staging.pulls") == [("failed",)]


def test_unreachable_source_database_exits_3(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGING_TEST_SHOP_URL", "postgresql://nobody:hunter2@127.0.0.1:1/shop")

    assert main(["run", "--source", "shop", "--entity", "orders"]) == 3

    ((_, status, code, error),) = job_runs(env)
    assert (status, code) == ("failed", 3)
    assert "SourceTransientError" in error
    assert "hunter2" not in error
