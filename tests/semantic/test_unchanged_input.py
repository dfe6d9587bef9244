"""The no-op day: staging finds every full pull unchanged (status 'unchanged', nothing committed) and
the incremental pulls empty; the conformed zone then builds only what every run needs, and the
semantic zone, with no conformed pull processed since its last run, builds nothing."""

from __future__ import annotations

from typing import Any

from conformed_warehouse import Warehouse
from test_semantic_zone import SEMANTIC_TABLES, build, load

from etl_staging import RawPullWriter


def staging_pull(warehouse: Warehouse, source: str, entity: str, mode: str, batches: list[Any]) -> Any:
    """A pull as the staging job writes it: full pulls compared with the last committed one."""
    writer = RawPullWriter(
        warehouse.db,
        run_id="no-op-day",
        job_id=None,
        source=source,
        entity=entity,
        mode=mode,
        watermark_before=None,
        write_behind=False,
        detect_unchanged=True,
    )
    writer.open()
    for columns, rows in batches:
        writer.add_batch(columns, rows)
    return writer.commit(watermark_after=None)


def newest_batches(warehouse: Warehouse, source: str, entity: str) -> list[Any]:
    """The batches of the newest committed pull of the entity, as (columns, rows): the source again."""
    found = warehouse.rows(
        "select b.data from staging.pull_batches as b where b.pull_id = ("
        " select p.pull_id from staging.pulls as p where p.source = %s and p.entity = %s"
        " and p.status = 'committed' and p.mode = 'full' order by p.committed_at desc limit 1)"
        " order by b.batch_no",
        (source, entity),
    )
    return [(data["columns"], data["rows"]) for (data,) in found]


def last_built(warehouse: Warehouse, zone: str) -> tuple[str, dict[str, int]]:
    ((built, nodes),) = warehouse.rows(
        "select counts -> 'dbt_project' ->> 'built', counts -> 'nodes' from ops.job_runs where zone = %s"
        " order by started_at desc limit 1",
        (zone,),
    )
    return built, nodes


def test_unchanged_full_pulls_and_empty_deltas_build_nothing_downstream(warehouse: Warehouse) -> None:
    load(warehouse)
    build(warehouse)
    before = warehouse.snapshot(*(f"semantic.{t}" for t in SEMANTIC_TABLES))
    consumed = warehouse.rows("select count(*) from conformed.consumed_pulls")

    # The no-op day: every snapshot entity pulled again with the same data, the deltas empty.
    full = warehouse.rows(
        "select distinct source, entity from staging.pulls where status = 'committed' and mode = 'full'"
        " order by 1, 2"
    )
    assert ("oltp", "customers") in full and ("oltp", "products") in full
    for source, entity in full:
        summary = staging_pull(warehouse, source, entity, "full", newest_batches(warehouse, source, entity))
        assert summary.same_as is not None, f"{source}.{entity}"
    staging_pull(warehouse, "oltp", "orders", "incremental", [])
    assert warehouse.rows(
        "select status, count(*) from staging.pulls where run_id = 'no-op-day' group by 1 order by 1"
    ) == [("committed", 1), ("unchanged", len(full))]

    assert warehouse.run() == 0
    built, _ = last_built(warehouse, "conformed")
    assert built == "no new pulls; only empty pulls of oltp.orders"
    models = warehouse.rows(
        "select unique_id from ops.dbt_node_results where resource_type = 'model' and job_id = ("
        " select job_id from ops.job_runs where zone = 'conformed' order by started_at desc limit 1)"
    )
    assert {m.split(".")[-1] for (m,) in models} == {"fx_rate"}  # what every run builds, nothing else
    # only the empty orders pull was marked (processed, without running its models)
    assert warehouse.rows("select count(*) from conformed.consumed_pulls")[0][0] > consumed[0][0]
    assert warehouse.rows(
        "select count(*) from conformed.consumed_pulls as c inner join staging.pulls as p using (pull_id)"
        " where p.status = 'unchanged'"
    ) == [(0,)]

    assert warehouse.semantic() == 0
    built, nodes = last_built(warehouse, "semantic")
    assert built == "no conformed pull processed since the last run"
    assert not nodes  # dbt built no node
    assert warehouse.snapshot(*(f"semantic.{t}" for t in SEMANTIC_TABLES)) == before
