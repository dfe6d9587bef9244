"""SIGTERM and SIGINT stop every zone cleanly: dbt's queries cancelled, exit 143, the job row marked
cancelled, and the next run builds what a clean run builds."""

from __future__ import annotations

import signal
from pathlib import Path

import fault_support
import pytest
from fault_support import (
    ZONES,
    dbt_running,
    differences,
    fingerprint,
    job,
    messages,
    rows,
    sample_api,
    start,
    wait_for,
)

staged = fault_support.staged
control = fault_support.control
warehouse = fault_support.warehouse

pytestmark = pytest.mark.e2e


def _last_job(url: str, zone: str) -> tuple[str, int, str]:
    return rows(
        url,
        "select status, exit_code, error from ops.job_runs where zone = %s order by started_at desc limit 1",
        (zone,),
    )[0]


@pytest.mark.parametrize(
    ("zone", "signum"),
    [("conformed", signal.SIGTERM), ("semantic", signal.SIGTERM), ("conformed", signal.SIGINT)],
    ids=["conformed-SIGTERM", "semantic-SIGTERM", "conformed-SIGINT"],
)
def test_a_stopped_dbt_zone_exits_143_and_the_rerun_builds_a_clean_run(
    zone: str,
    signum: signal.Signals,
    staged: fault_support.Staged,
    control: dict,
    warehouse: str,
    tmp_path: Path,
) -> None:
    env = staged.env(warehouse, tmp_path / "data")
    if zone == "semantic":
        built = job("etl-conformed", "run", env=env)
        assert built.returncode == 0, built.stdout[-3000:]

    log = tmp_path / "stopped.log"
    stopped = start(f"etl-{zone}", "run", env=env, log=log)
    wait_for(dbt_running(warehouse), f"dbt builds the {zone} zone", process=stopped)
    stopped.send_signal(signum)
    code = stopped.wait(timeout=300)
    output = log.read_text()

    assert code == 143, output[-3000:]
    said = messages(output)
    assert any(m.startswith(f"{signum.name} received: stopping the job") for m in said), said
    (ended,) = [m for m in said if m.startswith(f"job {zone} cancelled (exit 143)")]
    assert f"JobTerminated: stopped by {signum.name}" in ended
    assert not any("TransformError" in m or "failed unexpectedly" in m for m in said), said
    status, exit_code, error = _last_job(warehouse, zone)
    assert (status, exit_code) == ("cancelled", 143)
    assert error.startswith(f"JobTerminated: stopped by {signum.name}")
    # dbt's sessions were cancelled and closed, the lease released
    assert not dbt_running(warehouse)()
    assert rows(
        warehouse, "select count(*) from ops.locks where name like 'zone:%%' and holder is not null"
    ) == [(0,)]

    rerun = job(f"etl-{zone}", "run", env=env)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    if zone == "conformed":  # (the semantic zone builds everything every run)
        said = messages(rerun.stdout)
        assert any(
            m.startswith("building every model: the previous conformed job was cancelled") for m in said
        )
    if zone == "conformed":
        after = job("etl-semantic", "run", env=env)
        assert after.returncode == 0, after.stdout[-3000:]
    assert not differences(fingerprint(warehouse, ZONES), control)


def _newest(url: str) -> dict[tuple[str, str], int | None]:
    """Per source entity with a committed data pull, the records of the web events' newest one (the
    entity stopped in the middle of its pull; the others may have committed before the stop, and the
    rerun then pulled only what is new)."""
    found = rows(
        url,
        "select distinct on (source, entity) source, entity, record_count from staging.pulls"
        " where status = 'committed' and mode <> 'keys' order by source, entity, committed_at desc",
    )
    return {(s, e): (n if (s, e) == ("web", "web_events") else None) for s, e, n in found}


def test_a_stopped_staging_job_exits_143_and_leaves_no_partial_pull(
    staged: fault_support.Staged, db_server: object, tmp_path: Path
) -> None:
    """Staging, stopped in the middle of a pull (web events one record a batch), then run again:
    the same committed records as the template's clean pull."""
    import yaml

    from etl_staging.cli import bundled_sources_file

    config = yaml.safe_load(bundled_sources_file().read_text())
    for source in config["sources"]:
        if source["name"] == "web":
            source["batch_size"] = 1
    slow = tmp_path / "slow-sources.yml"
    slow.write_text(yaml.safe_dump(config))
    url = db_server.create_database("wh")  # type: ignore[attr-defined]
    clean = _newest(fault_support.database_url(staged.admin_url, staged.template))

    with sample_api(staged, url) as api:
        env = staged.env(url, staged.samples_dir, ETL_SAMPLE_API_URL=api)
        log = tmp_path / "stopped.log"
        stopped = start("etl-staging", "run", env={**env, "ETL_SOURCES_FILE": str(slow)}, log=log)
        wait_for(
            lambda: bool(
                rows(
                    url,
                    "select count(*) from staging.pulls p where status = 'running' and"
                    " (select count(*) from staging.pull_batches b where b.pull_id = p.pull_id) >= 5",
                )[0][0]
            ),
            "staging is in the middle of a pull",
            process=stopped,
        )
        stopped.send_signal(signal.SIGTERM)
        code = stopped.wait(timeout=300)
        output = log.read_text()
        assert code == 143, output[-3000:]
        assert any(m.startswith("job staging cancelled (exit 143)") for m in messages(output)), output[-3000:]
        assert _last_job(url, "staging")[:2] == ("cancelled", 143)
        assert rows(url, "select count(*) from staging.pulls where status = 'running'") == [(0,)]

        rerun = job("etl-staging", "run", env=env)
        assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert _newest(url) == clean
    leftovers = rows(
        url,
        "select count(*) from staging.pull_batches as b inner join staging.pulls as p on p.pull_id = b.pull_id"
        " where p.status <> 'committed'",
    )
    assert leftovers == [(0,)]


def test_etl_run_passes_a_stop_on_to_the_running_zone(staged: fault_support.Staged, warehouse: str) -> None:
    """`etl run` stopped while conformed builds: the zone gets the signal, stops cleanly, and the run
    stops there with 143 (the semantic zone never starts)."""
    env = staged.env(warehouse, staged.samples_dir)  # the sample APIs serve the generated files
    log = staged.samples_dir.parent / "etl-run.log"
    process = start("etl", "run", "--sample-apis", env=env, log=log)
    wait_for(
        lambda: (
            bool(rows(warehouse, "select count(*) from ops.job_runs where zone = 'conformed'")[0][0])
            and dbt_running(warehouse)()
        ),
        "dbt builds the conformed zone",
        process=process,
    )
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=300) == 143, log.read_text()[-3000:]
    assert "stopped at conformed (exit 143)" in log.read_text()
    zones = rows(warehouse, "select zone, status, exit_code from ops.job_runs order by started_at")
    # the template's staging job, this run's, then the stopped conformed job; no semantic job
    assert zones == [
        ("staging", "succeeded", 0),
        ("staging", "succeeded", 0),
        ("conformed", "cancelled", 143),
    ]
