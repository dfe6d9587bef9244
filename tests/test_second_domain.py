"""A second domain unlike the demo, beside it in one warehouse, through the plain daily `etl run`.

tests/domains/insurance is written as a team writes its domain (docs/domains.md), outside the
platform's packages: one PostgreSQL source with composite keys, branches pulled whole, policies and
claims pulled incrementally with hard deletes (reconcile_keys), fixed-width char(n) text,
numeric(15, 2) money and business dates decades before the demo's. The run is `etl run` with
ETL_DOMAINS naming the demo's domain and this one (never --all): the initial load, then a change
set of updates, hard deletes and inserts with new dates. After each, the star schema's answers
must equal the answers computed directly from the source tables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from insurance_source import change_source, load_source
from ops_support import rows

from etl_samples import generate
from etl_shared import installed_domains

pytestmark = pytest.mark.e2e

INSURANCE = Path(__file__).resolve().parent / "domains" / "insurance"


def check_answers(source: str, warehouse: str) -> None:
    expected = rows(
        source,
        "select b.region, extract(year from c.claim_date)::integer, count(*), sum(c.amount)"
        " from ins.claims c join ins.branches b using (branch_code) group by 1, 2 order by 1, 2",
    )
    assert (
        rows(
            warehouse,
            "select region_year_region, region_year_year, region_year_claims, region_year_amount"
            " from semantic.agg_claims_by_region_year order by 1, 2",
        )
        == expected
    )
    assert rows(
        warehouse,
        "select policy_branch_code, policy_no, policy_holder, policy_start_date, policy_premium"
        " from semantic.dim_policy where not policy_is_deleted and policy_no <> -1 order by 1, 2",
    ) == rows(
        source, "select branch_code, policy_no, holder, start_date, premium from ins.policies order by 1, 2"
    )
    assert rows(
        warehouse,
        "select count(*), sum(claim_amount), count(*) filter (where policy_key = md5('-1'))"
        " from semantic.fct_claim",
    ) == [(*rows(source, "select count(*), sum(amount) from ins.claims")[0], 0)]
    assert rows(
        warehouse,
        "select branch_code, branch_name, branch_region from semantic.dim_branch"
        " where not branch_is_deleted and branch_name <> 'Unknown branch' order by 1",
    ) == rows(source, "select branch_code, branch_name, region from ins.branches order by 1")
    first, last = rows(source, "select min(claim_date), max(claim_date) from ins.claims")[0]
    assert rows(
        warehouse,
        "select min(claim_date_value), max(claim_date_value), count(*) from semantic.dim_claim_date",
    ) == [(first, last, (last - first).days + 2)]  # every day, and the unknown member


def test_a_second_domain_gives_exact_answers_through_the_daily_run(tmp_path: Path, db_server: Any) -> None:
    data_dir = tmp_path / "data"
    oltp_url = db_server.create_database("oltp")
    generate(data_dir, oltp_url, orders=150, seed=3)
    source_url = db_server.create_database("insurance")
    load_source(source_url)
    (commerce,) = [d for d in installed_domains() if d.name == "commerce"]
    warehouse = db_server.create_database("wh")
    env = {name: value for name, value in os.environ.items() if not name.startswith("ETL_")}
    env.update(
        ETL_DATABASE_URL=warehouse,
        ETL_OLTP_DATABASE_URL=oltp_url,
        ETL_INSURANCE_DATABASE_URL=source_url,
        ETL_DATA_DIR=str(data_dir),
        ETL_DOMAINS=f"{commerce.path}{os.pathsep}{INSURANCE}",
    )

    def etl_run() -> None:
        result = subprocess.run(
            [sys.executable, "-m", "etl_pipeline", "run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    etl_run()
    check_answers(source_url, warehouse)
    # lineage follows what each export read: the claims reach the insurance app's load script only,
    # the web events the Watershed upload and not the insurance script
    (run_id,) = rows(warehouse, "select run_id from ops.job_runs where zone = 'semantic'")[0]
    lineage = subprocess.run(
        [sys.executable, "-m", "etl_pipeline", "lineage", run_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert lineage.returncode == 0, lineage.stderr
    exports = {
        (p["source"], p["entity"]): sorted(Path(e["path"]).name for e in p["exports"])
        for p in json.loads(lineage.stdout)["pulls"]
        if p["mode"] != "keys"
    }
    assert exports[("insurance", "claims")] == ["insurance_claims.qvs"]
    assert "insurance_claims.qvs" not in exports[("web", "web_events")]
    assert any(name.startswith("watershed_") for name in exports[("web", "web_events")])
    (orders,) = rows(oltp_url, "select count(*) from oltp.orders")[0]
    assert rows(warehouse, "select count(*) from semantic.fct_orders") == [(orders,)]
    assert (data_dir / "exports" / "insurance_claims.qvs").is_file()

    change_source(source_url)
    etl_run()
    check_answers(source_url, warehouse)
    # the deletes were recorded as such in the histories
    assert rows(
        warehouse,
        "select count(*) from conformed.ins_policy_history"
        " where branch_code = 'AB1' and policy_no = 5 and change_type = 'delete'",
    ) == [(1,)]
    built = rows(
        warehouse,
        "select counts -> 'dbt_project' ->> 'built' from ops.job_runs where zone = 'conformed'"
        " order by started_at desc limit 1",
    )[0][0]
    assert built.startswith("new pulls of ") and "insurance.claims" in built, built
