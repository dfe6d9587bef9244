"""`etl-conformed scaffold`: the models of a team's entities, from its sources.yml and staging's last
pulls, run as they are and give the source's rows exactly, deletes included."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from insurance_source import change_source, load_source
from ops_support import rows

from etl_conformed._scaffold import EntityPlan, cast_type, model_columns, validated_sql
from etl_conformed.cli import main as conformed
from etl_staging.cli import main as staging

INSURANCE = Path(__file__).resolve().parents[1] / "domains" / "insurance"


def test_source_types_become_casts() -> None:
    assert cast_type("numeric(15,2)") == "numeric(15, 2)"
    assert cast_type("character(4)") == "char(4)"
    assert cast_type("character varying(40)") == "varchar(40)"
    assert cast_type("timestamp with time zone") == "timestamptz"
    assert cast_type("integer") == "integer" and cast_type("bigint") == "bigint"
    # psycopg's names of the same types
    assert cast_type("bpchar(4)") == "char(4)" and cast_type("varchar(40)") == "varchar(40)"
    assert cast_type("timestamptz") == "timestamptz" and cast_type("int4") == "integer"
    assert cast_type("text") is None and cast_type(None) is None and cast_type("jsonb") is None


def test_pull_columns_that_are_not_identifiers_get_model_names_and_are_read_by_their_own() -> None:
    columns = ["id", "x:tier", "@id", "#text", "Order Date", "1st", "id_2", "it's"]
    names = model_columns(columns)
    assert names == {
        "id": "id",
        "x:tier": "x_tier",
        "@id": "id_3",  # id and id_2 are taken by columns of those names
        "#text": "text",
        "Order Date": "order_date",
        "1st": "c_1st",
        "id_2": "id_2",
        "it's": "it_s",
    }
    plan = EntityPlan(
        source="partner",
        entity="orders",
        model="partner_orders",
        key=["id"],
        cursor=None,
        listed=False,
        columns=list(names.values()),
        types={"x_tier": "integer"},
        fields={name: column for column, name in names.items() if name != column},
    )
    sql = validated_sql(plan)
    assert "{{ etl_platform.try_cast(etl_platform.field('x:tier'), 'integer') }} as x_tier" in sql
    assert "{{ etl_platform.field('@id') }} as id_3" in sql
    assert "{{ etl_platform.field('it\\'s') }} as it_s" in sql


def test_scaffolded_models_run_as_written_and_keep_the_source_exact(
    db_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    source_url = db_server.create_database("insurance")
    load_source(source_url)
    warehouse = db_server.create_database("wh")
    domain = tmp_path / "insurance"
    domain.mkdir()
    shutil.copy(INSURANCE / "sources.yml", domain / "sources.yml")  # the team has written only this
    for name, value in {
        "ETL_DATABASE_URL": warehouse,
        "ETL_INSURANCE_DATABASE_URL": source_url,
        "ETL_DATA_DIR": str(tmp_path / "data"),
        "ETL_DOMAINS": str(domain),
    }.items():
        monkeypatch.setenv(name, value)

    # before any pull: nothing to learn the columns from, and the error says what to run
    assert conformed(["scaffold", "--source", "insurance", "--entity", "claims"]) == 2
    assert "etl-staging run --source insurance --entity claims" in capsys.readouterr().err

    assert staging(["run"]) == 0
    assert conformed(["scaffold", "--source", "insurance"]) == 0
    out = capsys.readouterr().out
    models = domain / "conformed" / "models"
    for model in ("insurance_branches", "insurance_policies", "insurance_claims"):
        for name in (f"validated_{model}.sql", f"{model}_history.sql", f"{model}.sql", f"{model}.yml"):
            assert (models / model / name).is_file(), name
            assert f"wrote {models / model / name}" in out
    validated = (models / "insurance_claims" / "validated_insurance_claims.sql").read_text()
    assert "etl_platform.try_cast(etl_platform.field('amount'), 'numeric(15, 2)')" in validated
    assert "etl_platform.try_cast(etl_platform.field('branch_code'), 'char(4)')" in validated
    history = (models / "insurance_claims" / "insurance_claims_history.sql").read_text()
    assert "change_time='updated_at'" in history and "key_listing=" in history
    assert "snapshot=true" in (models / "insurance_branches" / "insurance_branches_history.sql").read_text()
    rules = (domain / "conformed" / "seeds" / "dq_rules.csv").read_text().splitlines()
    assert rules[0] == "rule_id,entity,severity,threshold,description" and len(rules) == 4

    def exact() -> None:
        assert rows(
            warehouse,
            "select branch_code, policy_no, claim_no, claim_date, amount from conformed.insurance_claims"
            " where not is_deleted order by 1, 2, 3",
        ) == rows(
            source_url,
            "select branch_code, policy_no, claim_no, claim_date, amount from ins.claims order by 1, 2, 3",
        )
        assert rows(
            warehouse,
            "select branch_code, policy_no, holder, start_date, premium from conformed.insurance_policies"
            " where not is_deleted order by 1, 2",
        ) == rows(
            source_url,
            "select branch_code, policy_no, holder, start_date, premium from ins.policies order by 1, 2",
        )
        assert rows(
            warehouse,
            "select branch_code, branch_name, region from conformed.insurance_branches where not is_deleted order by 1",
        ) == rows(source_url, "select branch_code, branch_name, region from ins.branches order by 1")

    assert conformed(["run"]) == 0
    exact()
    change_source(source_url)
    assert staging(["run"]) == 0
    assert conformed(["run"]) == 0
    exact()

    # what the team edited is never overwritten
    capsys.readouterr()
    assert conformed(["scaffold", "--source", "insurance", "--entity", "claims"]) == 2
    assert "not overwriting" in capsys.readouterr().err
