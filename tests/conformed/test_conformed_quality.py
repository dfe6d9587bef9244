"""Record-level data quality: quarantine, thresholds and exit code 4, results per rule, skip-pull."""

from __future__ import annotations

from conformed_warehouse import Warehouse

ORDER_COLUMNS = ["order_id", "customer_id", "order_date", "ordered_at", "status", "currency", "updated_at"]


def order(
    order_id: int, currency: str = "EUR", status: str = "placed", order_date: str = "2026-01-05"
) -> list:
    return [order_id, 7, order_date, f"{order_date}T10:00:00Z", status, currency, f"{order_date}T10:00:00Z"]


def test_failing_records_are_quarantined_and_the_rest_go_on(warehouse: Warehouse) -> None:
    rows = [order(i) for i in range(1, 201)]
    rows.append(order(201, currency="XXY"))  # 1 of 201: under the 1% threshold
    rows.append(order(202, status="teleported"))
    rows.append(order(203, order_date="05/01/2026"))
    pull = warehouse.pull("oltp", "orders", ORDER_COLUMNS, rows, mode="incremental")

    # 3 of 203 fail (1.5%), but each rule alone stays under its 1% threshold: the job succeeds.
    assert warehouse.run() == 0

    assert warehouse.rows("select count(*), min(order_id), max(order_id) from conformed.sales_order") == [
        (200, 1, 200)
    ]
    quarantined = warehouse.rows(
        "select rule_id, severity, entity, pull_id, record, reason, run_id from conformed.quarantine order by rule_id"
    )
    assert [(r[0], r[1], r[2], r[3], r[6]) for r in quarantined] == [
        ("sales_order.currency_iso4217", "error", "sales_order", pull, "run-1"),
        ("sales_order.order_date_valid", "error", "sales_order", pull, "run-1"),
        ("sales_order.status_accepted", "error", "sales_order", pull, "run-1"),
    ]
    currency_record = quarantined[0][4]
    assert currency_record == {
        "order_id": 201,
        "customer_id": 7,
        "order_date": "2026-01-05",
        "ordered_at": "2026-01-05T10:00:00Z",
        "status": "placed",
        "currency": "XXY",
        "updated_at": "2026-01-05T10:00:00Z",
    }
    assert quarantined[0][5] == "currency is not an ISO 4217 code"

    results = warehouse.rows(
        "select rule_id, severity, status, failures, checked, threshold from ops.dq_results"
        " where run_id = 'run-1' and checked is not null and rule_id like 'sales_order.%%' order by rule_id"
    )
    assert results == [
        ("sales_order.currency_iso4217", "error", "warn", 1, 203, 0.01),
        ("sales_order.customer_id_valid", "error", "pass", 0, 203, 0.01),
        ("sales_order.order_date_valid", "error", "warn", 1, 203, 0.01),
        ("sales_order.order_id_valid", "error", "pass", 0, 203, 0.01),
        ("sales_order.status_accepted", "error", "warn", 1, 203, 0.01),
    ]
    (counts,) = warehouse.rows(
        "select counts from ops.job_runs where run_id = 'run-1' and zone = 'conformed'"
    )[0]
    assert counts["quarantined"] == {"sales_order (error)": 3}
    assert counts["record_rules"]["with_failures"]["sales_order.currency_iso4217"]["failures"] == 1


def test_threshold_crossed_exits_4_keeps_history_and_skip_pull_releases_it(warehouse: Warehouse) -> None:
    good = warehouse.pull("oltp", "orders", ORDER_COLUMNS, [order(1), order(2)], mode="incremental")
    assert warehouse.run() == 0
    history_before = warehouse.snapshot("conformed.sales_order_history", "conformed.sales_order")

    # 10 of 20 records carry a currency that is no ISO 4217 code: 50%, far above 1%.
    bad_rows = [order(i, currency="EURO" if i % 2 else "EUR") for i in range(100, 120)]
    bad = warehouse.pull("oltp", "orders", ORDER_COLUMNS, bad_rows, mode="incremental")

    assert warehouse.run() == 4

    # Nothing of the bad pull reached the history; its failing records are in the quarantine.
    assert warehouse.snapshot("conformed.sales_order_history", "conformed.sales_order") == history_before
    assert warehouse.rows(
        "select count(*) from conformed.quarantine where pull_id = %s and rule_id = 'sales_order.currency_iso4217'",
        (bad,),
    ) == [(10,)]
    assert warehouse.rows(
        "select status, failures, checked from ops.dq_results where run_id = 'run-2'"
        " and rule_id = 'sales_order.currency_iso4217'"
    ) == [("fail", 10, 20)]
    (status, exit_code, error) = warehouse.rows(
        "select status, exit_code, error from ops.job_runs where run_id = 'run-2' and zone = 'conformed'"
    )[0]
    assert (status, exit_code) == ("failed", 4)
    assert "sales_order.currency_iso4217: 10 of 20 records (50.0%) above the 1.0% threshold" in error
    assert "conformed.quarantine" in error
    # The pull is not consumed: a rerun meets it again (and fails again: nothing is lost or skipped).
    assert warehouse.rows("select count(*) from conformed.consumed_pulls where pull_id = %s", (bad,)) == [
        (0,)
    ]
    assert warehouse.run() == 4

    # The operator releases the pull (the source will resend corrected records); the next run is green.
    assert warehouse.run("skip-pull", str(bad), "--reason", "bad currency codes, resent by the source") == 0
    assert warehouse.rows(
        "select disposition, note from conformed.consumed_pulls where pull_id = %s", (bad,)
    ) == [("skipped", "bad currency codes, resent by the source")]
    assert warehouse.run() == 0
    assert warehouse.snapshot("conformed.sales_order_history", "conformed.sales_order") == history_before
    assert warehouse.rows("select pull_id from conformed.consumed_pulls where disposition = 'processed'") == [
        (good,)
    ]


def test_skip_pull_refuses_unknown_and_consumed_pulls(warehouse: Warehouse, capsys) -> None:
    assert warehouse.run("skip-pull", "not-a-uuid", "--reason", "x") == 2
    assert warehouse.run("skip-pull", "6f1c1c3e-0000-4000-8000-000000000000", "--reason", "x") == 2
    assert "no staging pull" in capsys.readouterr().err

    pull = warehouse.pull("oltp", "orders", ORDER_COLUMNS, [order(1)], mode="incremental")
    assert warehouse.run() == 0
    assert warehouse.run("skip-pull", str(pull), "--reason", "x") == 2
    assert "already consumed by sales_order_history" in capsys.readouterr().err

    other = warehouse.pull("elsewhere", "things", ["id"], [[1]])
    assert warehouse.run("skip-pull", str(other), "--reason", "x") == 2
    assert "which no model of the conformed zone reads" in capsys.readouterr().err


def test_a_stale_source_warns_after_26_hours_and_fails_after_50(warehouse: Warehouse) -> None:
    pull = warehouse.pull("oltp", "orders", ORDER_COLUMNS, [order(1)], mode="incremental")
    freshness = (
        "select severity, status, failures from ops.dq_results where rule_id = 'freshness_oltp__orders'"
        " and run_id = %s"
    )

    assert warehouse.run() == 0
    assert warehouse.rows(freshness, ("run-1",)) == [("error", "pass", 0)]

    warehouse.execute(
        f"update staging.pulls set committed_at = now() - interval '30 hours' where pull_id = '{pull}'"
    )
    assert warehouse.run() == 0
    assert warehouse.rows(freshness, ("run-2",)) == [("error", "warn", 1)]

    warehouse.execute(
        f"update staging.pulls set committed_at = now() - interval '60 hours' where pull_id = '{pull}'"
    )
    assert warehouse.run() == 4
    assert warehouse.rows(freshness, ("run-3",)) == [("error", "fail", 2)]
    (error,) = warehouse.rows("select error from ops.job_runs where run_id = 'run-3' and zone = 'conformed'")[
        0
    ]
    assert "freshness_oltp__orders" in error


def test_model_tests_check_the_rows_of_their_own_run(warehouse: Warehouse) -> None:
    """`where: {loaded_this_run}`: a test reads the rows written since the job began, less 5 seconds of
    clock margin; not the rows of a run half a minute earlier. Customer 7 of these orders is unknown:
    the relationships test (warn) counts one missing customer per order it reads."""
    missing_customer = (
        "select failures from ops.dq_results where run_id = %s"
        " and rule_id like 'relationships_sales_order_customer_id%%'"
    )
    warehouse.pull("oltp", "orders", ORDER_COLUMNS, [order(1)], mode="incremental")
    assert warehouse.run() == 0
    assert warehouse.rows(missing_customer, ("run-1",)) == [(1,)]

    # Order 1 as written by a run 30 seconds ago: the next run's test does not read it again.
    for table in ("sales_order_history", "sales_order"):
        warehouse.execute(f"update conformed.{table} set loaded_at = now() - interval '30 seconds'")
    warehouse.pull("oltp", "orders", ORDER_COLUMNS, [order(2)], mode="incremental")
    assert warehouse.run() == 0
    assert warehouse.rows(missing_customer, ("run-2",)) == [(1,)]

    # Orders 1 and 2 as written half a minute ago, but order 1's history as if this run had written it
    # (the current model takes it again): read with the run's own order 3, not order 2. (Order 1's
    # current row itself in the future would hold back order 3: the current model reads the history
    # written after its newest loaded_at.)
    for table in ("sales_order_history", "sales_order"):
        warehouse.execute(f"update conformed.{table} set loaded_at = now() - interval '30 seconds'")
    warehouse.execute(
        "update conformed.sales_order_history set loaded_at = now() + interval '1 hour' where order_id = 1"
    )
    warehouse.pull("oltp", "orders", ORDER_COLUMNS, [order(3)], mode="incremental")
    assert warehouse.run() == 0
    assert warehouse.rows(missing_customer, ("run-3",)) == [(2,)]
