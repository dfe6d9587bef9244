"""Consumption by identity, not by clock (docs/cockroachdb.md, "Consumption by identity").

A staging pull whose commit lands while a conformed run is between its history model's read and its
bookkeeping, with a committed_at earlier than the run's start (``now()`` is the committing
transaction's start time, not its commit order), is neither read nor marked by that run, and the next
run processes it. Two connections besides the job interleave it, deterministically: the staging commit
is held open inside its transaction, and a row lock on the history's current version makes the history
model's upsert wait (after its validated model has read the pulls, before its post-hooks run) until the
commit has landed.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable

import psycopg
import pytest
from conformed_warehouse import Warehouse

from etl_staging import RawPullWriter

COLUMNS = ["order_id", "customer_id", "order_date", "ordered_at", "status", "currency", "updated_at"]
PLACED = [10, 1, "2026-01-03", "2026-01-03T10:00:00Z", "placed", "GBP", "2026-01-03T10:00:00Z"]
PAID = [10, 1, "2026-01-03", "2026-01-03T10:00:00Z", "paid", "GBP", "2026-01-04T09:00:00Z"]
LATE = [11, 2, "2026-01-05", "2026-01-05T10:00:00Z", "placed", "USD", "2026-01-05T10:00:00Z"]
WAIT_S = 300

HISTORY = (
    "select order_id, order_status, change_type, valid_from, valid_to, is_current, pull_id, run_id"
    " from conformed.sales_order_history order by order_id, valid_from"
)
CONSUMED = (
    "select pull_id, disposition, run_id from conformed.consumed_pulls"
    " where consumer = 'sales_order_history' order by run_id"
)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll an observable condition (a lock wait, a thread's progress) until it holds."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def blocked_by(warehouse: Warehouse, pid: int) -> list[str]:
    """The statements of the sessions waiting for a lock that session ``pid`` holds."""
    return [
        query
        for (query,) in warehouse.rows(
            "select query from pg_stat_activity where %s = any(pg_blocking_pids(pid))", (pid,)
        )
    ]


def run_while_a_pull_commits(
    warehouse: Warehouse, entity: str, rows: list[list[object]], *, mode: str, columns: list[str], lock: str
) -> uuid.UUID:
    """Run the conformed job while a pull of oltp.<entity> (``rows``) commits: the pull is written and
    its commit transaction begun before the job starts (so its committed_at, that transaction's now(),
    is earlier than the job's start), and it lands while the job's history upsert waits for the row
    lock ``lock`` (a SELECT ... FOR UPDATE) that a second connection holds: after the validated model
    has read the pulls, before the history's post-hooks mark them. Returns the late pull's id."""
    writer = RawPullWriter(
        warehouse.db,
        run_id="test-staging-late",
        job_id=None,
        source="oltp",
        entity=entity,
        mode=mode,
        watermark_before=None,
        write_behind=False,
    )
    late = writer.open()
    writer.add_batch(columns, rows)
    in_commit, land_commit = threading.Event(), threading.Event()
    staging_errors: list[BaseException] = []

    def hold_open(_conn: psycopg.Connection) -> None:
        in_commit.set()
        assert land_commit.wait(WAIT_S), "the staging commit was never released"

    def commit() -> None:
        try:
            writer.commit(watermark_after=None, also=hold_open)
        except BaseException as exc:  # reported below
            staging_errors.append(exc)

    staging = threading.Thread(target=commit, name="staging commit")
    staging.start()
    wait_for(in_commit.is_set, "the staging commit transaction")

    locker = psycopg.connect(warehouse.url)
    locker.execute(lock).fetchall()
    waiting: list[str] = []

    def history_waits() -> bool:
        waiting.extend(blocked_by(warehouse, locker.info.backend_pid))
        return bool(waiting)

    def interleave() -> None:
        try:
            wait_for(history_waits, "the history upsert to wait for the lock")
            land_commit.set()
            staging.join(WAIT_S)
        finally:
            land_commit.set()
            locker.rollback()

    interleaver = threading.Thread(target=interleave, name="interleave")
    interleaver.start()
    try:
        # In this thread: the job installs its signal handlers.
        assert warehouse.run() == 0
    finally:
        interleaver.join(WAIT_S)
        locker.close()
        staging.join(WAIT_S)
    assert not staging_errors, staging_errors
    assert waiting and all("_history" in query for query in waiting), waiting

    run_id = f"run-{warehouse.runs}"
    (started,) = warehouse.rows(
        "select started_at from ops.job_runs where zone = 'conformed' and run_id = %s", (run_id,)
    )[0]
    (status, committed) = warehouse.rows(
        "select status, committed_at from staging.pulls where pull_id = %s", (late,)
    )[0]
    assert status == "committed" and committed < started
    assert warehouse.rows("select count(*) from conformed.consumed_pulls where pull_id = %s", (late,)) == [
        (0,)
    ]
    return late


def skip_on_cockroachdb(warehouse: Warehouse) -> None:
    if "cockroachdb" in warehouse.rows("select version()")[0][0].lower():
        pytest.skip("the lock wait is observed through PostgreSQL's pg_blocking_pids")


def test_an_incremental_pull_committing_during_a_run_is_left_to_the_next_run(warehouse: Warehouse) -> None:
    skip_on_cockroachdb(warehouse)
    first = warehouse.pull("oltp", "orders", COLUMNS, [PLACED], mode="incremental")
    assert warehouse.run() == 0
    second = warehouse.pull("oltp", "orders", COLUMNS, [PAID], mode="incremental")

    late = run_while_a_pull_commits(
        warehouse,
        "orders",
        [LATE],
        mode="incremental",
        columns=COLUMNS,
        lock="select 1 from conformed.sales_order_history where order_id = 10 and is_current for update",
    )

    # Run 2 read and marked the second pull only; the late one is nobody's yet.
    assert warehouse.rows(CONSUMED) == [(first, "processed", "run-1"), (second, "processed", "run-2")]
    assert warehouse.rows(HISTORY) == [
        (10, "placed", "insert", utc(PLACED[6]), utc(PAID[6]), False, first, "run-1"),
        (10, "paid", "update", utc(PAID[6]), None, True, second, "run-2"),
    ]
    assert warehouse.rows("select order_id, order_status from conformed.sales_order") == [(10, "paid")]

    # Run 3 finds it in its snapshot and processes it.
    assert warehouse.run() == 0
    assert warehouse.rows(CONSUMED) == [
        (first, "processed", "run-1"),
        (second, "processed", "run-2"),
        (late, "processed", "run-3"),
    ]
    assert warehouse.rows(HISTORY) == [
        (10, "placed", "insert", utc(PLACED[6]), utc(PAID[6]), False, first, "run-1"),
        (10, "paid", "update", utc(PAID[6]), None, True, second, "run-2"),
        (11, "placed", "insert", utc(LATE[6]), None, True, late, "run-3"),
    ]
    assert warehouse.rows("select order_id, order_status from conformed.sales_order order by 1") == [
        (10, "paid"),
        (11, "placed"),
    ]
    # Each job listed the committed pulls it saw, and forgot the list when its build ended.
    assert warehouse.rows(
        "select run_id, (counts ->> 'pulls_in_snapshot')::int from ops.job_runs"
        " where zone = 'conformed' order by started_at"
    ) == [("run-1", 1), ("run-2", 2), ("run-3", 3)]
    assert warehouse.rows("select count(*) from conformed.run_pulls") == [(0,)]


def test_a_full_pull_committing_during_a_run_is_left_to_the_next_run(warehouse: Warehouse) -> None:
    """A full-pull entity processes the newest pull of the job's snapshot: the late pull, although the
    newest by committed_at when the history's bookkeeping runs, is neither processed nor supersedes the
    pull the run read."""
    skip_on_cockroachdb(warehouse)
    columns = ["product_id", "sku", "name", "category", "unit_price", "currency", "is_active", "updated_at"]

    def lamp(price: str, updated_at: str) -> list[object]:
        return [1, "A-1", "Lamp", "Home", price, "EUR", True, updated_at]

    first = warehouse.pull("oltp", "products", columns, [lamp("9.99", "2025-01-01T00:00:00Z")])
    assert warehouse.run() == 0
    second = warehouse.pull("oltp", "products", columns, [lamp("11.00", "2025-02-01T00:00:00Z")])

    late = run_while_a_pull_commits(
        warehouse,
        "products",
        [lamp("12.00", "2025-03-01T00:00:00Z")],
        mode="full",
        columns=columns,
        lock="select 1 from conformed.product_history where product_id = 1 and is_current for update",
    )
    consumed = (
        "select pull_id, disposition, run_id from conformed.consumed_pulls"
        " where consumer = 'product_history' order by run_id"
    )
    history = (
        "select unit_price::text, change_type, valid_from, valid_to, pull_id, run_id"
        " from conformed.product_history order by valid_from"
    )
    assert warehouse.rows(consumed) == [(first, "processed", "run-1"), (second, "processed", "run-2")]
    assert warehouse.rows(history) == [
        ("9.99", "insert", utc("2025-01-01T00:00:00Z"), utc("2025-02-01T00:00:00Z"), first, "run-1"),
        ("11.00", "update", utc("2025-02-01T00:00:00Z"), None, second, "run-2"),
    ]

    assert warehouse.run() == 0
    assert warehouse.rows(consumed) == [
        (first, "processed", "run-1"),
        (second, "processed", "run-2"),
        (late, "processed", "run-3"),
    ]
    assert warehouse.rows(history) == [
        ("9.99", "insert", utc("2025-01-01T00:00:00Z"), utc("2025-02-01T00:00:00Z"), first, "run-1"),
        ("11.00", "update", utc("2025-02-01T00:00:00Z"), utc("2025-03-01T00:00:00Z"), second, "run-2"),
        ("12.00", "update", utc("2025-03-01T00:00:00Z"), None, late, "run-3"),
    ]
    assert warehouse.rows("select unit_price::text from conformed.product") == [("12.00",)]
