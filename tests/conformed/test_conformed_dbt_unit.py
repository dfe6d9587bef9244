"""The conformed project's dbt unit tests (models/*/unit_tests.yml): business rules on fixed inputs.

Production runs leave them out (`dbt build --exclude-resource-type unit_test`); here they run after a
first build, which creates the relations the unit tests take their column types from."""

from __future__ import annotations

from conformed_warehouse import Warehouse

from etl_shared import DbtProject, assemble_zone_project, configured_domains


def test_dbt_unit_tests_pass(warehouse: Warehouse) -> None:
    assert warehouse.run() == 0
    work_dir = warehouse.data_dir / "dbt" / "unit"
    assemble_zone_project("conformed", configured_domains(), work_dir / "project")
    project = DbtProject(work_dir / "project", profile="conformed", schema="conformed", work_dir=work_dir)

    result = project.invoke(
        "test", warehouse.url, args=["--select", "test_type:unit"], variables={"run_id": "unit-tests"}
    )

    names = sorted(r.node.name for r in result.result.results)
    statuses = {r.node.name: str(r.status) for r in result.result.results}
    assert names == [
        "customer_takes_the_oldest_crm_account_with_its_email",
        "fx_rate_carries_the_last_published_rate_over_weekends",
        "history_closes_the_current_version_and_adds_the_change",
        "sales_order_line_amounts_in_the_reporting_currency",
    ]
    assert set(statuses.values()) == {"pass"}, statuses
    assert result.success
