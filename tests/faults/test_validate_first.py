"""Validate before acting: a sources file with a bad identifier, an unknown --source or --entity and a
bad --select end the real entrypoints with exit 2 before anything connects (no job row written)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from fault_support import run_entrypoint

SOURCES = """
sources:
  - name: shop
    kind: database
    connection: {url_env: FAULTS_SHOP_URL}
    entities:
      - {name: customers, table: shop.customers, key: [%s]}
  - name: web
    kind: file
    entities:
      - name: events
        files: [{path: "{data_dir}/files/*.csv", format: csv}]
"""


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    sources = tmp_path / "sources.yml"
    sources.write_text(SOURCES % "customer_id", encoding="utf-8")
    return {
        "ETL_DATABASE_URL": database_url,
        "ETL_DATA_DIR": str(tmp_path),
        "ETL_SOURCES_FILE": str(sources),
        "ETL_SECRETS_DIR": str(tmp_path),
        "FAULTS_SHOP_URL": database_url,
    }


def nothing_written(url: str) -> bool:
    """No job row: the job did not even migrate the warehouse."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from information_schema.schemata where schema_name = 'ops'"
        ).fetchone()
    return row == (0,)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_injected_key_is_refused_naming_the_file_source_and_field(
    env: dict[str, str], command: str
) -> None:
    Path(env["ETL_SOURCES_FILE"]).write_text(
        SOURCES % '"customer_id; drop table staging.pulls --"', encoding="utf-8"
    )

    result = run_entrypoint("etl-staging", command, env=env)

    assert result.returncode == 2, result.stderr
    assert (
        f"sources file {env['ETL_SOURCES_FILE']}: source 'shop' field entities.0.key.0 (entity 'customers')"
        in (result.stderr)
    )
    assert "'customer_id; drop table staging.pulls --' is not an identifier" in result.stderr
    assert nothing_written(env["ETL_DATABASE_URL"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "nope"], "no source named 'nope'; known: shop, web"),
        (["--source", "web", "--entity", "nope"], "no entity 'nope' in source web; known: events"),
    ],
)
def test_an_unknown_source_or_entity_exits_2_before_connecting(
    env: dict[str, str], args: list[str], message: str
) -> None:
    result = run_entrypoint("etl-staging", "run", *args, env=env)

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert nothing_written(env["ETL_DATABASE_URL"])


@pytest.mark.parametrize(
    ("select", "message"),
    [
        ("nosuchmethod:x", "'nosuchmethod' is not a valid method name"),
        ("tag:", "not a dbt selection"),
    ],
)
@pytest.mark.parametrize("zone", ["conformed", "semantic"])
def test_a_bad_select_exits_2_before_connecting(
    env: dict[str, str], zone: str, select: str, message: str
) -> None:
    # a warehouse that is not there: a job that connected would exit 5
    env = {**env, "ETL_DATABASE_URL": "postgresql://etl@127.0.0.1:1/nowhere"}

    result = run_entrypoint(f"etl-{zone}", "run", "--select", select, env=env)

    assert result.returncode == 2, result.stdout + result.stderr
    assert f"etl-{zone}: usage error: --select {select!r}: {message}" in result.stderr
    assert "cannot connect" not in result.stdout + result.stderr


def test_a_password_drivers_would_misread_exits_2_without_showing_it(env: dict[str, str]) -> None:
    env = {**env, "ETL_DATABASE_URL": "postgresql://etl:abc@Pw5@127.0.0.1:1/warehouse"}

    result = run_entrypoint("etl-staging", "run", env=env)

    assert result.returncode == 2
    assert "ETL_DATABASE_URL" in result.stderr and "percent-encode" in result.stderr
    assert "Pw5" not in result.stdout + result.stderr and "abc@" not in result.stdout + result.stderr
