"""One run of a dbt zone at a time (per domain): a second job waits for the lease, names who holds it
and since when, then exits 5 having written nothing; a dead holder's lease is taken over at once."""

from __future__ import annotations

import signal
from pathlib import Path

import fault_support
import pytest
from fault_support import ZONES, differences, fingerprint, job, lease_held, messages, rows, start, wait_for

staged = fault_support.staged
control = fault_support.control
warehouse = fault_support.warehouse

pytestmark = pytest.mark.e2e


def _job_rows(url: str, zone: str) -> list[tuple[str, int | None]]:
    return [
        (status, code)
        for status, code in rows(
            url, "select status, exit_code from ops.job_runs where zone = %s order by started_at", (zone,)
        )
    ]


@pytest.mark.parametrize("zone", ["conformed", "semantic"])
def test_a_second_run_waits_then_exits_5_having_written_nothing(
    zone: str, staged: fault_support.Staged, control: dict, warehouse: str, tmp_path: Path
) -> None:
    env = staged.env(warehouse, tmp_path / "data")
    if zone == "semantic":
        built = job("etl-conformed", "run", env=env)
        assert built.returncode == 0, built.stdout[-3000:]
    before = fingerprint(warehouse)
    jobs_before = _job_rows(warehouse, zone)

    first = start(f"etl-{zone}", "run", env=env, log=tmp_path / "first.log")
    try:
        wait_for(lease_held(warehouse, zone), f"the first {zone} job holds its lease", process=first)
        # Paused, the first job still holds its lease (alive, not renewing: ETL_LEASE_S is a minute):
        # the second must wait for it, whenever it starts, and give up.
        first.send_signal(signal.SIGSTOP)
        try:
            second = job(f"etl-{zone}", "run", env={**env, "ETL_LEASE_WAIT_S": "1"})
        finally:
            first.send_signal(signal.SIGCONT)
    finally:
        assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]

    assert second.returncode == 5, second.stdout[-3000:] + second.stderr[-3000:]
    said = messages(second.stdout)
    waiting = [m for m in said if m.startswith(f"lock zone:{zone}:") and " held by " in m and " since " in m]
    assert waiting, said
    (gave_up,) = [m for m in said if m.startswith(f"job {zone} did not start (exit 5)")]
    assert "another job holds the lease" in gave_up and "wrote nothing" in gave_up
    assert not any("killed?" in m for m in said)

    # The loser wrote nothing: one job row more (the winner's, succeeded), and the data is the
    # winner's, which is a clean run's.
    assert _job_rows(warehouse, zone) == [*jobs_before, ("succeeded", 0)]
    built = ("conformed",) if zone == "conformed" else ZONES
    after = fingerprint(warehouse, built)
    assert not differences(after, {t: v for t, v in control.items() if t.startswith(built)})
    assert rows(
        warehouse, "select count(*) from ops.locks where name like 'zone:%%' and holder is not null"
    ) == [(0,)]
    assert before != fingerprint(warehouse)  # the winner built: the loser's nothing is not an empty run


def test_the_lease_of_a_killed_job_is_taken_over(
    staged: fault_support.Staged, control: dict, warehouse: str, tmp_path: Path
) -> None:
    env = staged.env(warehouse, tmp_path / "data")
    first = start("etl-conformed", "run", env=env, log=tmp_path / "first.log")
    wait_for(lease_held(warehouse, "conformed"), "the conformed job holds its lease", process=first)
    wait_for(fault_support.dbt_running(warehouse), "dbt builds", process=first)
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=60) == -signal.SIGKILL

    # Its lease is still marked held, but its process is gone: the next job takes it at once, even
    # with no wait allowed, and marks the killed job's row abandoned.
    rerun = job("etl-conformed", "run", env={**env, "ETL_LEASE_WAIT_S": "0"})
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    said = messages(rerun.stdout)
    assert any(m.startswith("lease zone:conformed:") and "taken over from" in m for m in said), said
    assert any("is marked abandoned: its process" in m for m in said), said
    assert any("building every model: the previous conformed job was abandoned" in m for m in said), said
    assert _job_rows(warehouse, "conformed") == [("abandoned", None), ("succeeded", 0)]

    semantic = job("etl-semantic", "run", env=env)
    assert semantic.returncode == 0, semantic.stdout[-3000:]
    assert not differences(fingerprint(warehouse), control)
