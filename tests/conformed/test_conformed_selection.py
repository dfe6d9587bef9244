"""Which part of the conformed project a run builds: everything on a first run, after a failure, a release
or --all; otherwise only the entities with new staging pulls (and what every run needs)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from conformed_warehouse import CUSTOMER_COLUMNS, Warehouse

from etl_staging import ValueSizes

PRODUCT_COLUMNS = [
    "product_id",
    "sku",
    "name",
    "category",
    "unit_price",
    "currency",
    "is_active",
    "updated_at",
]
T0 = "2025-01-01T08:00:00Z"


def customers(warehouse: Warehouse, *phones: str | None) -> None:
    warehouse.pull(
        "oltp",
        "customers",
        CUSTOMER_COLUMNS,
        [[i + 1, f"c{i + 1}@example.com", "A", "B", phone, "DE", T0, T0] for i, phone in enumerate(phones)],
    )


def products(warehouse: Warehouse, price: str, updated_at: str) -> None:
    warehouse.pull(
        "oltp", "products", PRODUCT_COLUMNS, [[7, "SKU-7", "Lamp", "home", price, "EUR", True, updated_at]]
    )


def execute(warehouse: Warehouse, statement: str) -> None:
    with psycopg.connect(warehouse.url, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def last_job(warehouse: Warehouse) -> dict[str, Any]:
    ((counts,),) = warehouse.rows(
        "select counts -> 'dbt_project' from ops.job_runs where zone = 'conformed' order by started_at desc limit 1"
    )
    assert isinstance(counts, dict)
    return counts


def built_models(warehouse: Warehouse) -> set[str]:
    """The models the last conformed job ran."""
    rows = warehouse.rows(
        "select unique_id from ops.dbt_node_results where resource_type = 'model' and job_id = ("
        " select job_id from ops.job_runs where zone = 'conformed' order by started_at desc limit 1)"
    )
    return {unique_id.split(".")[-1] for (unique_id,) in rows}


def monitor_tests(warehouse: Warehouse) -> set[str]:
    """The freshness and volume tests of the staging pulls the last conformed job ran."""
    rows = warehouse.rows(
        "select unique_id from ops.dbt_node_results where resource_type = 'test'"
        " and (starts_with(unique_id, 'test.commerce_conformed.freshness_')"
        "  or starts_with(unique_id, 'test.commerce_conformed.volume_'))"
        " and job_id = (select job_id from ops.job_runs where zone = 'conformed' order by started_at desc limit 1)"
    )
    return {unique_id.split(".")[2] for (unique_id,) in rows}


FRESHNESS = {
    f"freshness_{entity}"
    for entity in (
        "oltp__customers",
        "oltp__products",
        "oltp__orders",
        "oltp__order_lines",
        "web__web_events",
        "crm__accounts",
        "crm__contacts",
        "crm__opportunities",
        "fx__ecb_rates",
    )
}


def test_a_run_builds_only_the_entities_with_new_pulls(warehouse: Warehouse) -> None:
    customers(warehouse, None, None)
    products(warehouse, "10.00", T0)

    assert warehouse.run() == 0
    first = last_job(warehouse)
    assert first["complete"] is True
    assert first["built"] == "everything: first run of the zone with the domains commerce_conformed"
    # The tables the run created and keeps (incremental) were vacuumed and analysed after it: reltuples is
    # -1 until then.
    assert warehouse.rows(
        "select relname, reltuples >= 0 from pg_class where relnamespace = 'conformed'::regnamespace"
        " and relname in ('customer_history', 'product') order by 1"
    ) == [("customer_history", True), ("product", True)]
    everything = built_models(warehouse)
    assert {
        "validated_customer",
        "customer_history",
        "validated_crm_account",
        "web_event_history",
    } <= everything

    # Nothing new: only what every run needs (the FX rates carried forward to today, the pull tests).
    assert warehouse.run() == 0
    quiet = last_job(warehouse)
    assert quiet["built"] == "no new pulls"
    assert quiet["checksum"] == first["checksum"]
    assert built_models(warehouse) == {"fx_rate"}
    # every source's freshness; no volume test: no entity has a newer pull to compare
    assert monitor_tests(warehouse) == FRESHNESS

    # A new customer pull: the customer entity and what depends on it, nothing of the products or CRM.
    customers(warehouse, "+49 1", None)
    assert warehouse.run() == 0
    partial = last_job(warehouse)
    assert partial["built"].startswith("new pulls of oltp.customers; nothing new for crm.accounts")
    models = built_models(warehouse)
    assert {"validated_customer", "customer_history", "customer", "fx_rate"} <= models
    assert not models & {"validated_product", "product_history", "validated_crm_account", "web_event_history"}
    assert monitor_tests(warehouse) == FRESHNESS | {"volume_oltp__customers"}
    assert warehouse.rows(
        "select customer_id, phone, change_type from conformed.customer_history where is_current order by 1"
    ) == [(1, "+49 1", "update"), (2, None, "insert")]
    assert warehouse.rows("select customer_id, phone from conformed.customer order by 1") == [
        (1, "+49 1"),
        (2, None),
    ]


def test_everything_is_built_after_a_failure_a_manual_selection_or_a_change(warehouse: Warehouse) -> None:
    customers(warehouse, None)
    assert warehouse.run() == 0

    # --select builds what it names; it is not a complete run, so the next run builds everything.
    products(warehouse, "10.00", T0)
    assert warehouse.run("run", "--select", "validated_product+") == 0
    assert last_job(warehouse)["complete"] is False
    assert "product_history" in built_models(warehouse)
    assert warehouse.run() == 0
    assert last_job(warehouse)["built"].startswith(
        "everything: the previous conformed job did not build everything"
    )

    # A failed run (the database refuses the history table's write): the next run builds everything.
    products(warehouse, "11.00", "2025-02-01T08:00:00Z")
    execute(
        warehouse, "alter table conformed.product_history add constraint no_price_11 check (unit_price <> 11)"
    )
    assert warehouse.run() != 0
    execute(warehouse, "alter table conformed.product_history drop constraint no_price_11")
    assert warehouse.run() == 0
    assert last_job(warehouse)["built"] == "everything: the previous conformed job failed"
    assert warehouse.rows("select unit_price from conformed.product_history where is_current") == [(11,)]

    # Other vars (a configuration change) or --all: everything again.
    assert warehouse.run(reporting_currency="EUR") == 0
    assert last_job(warehouse)["built"] == "everything: the vars changed since the previous run"
    assert warehouse.run("run", "--all", reporting_currency="EUR") == 0
    assert last_job(warehouse)["built"] == "everything: --all"
    assert warehouse.run(reporting_currency="EUR") == 0
    assert last_job(warehouse)["built"] == "no new pulls"


def test_the_consumers_come_from_the_models(warehouse: Warehouse) -> None:
    """Which model consumes which source entity is read from the project's manifest (meta
    etl_consumes, set by history_config), not from a list in Python."""
    import json

    from etl_conformed._consumers import consumers_from_manifest

    assert warehouse.run() == 0
    manifest = json.loads((warehouse.data_dir / "dbt" / "conformed" / "target" / "manifest.json").read_text())
    project = consumers_from_manifest(manifest)
    histories = {key: [c.model for c in found] for key, found in project.consumers.items()}
    assert histories == {
        ("oltp", "customers"): ["customer_history"],
        ("oltp", "products"): ["product_history"],
        ("oltp", "orders"): ["sales_order_history"],
        ("oltp", "order_lines"): ["sales_order_line_history"],
        ("web", "web_events"): ["web_event_history"],
        ("crm", "accounts"): ["crm_account_history"],
        ("crm", "contacts"): ["crm_contact_history"],
        ("crm", "opportunities"): ["crm_opportunity_history"],
        ("fx", "ecb_rates"): ["fx_rate_history"],
    }
    assert project.consumers[("oltp", "customers")][0].selectors == ("validated_customer+",)
    assert project.volume_tests[("oltp", "customers")] == ["volume_oltp__customers"]
    assert project.every_run == ["fx_rate"]


def test_a_declaration_that_names_no_entity_is_refused() -> None:
    from etl_conformed._consumers import consumers_from_manifest
    from etl_shared import ConfigurationError

    bad = {
        "nodes": {
            "model.d.h": {"resource_type": "model", "name": "h", "config": {"meta": {"etl_consumes": "x"}}}
        }
    }
    with pytest.raises(ConfigurationError, match=r"model h .*etl_consumes must be"):
        consumers_from_manifest(bad)
    # a consumer reading staging directly builds itself and what follows it
    direct = {
        "nodes": {
            "model.d.h": {
                "resource_type": "model",
                "name": "h",
                "depends_on": {"nodes": []},
                "config": {"meta": {"etl_consumes": {"source": "s", "entity": "e"}}},
            }
        }
    }
    assert consumers_from_manifest(direct).consumers[("s", "e")][0].selectors == ("h+",)


def test_a_pull_no_model_consumes_is_named_and_fails_the_status_check(
    warehouse: Warehouse, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    from etl_pipeline.cli import main as etl_main

    customers(warehouse, None)
    assert warehouse.run() == 0
    # A team's new entity that no conformed model reads yet.
    warehouse.pull("erp", "invoices", ["invoice_id"], [[1], [2]])
    capsys.readouterr()
    assert warehouse.run() == 0
    out = capsys.readouterr().out
    assert "no model of the conformed project consumes this source entity" in out and "erp.invoices" in out
    assert last_job(warehouse)["built"].endswith("; no model consumes erp.invoices")
    ((counts,),) = warehouse.rows(
        "select counts -> 'unconsumed_pulls' from ops.job_runs where zone = 'conformed'"
        " order by started_at desc limit 1"
    )
    assert counts == {"erp.invoices": 1}

    sources = tmp_path / "sources.yml"
    sources.write_text(
        "sources:\n"
        "  - name: erp\n    kind: database\n    freshness_sla_hours: 1\n"
        "    connection: {url_env: ERP_URL}\n"
        "    entities:\n      - {name: invoices, table: erp.invoices, key: [invoice_id]}\n"
    )
    # Within the SLA: shown, not failing.
    assert etl_main(["status", "--check", "--sources-file", str(sources)]) == 0
    assert "1 committed pull(s) not read by any conformed model" in capsys.readouterr().out
    # A newer pull keeps the entity fresh, but the first one has waited unread for two hours.
    warehouse.execute(
        "update staging.pulls set committed_at = committed_at - interval '2 hours'"
        " where source = 'erp' and entity = 'invoices'"
    )
    warehouse.pull("erp", "invoices", ["invoice_id"], [[1], [2], [3]])
    capsys.readouterr()
    assert etl_main(["status", "--check", "--json", "--sources-file", str(sources)]) == 1
    status = json.loads(capsys.readouterr().out)
    assert status["stale"] == [] and status["unconsumed"] == ["erp.invoices"]
    assert etl_main(["status", "--sources-file", str(sources)]) == 0
    assert "erp.invoices pulls unconsumed past the SLA" in capsys.readouterr().out


T1 = "2025-03-01T08:00:00Z"


def customer_row(customer_id: int, **changes: Any) -> list[Any]:
    row = dict(
        zip(
            CUSTOMER_COLUMNS,
            [customer_id, f"c{customer_id}@example.com", "A", "B", None, "DE", T0, T0],
            strict=True,
        )
    )
    row.update(changes)
    return [row[c] for c in CUSTOMER_COLUMNS]


#: A byte budget of 1 KiB: batches of about seven customers, cut by bytes within the batches of 25 records.
SMALL_BATCHES = ValueSizes(batch_bytes=1024, payload_chunk_bytes=1024, record_max_bytes=64 * 1024)


@pytest.mark.parametrize("sizes", [None, SMALL_BATCHES], ids=["cut-by-records", "cut-by-bytes"])
def test_records_moved_by_a_record_removed_before_them_are_matched_by_key(
    warehouse: Warehouse, sizes: ValueSizes | None
) -> None:
    # Staging writes a database pull in key order, so removing customer 10 moves every later record
    # (across batches of 25). Customer 50 comes twice with the same change time: the later one counts,
    # also when the two are in different batches (the readers order by batch_no, then row_no).
    first = [customer_row(i) for i in range(1, 61)]
    first[49:50] = [customer_row(50, phone="+49 1"), customer_row(50, phone="+49 2")]
    warehouse.pull("oltp", "customers", CUSTOMER_COLUMNS, first, batch_size=25, sizes=sizes)
    if sizes is not None:
        ((batches, largest),) = warehouse.rows(
            "select count(*), max(octet_length(data::text)) from staging.pull_batches"
        )
        assert batches >= 8 and largest <= 1.2 * sizes.batch_bytes  # jsonb's text adds spaces
        ((first_batch, second_batch),) = warehouse.rows(
            "select min(batch_no) filter (where strpos(data::text, '+49 1') > 0),"
            " min(batch_no) filter (where strpos(data::text, '+49 2') > 0) from staging.pull_batches"
        )
        assert first_batch <= second_batch
    assert warehouse.run() == 0
    assert warehouse.rows("select phone from conformed.customer where customer_id = 50") == [("+49 2",)]

    # The next pull: 10 gone, 30 changed, the two records of 50 in the other order.
    second = [r for r in first if r[0] != 10]
    second[28] = customer_row(30, phone="+49 30", updated_at=T1)
    second[48:50] = [second[49], second[48]]
    warehouse.pull("oltp", "customers", CUSTOMER_COLUMNS, second, batch_size=25, sizes=sizes)
    assert warehouse.run() == 0

    assert warehouse.rows(
        "select customer_id from conformed.validated_customer where not is_unchanged order by 1"
    ) == [(30,), (50,), (50,)]
    assert warehouse.rows("select count(*) from conformed.validated_customer where is_unchanged") == [(57,)]
    assert warehouse.rows(
        "select customer_id, phone, change_type from conformed.customer_history"
        " where is_current and customer_id in (10, 30, 50) order by 1"
    ) == [(10, None, "delete"), (30, "+49 30", "update"), (50, "+49 1", "update")]


@pytest.mark.parametrize("second_run", [(), ("run", "--all")], ids=["new-input", "all"])
def test_unchanged_records_of_a_snapshot_pull_are_not_checked_again(
    warehouse: Warehouse, second_run: tuple[str, ...]
) -> None:
    # 200 customers; 5 is held (no valid updated_at: an error rule, 0.5% under its 1% threshold), 6 goes on
    # with a warning (bad email).
    first = [customer_row(i) for i in range(1, 201)]
    first[4] = customer_row(5, updated_at="not a time")
    first[5] = customer_row(6, email="nope")
    warehouse.pull("oltp", "customers", CUSTOMER_COLUMNS, first)
    assert warehouse.run() == 0

    # The next full pull: 1 changed, 200 gone, 201 new, 7 twice (as before, and changed later); 5 and 6
    # unchanged, still failing their rules.
    second = [r for r in first if r[0] != 200]
    second[0] = customer_row(1, phone="+49 1", updated_at=T1)
    second += [customer_row(201), customer_row(7, phone="+49 7", updated_at=T1)]
    warehouse.pull("oltp", "customers", CUSTOMER_COLUMNS, second)
    assert warehouse.run(*second_run) == 0

    # The history is the same either way.
    assert warehouse.rows(
        "select customer_id, phone, email, change_type from conformed.customer_history"
        " where is_current and customer_id in (1, 5, 6, 7, 200, 201) order by 1"
    ) == [
        (1, "+49 1", "c1@example.com", "update"),
        (6, None, None, "insert"),
        (7, "+49 7", "c7@example.com", "update"),
        (200, None, "c200@example.com", "delete"),
        (201, None, "c201@example.com", "insert"),
    ]
    assert warehouse.rows("select count(*) from conformed.customer_history where is_current") == [(200,)]
    assert warehouse.rows("select count(*) from conformed.customer_history where not is_current") == [(3,)]

    checked = warehouse.rows(
        "select customer_id from conformed.validated_customer where not is_unchanged order by 1, updated_at"
    )
    results = warehouse.rows(
        "select rule_id, failures, checked from ops.dq_results where run_id = 'run-2' order by 1"
    )
    quarantined = warehouse.rows(
        "select rule_id, (record ->> 'customer_id')::int from conformed.quarantine where run_id = 'run-2' order by 1"
    )
    if second_run:  # --all: every record is checked again, and the failing ones quarantined again
        assert len(checked) == 201
        assert quarantined == [("customer.email_valid", 6), ("customer.updated_at_valid", 5)]
        failures = {"customer.email_valid": 1, "customer.updated_at_valid": 1}
    else:  # only the new, changed and twice-pulled records; the others passed or were held before
        assert checked == [(1,), (7,), (7,), (201,)]
        assert warehouse.rows(
            "select count(*) from conformed.validated_customer where is_unchanged and customer_id is not null"
        ) == [(197,)]
        assert quarantined == []
        failures = {}
    # The shares are of the whole pull either way.
    assert [r for r in results if r[0].startswith("customer.")] == [
        (rule, failures.get(rule, 0), 201)
        for rule in (
            "customer.country_known",
            "customer.customer_id_valid",
            "customer.email_valid",
            "customer.updated_at_valid",
        )
    ]


def test_an_entity_whose_new_pulls_are_empty_is_not_built(warehouse: Warehouse) -> None:
    products(warehouse, "10.00", T0)
    assert warehouse.run() == 0
    history = warehouse.snapshot("conformed.product_history", "conformed.product")

    # An empty full pull (a file source commits one when the file has not changed): nothing to read,
    # nothing deleted. Its pull is consumed, its volume test runs (and warns: 0 records against 1).
    empty = warehouse.pull("oltp", "products", PRODUCT_COLUMNS, [])
    assert warehouse.run() == 0
    assert last_job(warehouse)["built"] == "no new pulls; only empty pulls of oltp.products"
    assert built_models(warehouse) == {"fx_rate"}
    assert monitor_tests(warehouse) == FRESHNESS | {"volume_oltp__products"}
    assert warehouse.rows(
        "select status from ops.dq_results where rule_id = 'volume_oltp__products' and run_id = 'run-2'"
    ) == [("warn",)]
    assert warehouse.rows(
        "select disposition, note, run_id from conformed.consumed_pulls where pull_id = %s", (empty,)
    ) == [("processed", "no records: nothing to process, its models were not run", "run-2")]
    assert warehouse.snapshot("conformed.product_history", "conformed.product") == history

    # The next pull is compared with the last one that had records: the lamp is unchanged.
    products(warehouse, "10.00", T0)
    assert warehouse.run() == 0
    assert "validated_product" in built_models(warehouse)
    assert warehouse.rows("select product_id, is_unchanged from conformed.validated_product") == [(7, True)]
    assert (
        warehouse.snapshot("conformed.product_history", "conformed.product")["conformed.product_history"]
        == (history["conformed.product_history"])
    )
