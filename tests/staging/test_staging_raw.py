"""Raw pull storage on a real database: visibility on commit, failure, cleanup and retention."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from typing import Any

import orjson
import pytest

from etl_shared import Database, apply_migrations
from etl_staging import RawPullWriter, apply_retention, clean_abandoned_pulls, encode_batch, read_watermark
from etl_staging._raw import delete_pull_data

pytestmark = pytest.mark.integration

COMMITTED = "select pull_id from staging.pulls where source = %s and entity = %s and status = 'committed'"


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url, application_name="etl-test")
    apply_migrations(database)
    return database


def query(db: Database, statement: str, params: Any = ()) -> list[tuple[Any, ...]]:
    with db.connect(autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


def pull_row(db: Database, pull_id: uuid.UUID | str) -> dict[str, Any]:
    with db.connect(autocommit=True) as conn:
        cur = conn.execute("select * from staging.pulls where pull_id = %s", (pull_id,))
        row = cur.fetchone()
        assert row is not None
        return dict(zip([d.name for d in cur.description or []], row, strict=True))


def stored(db: Database, pull_id: uuid.UUID | str) -> tuple[int, int]:
    batches = query(db, "select count(*) from staging.pull_batches where pull_id = %s", (pull_id,))[0][0]
    payloads = query(db, "select count(*) from staging.pull_payloads where pull_id = %s", (pull_id,))[0][0]
    return int(batches), int(payloads)


def writer(db: Database, source: str = "shop", entity: str = "orders", **kwargs: Any) -> RawPullWriter:
    return RawPullWriter(
        db,
        run_id=kwargs.pop("run_id", "run-1"),
        job_id=None,
        source=source,
        entity=entity,
        mode=kwargs.pop("mode", "full"),
        watermark_before=kwargs.pop("watermark_before", None),
        # Synchronous writes: these tests look at the database in the middle of a pull.
        write_behind=kwargs.pop("write_behind", False),
        **kwargs,
    )


def committed_pull(db: Database, n_rows: int = 2, source: str = "shop", entity: str = "orders") -> uuid.UUID:
    w = writer(db, source, entity)
    w.open()
    w.add_batch(["id"], [[i] for i in range(n_rows)])
    w.add_payload("page-1", "application/json", b"[]")
    w.commit(watermark_after=None)
    return w.pull_id


def test_pull_is_invisible_until_commit(db: Database) -> None:
    w = writer(db, mode="incremental", watermark_before="2024-01-01")
    pull_id = w.open()

    w.add_payload("orders.csv#1", "text/csv", b"id,v\n1,a\n")
    w.add_payload("orders.csv#2", "text/csv", b"2,b\n3,c\n")
    w.add_batch(["id", "v"], [[1, "a"], [2, "b"]])
    w.add_batch(["id", "v"], [[3, "c"]])
    w.add_batch(["id", "v"], [])  # an empty batch is not stored

    row = pull_row(db, pull_id)
    assert row["status"] == "running"
    # Batch transactions are insert-only (no conflicts between parallel pulls): the pull row gets its
    # counts at commit; while running, the batches themselves are the progress.
    assert (row["batch_count"], row["record_count"]) == (0, 0)
    with db.connect() as conn:
        progress = conn.execute(
            "select count(*), sum(record_count) from staging.pull_batches where pull_id = %s", (pull_id,)
        ).fetchone()
    assert progress == (2, 3)
    assert query(db, COMMITTED, ("shop", "orders")) == []
    assert stored(db, pull_id) == (2, 2)

    summary = w.commit(watermark_after="2024-02-01", metadata={"files": ["orders.csv"]})

    row = pull_row(db, pull_id)
    assert query(db, COMMITTED, ("shop", "orders")) == [(pull_id,)]
    assert row["status"] == "committed"
    assert row["committed_at"] is not None
    assert (row["record_count"], row["batch_count"], row["payload_count"]) == (3, 2, 2)
    assert row["byte_count"] == len(b"id,v\n1,a\n") + len(b"2,b\n3,c\n")
    assert (row["watermark_before"], row["watermark_after"]) == ("2024-01-01", "2024-02-01")
    assert row["mode"] == "incremental"
    assert row["metadata"] == {"files": ["orders.csv"]}
    expected = hashlib.sha256(
        encode_batch(["id", "v"], [[1, "a"], [2, "b"]]) + encode_batch(["id", "v"], [[3, "c"]])
    )
    assert row["checksum"] == summary.checksum == expected.hexdigest()
    assert (summary.records, summary.batches, summary.payloads, summary.bytes) == (3, 2, 2, row["byte_count"])
    assert summary.deleted_pulls == []
    assert read_watermark(db, "shop", "orders") == "2024-02-01"
    assert query(db, "select value, pull_id from staging.watermarks") == [("2024-02-01", pull_id)]

    data = query(db, "select batch_no, record_count, data from staging.pull_batches order by batch_no")
    assert data == [
        (1, 2, {"columns": ["id", "v"], "rows": [[1, "a"], [2, "b"]]}),
        (2, 1, {"columns": ["id", "v"], "rows": [[3, "c"]]}),
    ]
    payloads = query(
        db,
        "select seq, name, content_type, byte_count, checksum, body from staging.pull_payloads order by seq",
    )
    assert payloads[0][:4] == (1, "orders.csv#1", "text/csv", 9)
    assert payloads[0][4] == hashlib.sha256(b"id,v\n1,a\n").hexdigest()
    assert bytes(payloads[1][5]) == b"2,b\n3,c\n"


def test_nested_values_are_kept_as_json(db: Database) -> None:
    w = writer(db)
    w.open()
    w.add_batch(["id", "doc"], [[1, {"a": [1, {"b": None}]}], [2, None]])
    w.commit(watermark_after=None)

    (data,) = query(db, "select data from staging.pull_batches where pull_id = %s", (w.pull_id,))[0]
    assert data == {"columns": ["id", "doc"], "rows": [[1, {"a": [1, {"b": None}]}], [2, None]]}


def test_watermark_advances_with_each_commit(db: Database) -> None:
    assert read_watermark(db, "shop", "orders") is None
    for value in ("10", "20"):
        w = writer(db, mode="incremental", watermark_before=read_watermark(db, "shop", "orders"))
        w.open()
        w.add_batch(["id"], [[value]])
        w.commit(watermark_after=value)
    assert read_watermark(db, "shop", "orders") == "20"
    assert read_watermark(db, "shop", "customers") is None


def test_fail_marks_failed_and_removes_data(db: Database) -> None:
    w = writer(db)
    pull_id = w.open()
    w.add_batch(["id"], [[1]])
    w.add_batch(["id"], [[2]])
    w.add_payload("p", "text/plain", b"x")

    w.fail("SourceFatalError: broken file")

    row = pull_row(db, pull_id)
    assert row["status"] == "failed"
    assert row["error"] == "SourceFatalError: broken file"
    assert stored(db, pull_id) == (0, 0)
    assert query(db, COMMITTED, ("shop", "orders")) == []
    assert read_watermark(db, "shop", "orders") is None


def test_commit_after_cleanup_is_refused(db: Database) -> None:
    w = writer(db)
    w.open()
    w.add_batch(["id"], [[1]])
    clean_abandoned_pulls(db, "shop", "orders")

    with pytest.raises(RuntimeError, match="no longer running"):
        w.commit(watermark_after="1")
    assert read_watermark(db, "shop", "orders") is None


def test_clean_abandoned_pulls_removes_what_a_killed_pull_left(db: Database) -> None:
    good = committed_pull(db)
    other_entity = writer(db, entity="customers")
    other_entity.open()
    other_entity.add_batch(["id"], [[1]])
    left_over = writer(db)
    left_over.open()
    left_over.add_batch(["id"], [[1]])
    left_over.add_batch(["id"], [[2]])
    left_over.add_payload("p", "text/plain", b"x")
    # The job died here: no commit, no fail.

    cleaned = clean_abandoned_pulls(db, "shop", "orders")

    assert cleaned == [str(left_over.pull_id)]
    row = pull_row(db, left_over.pull_id)
    assert row["status"] == "failed"
    assert "abandoned" in row["error"]
    assert (row["batch_count"], row["payload_count"]) == (0, 0)
    assert stored(db, left_over.pull_id) == (0, 0)
    assert pull_row(db, good)["status"] == "committed"
    assert stored(db, good) == (1, 1)
    assert pull_row(db, other_entity.pull_id)["status"] == "running"
    assert stored(db, other_entity.pull_id) == (1, 0)
    assert clean_abandoned_pulls(db, "shop", "orders") == []


def test_clean_abandoned_pulls_finishes_a_failed_pull_whose_data_remained(db: Database) -> None:
    w = writer(db)
    w.open()
    w.add_batch(["id"], [[1]])
    db.transaction(
        lambda conn: conn.execute(
            "update staging.pulls set status = 'failed', error = 'boom' where pull_id = %s", (w.pull_id,)
        ),
    )

    assert clean_abandoned_pulls(db, "shop", "orders") == [str(w.pull_id)]
    row = pull_row(db, w.pull_id)
    assert (row["status"], row["error"], row["batch_count"]) == ("failed", "boom", 0)
    assert stored(db, w.pull_id) == (0, 0)


def test_retention_keeps_the_newest_three_committed_pulls(db: Database) -> None:
    pulls = [committed_pull(db) for _ in range(5)]
    failed = writer(db)
    failed.open()
    failed.fail("boom")

    remaining = {row[0] for row in query(db, COMMITTED, ("shop", "orders"))}
    assert remaining == set(pulls[2:])
    for old in pulls[:2]:
        assert query(db, "select 1 from staging.pulls where pull_id = %s", (old,)) == []
        assert stored(db, old) == (0, 0)
    for kept in pulls[2:]:
        assert stored(db, kept) == (1, 1)
    assert pull_row(db, failed.pull_id)["status"] == "failed"
    # Retention is per source entity.
    other = committed_pull(db, entity="customers")
    assert apply_retention(db, "shop", "customers") == []
    assert pull_row(db, other)["status"] == "committed"


def test_commit_reports_the_pulls_retention_deleted(db: Database) -> None:
    pulls = [committed_pull(db) for _ in range(3)]
    w = writer(db)
    w.open()
    w.add_batch(["id"], [[1]])

    summary = w.commit(watermark_after=None)

    assert summary.deleted_pulls == [str(pulls[0])]


def test_apply_retention_directly(db: Database) -> None:
    pulls = [committed_pull(db) for _ in range(3)]

    assert apply_retention(db, "shop", "orders") == []
    assert apply_retention(db, "shop", "orders", keep=1) == [str(pulls[1]), str(pulls[0])]
    assert query(db, COMMITTED, ("shop", "orders")) == [(pulls[2],)]
    assert stored(db, pulls[0]) == stored(db, pulls[1]) == (0, 0)


@pytest.mark.parametrize("keep", [0, 1, 3])
def test_retention_never_deletes_the_only_good_pull(db: Database, keep: int) -> None:
    only = committed_pull(db)
    failed = writer(db)
    failed.open()
    failed.fail("boom")

    assert apply_retention(db, "shop", "orders", keep=keep) == []
    assert query(db, COMMITTED, ("shop", "orders")) == [(only,)]
    assert stored(db, only) == (1, 1)


def test_delete_pull_data_loops_over_small_transactions(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("etl_staging._raw.DELETE_BATCH_ROWS", 3)
    w = writer(db)
    w.open()
    for i in range(10):
        w.add_batch(["id"], [[i]])
    for i in range(7):
        w.add_payload(f"p{i}", "text/plain", b"x")
    keep = committed_pull(db, entity="customers")
    assert stored(db, w.pull_id) == (10, 7)

    delete_pull_data(db, w.pull_id)

    assert stored(db, w.pull_id) == (0, 0)
    assert stored(db, keep) == (1, 1)


def test_delete_pull_data_with_an_exact_multiple(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("etl_staging._raw.DELETE_BATCH_ROWS", 2)
    w = writer(db)
    w.open()
    for i in range(6):
        w.add_batch(["id"], [[i]])

    delete_pull_data(db, str(w.pull_id))

    assert stored(db, w.pull_id) == (0, 0)


def test_encode_batch_is_list_of_arrays() -> None:
    assert orjson.loads(encode_batch(["a", "b"], [[1, "x"], [None, [1]]])) == {
        "columns": ["a", "b"],
        "rows": [[1, "x"], [None, [1]]],
    }
    with pytest.raises(TypeError):
        encode_batch(["a"], [[object()]])


def test_write_behind_writes_every_batch_in_order_by_commit(db: Database) -> None:
    w = writer(db, write_behind=True)
    w.open()
    for i in range(7):
        w.add_batch(["id"], [[i], [i + 100]])
    w.add_payload("p", "text/plain", b"x")
    w.flush()
    assert stored(db, w.pull_id) == (7, 1)
    w.add_batch(["id"], [[7]])
    summary = w.commit(watermark_after=None)
    assert (summary.batches, summary.records) == (8, 15)
    batch_numbers = query(
        db, "select batch_no from staging.pull_batches where pull_id = %s order by 1", (w.pull_id,)
    )
    assert [row[0] for row in batch_numbers] == list(range(1, 9))


def test_write_behind_writes_on_two_connections_at_once_and_closes_them(db: Database) -> None:
    """Two writer threads, each on its own connection, write at the same time while the caller goes on;
    batches may commit out of order but every number is stored once; the commit closes both."""
    w = writer(db, write_behind=True, writers=2)
    w.open()
    backends: set[int] = set()
    both = threading.Barrier(2, timeout=20)

    def meet(conn: Any) -> None:
        backends.add(conn.execute("select pg_backend_pid()").fetchone()[0])
        both.wait()  # passes only when the two writers are in a transaction at the same moment

    w._submit(meet, "first")
    w._submit(meet, "second")
    for i in range(40):
        w.add_batch(["id"], [[i]])
    summary = w.commit(watermark_after=None)
    assert len(backends) == 2
    assert (summary.batches, summary.records) == (40, 40)
    rows = query(
        db,
        "select batch_no, data from staging.pull_batches where pull_id = %s order by batch_no",
        (w.pull_id,),
    )
    assert [row[0] for row in rows] == list(range(1, 41))
    assert [row[1]["rows"] for row in rows] == [[[i]] for i in range(40)]
    for _ in range(100):  # a closed connection's backend exits a moment later
        alive = query(db, "select count(*) from pg_stat_activity where pid = any(%s)", (list(backends),))
        if alive == [(0,)]:
            break
        time.sleep(0.05)
    assert alive == [(0,)]


def test_write_behind_raises_the_first_failure_of_either_writer(db: Database) -> None:
    w = writer(db, write_behind=True, writers=2)
    w.open()
    w.add_batch(["id"], [[1]])
    with pytest.raises(TypeError):
        w.add_batch(["id"], [[object()]])  # encoded on the caller's thread: refused at once
    w.flush()
    seen: list[str] = []

    def failing(conn: Any) -> None:
        seen.append("ran")
        raise RuntimeError("the batch transaction failed")

    w._submit(failing, "a failing transaction")
    with pytest.raises(RuntimeError, match="the batch transaction failed"):
        w.flush()
    assert seen == ["ran"]
