"""`etl status` (the operator's view) and `etl history`: a failed run and a stale source entity show
as such, in text and JSON, against a real warehouse fed by real staging jobs."""

from __future__ import annotations

from pathlib import Path

import ops_support
import pytest
from ops_support import etl, etl_json, rows, staging

from etl_shared import Database, JobAudit, QualityResult

ops_env = ops_support.ops_env
source_url = ops_support.source_url  # the shared fixtures

pytestmark = pytest.mark.integration


def _conformed_job_with_dq(url: str, run_id: str) -> None:
    """A conformed job that failed its data-quality gate, recorded with the real audit API."""
    audit = JobAudit(Database(url), run_id=run_id, zone="conformed", job_name="conformed")
    audit.start()
    audit.record_quality(
        [
            QualityResult("sales_order.currency_iso4217", "error", "fail", 12, "12 of 40 records"),
            QualityResult("freshness_warn_shop__orders", "warn", "warn", 1, "older than 26 hours"),
            QualityResult("unique_customer_customer_id", "error", "pass", 0, None),
        ]
    )
    audit.finish(
        status="failed",
        exit_code=4,
        counts={"dq_status": "fail"},
        error="DataQualityError: 1 data-quality rule(s) failed: sales_order.currency_iso4217 (12 failing)\nmore",
    )


def test_failed_run_and_stale_source_in_status_text_and_json(
    ops_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert staging("run", run_id="r1", monkeypatch=monkeypatch) == 0
    # The customers' last pull is 30 hours old (their source's SLA: 24 hours); orders are fresh (SLA 2).
    with __import__("psycopg").connect(ops_env, autocommit=True) as conn:
        conn.execute(
            "update staging.pulls set committed_at = now() - interval '30 hours' where entity = 'customers'"
        )
    # Then the web events file turns malformed: the next staging run fails with exit 3.
    (tmp_path / "files" / "events.csv").write_text("event_id,kind\n1\n", encoding="utf-8")
    assert staging("run", "--source", "web", run_id="r2", monkeypatch=monkeypatch) == 3
    _conformed_job_with_dq(ops_env, "r2")

    code, report = etl_json(capsys, "status")

    assert code == 0
    assert report["healthy"] is False
    assert report["failed_zones"] == ["staging", "conformed"]
    assert report["stale"] == ["shop.customers"]
    staging_zone = report["zones"]["staging"]
    assert (staging_zone["status"], staging_zone["exit_code"], staging_zone["run_id"]) == ("failed", 3, "r2")
    assert staging_zone["error_line"].startswith("SourceFatalError:")
    assert "line 2" in staging_zone["error_line"]
    conformed = report["zones"]["conformed"]
    assert (
        conformed["dq"]["failed"] == 1 and conformed["dq"]["warned"] == 1 and conformed["dq"]["passed"] == 1
    )
    assert [r["rule_id"] for r in conformed["dq"]["failed_rules"]] == ["sales_order.currency_iso4217"]
    assert conformed["dq"]["failed_rules"][0]["failures"] == 12
    assert [r["rule_id"] for r in conformed["dq"]["warned_rules"]] == ["freshness_warn_shop__orders"]
    assert conformed["error_line"] == (
        "DataQualityError: 1 data-quality rule(s) failed: sales_order.currency_iso4217 (12 failing)"
    )
    assert report["zones"]["semantic"] is None
    entities = {f"{e['source']}.{e['entity']}": e for e in report["staging_pulls"]}
    assert list(entities) == ["shop.customers", "shop.orders", "web.events"]
    customers, orders, events = entities.values()
    assert (customers["sla_hours"], customers["stale"], customers["freshness"]) == (24.0, True, "STALE")
    assert 29.9 < customers["age_hours"] < 30.5
    assert customers["last_records"] == 3 and customers["watermark"] is None
    assert (orders["sla_hours"], orders["stale"], orders["freshness"]) == (2.0, False, "fresh")
    assert orders["watermark"].startswith("2024-01-06") and orders["last_records"] == 5
    assert (events["sla_hours"], events["stale"], events["freshness"]) == (None, False, "no SLA")
    assert events["last_pull_status"] == "failed"
    assert "line 2" in events["last_pull_error"]
    assert events["committed_pulls"] == 1 and events["last_records"] == 3

    code, text = etl(capsys, "status")

    assert code == 0
    lines = text.splitlines()
    staging_line = next(line for line in lines if line.strip().startswith("staging"))
    assert "FAILED" in staging_line and "(exit 3)" in staging_line and "run r2" in staging_line
    assert any(line.strip().startswith("error: SourceFatalError") for line in lines)
    assert "data quality: 3 rules, 1 passed, 1 warned, 1 failed" in text
    assert "FAILED sales_order.currency_iso4217 (error): 12 failing" in text
    assert "warned freshness_warn_shop__orders: 1 failing" in text
    customers_line = next(line for line in lines if line.strip().startswith("shop.customers"))
    assert "(SLA 24h)  STALE" in customers_line
    orders_line = next(line for line in lines if line.strip().startswith("shop.orders"))
    assert "(SLA 2h)" in orders_line and "STALE" not in orders_line and "watermark 2024-01-06" in orders_line
    events_line = next(line for line in lines if line.strip().startswith("web.events"))
    assert "(no SLA)" in events_line
    assert "last pull FAILED: SourceFatalError" in text
    assert "Attention: staging failed; conformed failed; shop.customers stale" in text
    semantic_line = next(line for line in lines if line.strip().startswith("semantic"))
    assert "never run" in semantic_line

    assert etl(capsys, "status", "--check")[0] == 1
    assert etl(capsys, "status", "--check", "--json")[0] == 1


def test_status_check_is_0_when_healthy_and_sla_from_the_sources_file_option(
    ops_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert staging("run", run_id="ok", monkeypatch=monkeypatch) == 0

    assert etl(capsys, "status", "--check")[0] == 0

    rows(
        ops_env,
        "update staging.pulls set committed_at = now() - interval '1 hour' where source = 'web' returning 1",
    )
    # Another sources file (as --sources-file) with a tighter SLA on the web events.
    other = tmp_path / "other.yml"
    other.write_text(
        "sources:\n  - {name: web, kind: file, freshness_sla_hours: 0.5,"
        " entities: [{name: events, files: [{path: x.csv, format: csv}]}]}\n",
        encoding="utf-8",
    )
    code, report = etl_json(capsys, "status", "--check", "--sources-file", str(other))
    assert code == 1
    entities = {f"{e['source']}.{e['entity']}": e for e in report["staging_pulls"]}
    assert entities["web.events"]["stale"] is True
    assert entities["shop.orders"]["configured"] is False and entities["shop.orders"]["sla_hours"] is None
    assert report["sources_file"] == str(other)


def test_a_source_entity_never_pulled_with_an_sla_is_stale(
    ops_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert staging("run", "--source", "web", run_id="w", monkeypatch=monkeypatch) == 0

    code, report = etl_json(capsys, "status")

    assert code == 0
    entities = {f"{e['source']}.{e['entity']}": e for e in report["staging_pulls"]}
    assert entities["shop.customers"]["last_committed_at"] is None
    assert entities["shop.customers"]["stale"] is True
    assert report["stale"] == ["shop.customers", "shop.orders"]


def test_history_lists_runs_newest_first_with_outcome(
    ops_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert staging("run", "--source", "shop", run_id="h1", monkeypatch=monkeypatch) == 0
    (tmp_path / "files" / "events.csv").write_text("event_id,kind\n1\n", encoding="utf-8")
    assert staging("run", "--source", "web", run_id="h2", monkeypatch=monkeypatch) == 3
    _conformed_job_with_dq(ops_env, "h2")

    code, runs = etl_json(capsys, "history")

    assert code == 0
    assert [(r["run_id"], r["zone"], r["job_name"], r["status"], r["exit_code"]) for r in runs] == [
        ("h2", "conformed", "conformed", "failed", 4),
        ("h2", "staging", "staging:web", "failed", 3),
        ("h1", "staging", "staging:shop", "succeeded", 0),
    ]
    assert runs[2]["rows"] == 8 and runs[2]["seconds"] is not None
    assert runs[1]["error_line"].startswith("SourceFatalError: source web, file")

    code, text = etl(capsys, "history", "--limit", "2", "--zone", "staging")
    assert code == 0
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["started", "(UTC)", "zone", "job"]
    assert (
        "staging:web" in lines[1]
        and " failed " in lines[1]
        and "    3 " in lines[1]
        and lines[1].endswith("h2")
    )
    assert lines[2].startswith("    error: SourceFatalError")
    assert "staging:shop" in lines[3] and " succeeded " in lines[3] and lines[3].endswith("h1")
    assert len(lines) == 4

    code, runs = etl_json(capsys, "history", "--zone", "conformed", "--limit", "5")
    assert [r["job_name"] for r in runs] == ["conformed"]

    assert etl(capsys, "history", "--limit", "0")[0] == 2


def test_status_on_a_database_without_audit_tables_exits_5(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETL_DATABASE_URL", database_url)
    from etl_pipeline.cli import main

    assert main(["status"]) == 5
    assert "cannot read the audit tables" in capsys.readouterr().err
    assert rows(database_url, "select count(*) from pg_namespace where nspname = 'ops'") == [(0,)]
