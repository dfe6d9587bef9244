"""A job that meets a lock another session holds, or a statement that runs too long (issue 20, item 4):
a real `etl-conformed run` process against the embedded PostgreSQL, while a second psycopg session holds
``LOCK TABLE conformed.customer_history IN ACCESS EXCLUSIVE MODE``. The job logs who blocks it, ends
with the database exit code 5 (not 1) once ETL_LOCK_TIMEOUT_S (or ETL_STATEMENT_TIMEOUT_S) is up, and a
rerun after the lock is released leaves the same data as a clean run.

No timing is asserted: the subprocess timeout only tells "finished" from "hung"."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conformed_warehouse import CUSTOMER_COLUMNS, Warehouse
from fault_support import events as log_events

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
T0 = "2025-01-01T08:00:00Z"
FIRST = [
    [1, "alice@example.com", "Alice", "Smith", None, "germany", T0, T0],
    [2, "bob@example.com", "Bob", "Jones", None, "FR", T0, T0],
]
SECOND = [
    [1, "alice@example.com", "Alice", "Smith", None, "france", T0, "2025-01-03T08:00:00Z"],
    [3, "carol@example.com", "Carol", "Brown", None, "GBR", T0, T0],
]
#: what a run leaves, without what differs from warehouse to warehouse (pull ids, run ids, load times)
DATA = {
    "customer": "select customer_id, email, country_code, is_deleted from conformed.customer order by 1",
    # a delete's valid_from (and the valid_to it gives the version before) is its pull's commit time,
    # which differs between warehouses: named by the pull's place instead
    "history": """
        with commits as (
            select committed_at, 'commit of pull ' || row_number() over (order by committed_at) as label
            from staging.pulls where status = 'committed'
        )
        select
            history.customer_id, history.country_code, history.change_type, history.is_current,
            history.is_deleted,
            coalesce(valid_from_commit.label, history.valid_from::text),
            coalesce(valid_to_commit.label, history.valid_to::text)
        from conformed.customer_history as history
        left join commits as valid_from_commit on valid_from_commit.committed_at = history.valid_from
        left join commits as valid_to_commit on valid_to_commit.committed_at = history.valid_to
        order by history.customer_id, history.valid_from
    """,
    "consumed": "select count(*), min(disposition), max(disposition) from conformed.consumed_pulls",
}


def conformed_process(warehouse: Warehouse, run_id: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """`etl-conformed run` as its own process (as Control-M starts it), with ``settings`` as ETL_*."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ETL_")}
    env |= {
        "ETL_DATABASE_URL": warehouse.url,
        "ETL_DATA_DIR": str(warehouse.data_dir),
        "ETL_RUN_ID": run_id,
        **{f"ETL_{name.upper()}": value for name, value in settings.items()},
    }
    return subprocess.run(
        [str(BIN / "etl-conformed"), "run"], env=env, capture_output=True, text=True, timeout=600
    )


@contextmanager
def table_locked(url: str, table: str) -> Iterator[int]:
    """A second session holding an ACCESS EXCLUSIVE lock on ``table`` until the block ends; yields its
    backend pid."""
    with psycopg.connect(url, application_name="faults-test-blocker") as conn:
        conn.execute(f"lock table {table} in access exclusive mode")
        yield conn.info.backend_pid
        conn.rollback()


def data(warehouse: Warehouse) -> dict[str, list[tuple[Any, ...]]]:
    return {name: warehouse.rows(query) for name, query in DATA.items()}


@pytest.fixture
def control(
    db_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, list[tuple[Any, ...]]]:
    """The data of a clean run of both pulls, in a warehouse of its own."""
    clean = Warehouse(db_server.create_database(), tmp_path / "control", monkeypatch)
    clean.pull("oltp", "customers", CUSTOMER_COLUMNS, FIRST)
    assert clean.run() == 0
    clean.pull("oltp", "customers", CUSTOMER_COLUMNS, SECOND)
    assert clean.run() == 0
    return data(clean)


@pytest.fixture
def second_pull_waiting(warehouse: Warehouse) -> Warehouse:
    """A warehouse whose first pull is conformed and whose second waits for the next run."""
    warehouse.pull("oltp", "customers", CUSTOMER_COLUMNS, FIRST)
    assert warehouse.run() == 0
    warehouse.pull("oltp", "customers", CUSTOMER_COLUMNS, SECOND)
    return warehouse


def _job_row(warehouse: Warehouse, run_id: str) -> tuple[Any, ...]:
    [row] = warehouse.rows("select status, exit_code, error from ops.job_runs where run_id = %s", (run_id,))
    return row


def test_a_held_lock_is_logged_with_its_blocker_and_ends_the_job_with_exit_5(
    second_pull_waiting: Warehouse, control: dict[str, list[tuple[Any, ...]]]
) -> None:
    warehouse = second_pull_waiting
    with table_locked(warehouse.url, "conformed.customer_history") as blocker_pid:
        blocked = conformed_process(warehouse, "locked-1", lock_timeout_s="15", lock_wait_log_s="1")

    assert blocked.returncode == 5, blocked.stdout[-4000:] + blocked.stderr[-2000:]
    events = log_events(blocked.stdout)
    waits = [e for e in events if "waited" in e.get("message", "") and "for a lock" in e.get("message", "")]
    assert waits, f"no lock wait logged:\n{blocked.stdout[-4000:]}"
    assert waits[0]["blocker"]["pid"] == blocker_pid
    assert waits[0]["blocker"]["application"] == "faults-test-blocker"
    assert "AccessExclusiveLock" in waits[0]["message"] or waits[0]["lock_wait"]["relation"]
    assert "lock table conformed.customer_history" in (waits[0]["blocker"]["statement"] or "")
    failed = [e for e in events if e.get("level") == "ERROR"]
    assert failed and "ETL_LOCK_TIMEOUT_S" in failed[-1]["message"], blocked.stdout[-4000:]
    status, exit_code, error = _job_row(warehouse, "locked-1")
    assert (status, exit_code) == ("failed", 5)
    assert "lock timeout" in error

    # Released: the rerun consumes the waiting pull, and the data equals a clean run's.
    rerun = conformed_process(warehouse, "locked-2")
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    assert data(warehouse) == control


def test_a_statement_timeout_ends_the_job_with_exit_5(
    second_pull_waiting: Warehouse, control: dict[str, list[tuple[Any, ...]]]
) -> None:
    """No lock timeout: the wait is a statement that runs too long, stopped by ETL_STATEMENT_TIMEOUT_S
    (SQLSTATE 57014)."""
    warehouse = second_pull_waiting
    with table_locked(warehouse.url, "conformed.customer_history"):
        blocked = conformed_process(
            warehouse, "slow-1", lock_timeout_s="0", statement_timeout_s="6", lock_wait_log_s="1"
        )

    assert blocked.returncode == 5, blocked.stdout[-4000:] + blocked.stderr[-2000:]
    status, exit_code, error = _job_row(warehouse, "slow-1")
    assert (status, exit_code) == ("failed", 5)
    assert "statement timeout" in error and "ETL_STATEMENT_TIMEOUT_S" in error

    rerun = conformed_process(warehouse, "slow-2")
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    assert data(warehouse) == control
