"""Retention declared by the models themselves (meta etl_retention), read from a dbt manifest."""

from __future__ import annotations

import pytest

from etl_shared import ConfigurationError, RetentionRule, declared_retention_rules


def model(name: str, meta: dict, *, alias: str | None = None, schema: str = "semantic") -> dict:
    return {
        "resource_type": "model",
        "name": name,
        "alias": alias,
        "schema": schema,
        "original_file_path": f"models/{name}.sql",
        "config": {"meta": meta},
    }


def test_the_models_that_declare_retention_get_a_rule() -> None:
    manifest = {
        "nodes": {
            "model.p.fct_a": model("fct_a", {"etl_retention": {"column": "order_date", "keys": ["a_key"]}}),
            "model.p.fct_b": model(
                "fct_b",
                {"etl_retention": {"column": "loaded_at", "keys": ["x", "y"]}},
                alias="b",
                schema="team",
            ),
            "model.p.dim_c": model("dim_c", {"owner": "team"}),
            "test.p.t": {"resource_type": "test", "name": "t", "config": {"meta": {"etl_retention": "x"}}},
        }
    }
    assert declared_retention_rules(manifest) == [
        RetentionRule("semantic.fct_a", "order_date", ("a_key",)),
        RetentionRule("team.b", "loaded_at", ("x", "y")),
    ]


@pytest.mark.parametrize(
    "declared", ["order_date", {"column": "order_date"}, {"column": "d", "keys": []}, {"keys": ["k"]}]
)
def test_a_malformed_declaration_names_the_model(declared: object) -> None:
    manifest = {"nodes": {"model.p.fct_a": model("fct_a", {"etl_retention": declared})}}
    with pytest.raises(
        ConfigurationError, match=r"model fct_a \(models/fct_a.sql\): meta etl_retention must be"
    ):
        declared_retention_rules(manifest)
