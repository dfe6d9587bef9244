"""Dead jobs are seen: a SIGKILLed job's `running` row is marked abandoned by `etl status` or the
next job of its zone, and `etl status --check` fails on it, as on a job running past its SLA; a live
job is never taken for a dead one."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import fault_support
import psycopg
import pytest
from fault_support import ZONES, dbt_running, differences, fingerprint, job, messages, rows, start, wait_for

staged = fault_support.staged
control = fault_support.control
warehouse = fault_support.warehouse

pytestmark = pytest.mark.e2e


def _status(env: dict[str, str], *args: str) -> tuple[int, dict]:
    result = job("etl", "status", "--check", "--json", *args, env=env)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout)


def _killed(zone: str, env: dict[str, str], url: str, log: Path) -> int:
    """Start a zone job, SIGKILL it while dbt builds; its pid."""
    process = start(f"etl-{zone}", "run", env=env, log=log)
    wait_for(dbt_running(url), f"dbt builds the {zone} zone", process=process)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    return process.pid


def test_a_killed_semantic_job_fails_the_check_until_a_rerun(
    staged: fault_support.Staged, control: dict, warehouse: str, tmp_path: Path
) -> None:
    env = staged.env(warehouse, tmp_path / "data")
    built = job("etl-conformed", "run", env=env)
    assert built.returncode == 0, built.stdout[-3000:]
    pid = _killed("semantic", env, warehouse, tmp_path / "killed.log")
    assert rows(warehouse, "select status from ops.job_runs where zone = 'semantic'") == [("running",)]

    code, report = _status(env)
    assert code == 1
    assert report["healthy"] is False and report["abandoned_zones"] == ["semantic"]
    semantic = report["zones"]["semantic"]
    assert semantic["status"] == "abandoned"
    assert semantic["error_line"].startswith(f"abandoned: its process (pid {pid} on ")
    text = job("etl", "status", "--check", env=env)
    assert text.returncode == 1
    assert "ABANDONED" in text.stdout and "semantic job abandoned (its process died)" in text.stdout

    rerun = job("etl-semantic", "run", env=env)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert not differences(fingerprint(warehouse, ZONES), control)
    code, report = _status(env)
    assert (code, report["abandoned_zones"]) == (0, [])


def test_a_job_of_a_lost_host_is_taken_over_once_its_lease_expires(
    staged: fault_support.Staged, control: dict, warehouse: str, tmp_path: Path
) -> None:
    """A job whose host died: nothing on this host can tell its process is gone, only that its lease
    was not renewed. (SIGKILLed here, then its row and lease made another host's and left to expire.)"""
    env = staged.env(warehouse, tmp_path / "data")
    _killed("conformed", env, warehouse, tmp_path / "killed.log")
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(
            "update ops.job_runs set host = 'lost-host', lease_expires_at = now() - interval '1 second'"
            " where zone = 'conformed'"
        )
        conn.execute(
            "update ops.locks set holder = 'lost-host' || substr(holder, strpos(holder, ':')),"
            " expires_at = now() - interval '1 second' where name like 'zone:conformed:%'"
        )

    rerun = job("etl-conformed", "run", env={**env, "ETL_LEASE_WAIT_S": "0"})
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    said = messages(rerun.stdout)
    assert any("taken over from lost-host:" in m for m in said), said
    assert any("is marked abandoned: its lease expired" in m for m in said), said
    assert [
        s
        for (s,) in rows(
            warehouse, "select status from ops.job_runs where zone = 'conformed' order by started_at"
        )
    ] == [
        "abandoned",
        "succeeded",
    ]
    assert job("etl-semantic", "run", env=env).returncode == 0
    assert not differences(fingerprint(warehouse, ZONES), control)


def test_a_live_job_past_its_sla_fails_the_check_and_is_not_abandoned(
    staged: fault_support.Staged, warehouse: str, tmp_path: Path
) -> None:
    env = staged.env(warehouse, tmp_path / "data")
    process = start("etl-conformed", "run", env=env, log=tmp_path / "live.log")
    try:
        wait_for(dbt_running(warehouse), "dbt builds the conformed zone", process=process)
        process.send_signal(signal.SIGSTOP)  # alive, slow: its lease (a minute) still runs
        try:
            code, report = _status({**env, "ETL_DURATION_SLA_S": "0.001"})
            _, relaxed = _status(env)  # the zone's default SLA, two hours
        finally:
            process.send_signal(signal.SIGCONT)
    finally:
        assert process.wait(timeout=600) == 0, (tmp_path / "live.log").read_text()[-3000:]

    assert code == 1 and report["healthy"] is False
    assert report["abandoned_zones"] == []
    (overdue,) = report["overdue_jobs"]
    assert (overdue["zone"], overdue["sla_s"]) == ("conformed", 0.001)
    assert report["zones"]["conformed"]["status"] == "running"
    assert relaxed["overdue_jobs"] == [] and relaxed["zones"]["conformed"]["status"] == "running"
    assert rows(warehouse, "select status from ops.job_runs where zone = 'conformed'") == [("succeeded",)]
