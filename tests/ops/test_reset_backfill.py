"""`etl-staging reset` and backfill pulls (`etl-staging run --backfill-from/--backfill-to`), against a
real warehouse, a real source database and a real HTTP server on loopback."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import ops_support
import psycopg
import pytest
from ops_support import rows, staging
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

ops_env = ops_support.ops_env
source_url = ops_support.source_url  # the shared fixtures

pytestmark = pytest.mark.integration


def committed(url: str, entity: str) -> list[tuple[Any, ...]]:
    return rows(
        url,
        "select record_count, mode, backfill_from, backfill_to, watermark_before, watermark_after"
        " from staging.pulls where status = 'committed' and entity = %s order by committed_at",
        (entity,),
    )


def records(url: str, pull_id: Any) -> list[list[Any]]:
    data = rows(url, "select data from staging.pull_batches where pull_id = %s order by batch_no", (pull_id,))
    return [row for (batch,) in data for row in batch["rows"]]


def watermark(url: str, entity: str) -> str | None:
    found = rows(url, "select value from staging.watermarks where entity = %s", (entity,))
    return found[0][0] if found else None


def test_backfill_of_a_database_entity_keeps_the_watermark(
    ops_env: str, source_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        staging("run", "--source", "shop", "--entity", "orders", run_id="first", monkeypatch=monkeypatch) == 0
    )
    stored = watermark(ops_env, "orders")
    assert stored is not None and stored.startswith("2024-01-06")
    # The source corrects two old orders without touching their cursor.
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("update shop.orders set amount = 99 where order_id in (2, 3)")
    monkeypatch.setenv("ETL_OPERATOR", "alice")

    code = staging(
        "run",
        "--source",
        "shop",
        "--entity",
        "orders",
        "--backfill-from",
        "2024-01-03",
        "--backfill-to",
        "2024-01-04",
        run_id="bf",
        monkeypatch=monkeypatch,
    )

    assert code == 0
    assert watermark(ops_env, "orders") == stored  # untouched
    first, backfill = committed(ops_env, "orders")
    assert first[:4] == (5, "incremental", None, None)
    count, mode, start, end, before, after = backfill
    assert (count, mode) == (2, "incremental")
    assert (start.isoformat(), end.isoformat()) == ("2024-01-03T00:00:00+00:00", "2024-01-05T00:00:00+00:00")
    assert before == stored and after.startswith("2024-01-04")
    (pull_id,) = rows(ops_env, "select pull_id from staging.pulls where backfill_from is not null")[0]
    assert [(r[0], r[1]) for r in records(ops_env, pull_id)] == [(2, "99.00"), (3, "99.00")]
    ((job_name, status),) = rows(ops_env, "select job_name, status from ops.job_runs where run_id = 'bf'")
    assert (job_name, status) == ("staging:shop:orders:backfill", "succeeded")
    ((action, source, entity, actor, run_id, details),) = rows(
        ops_env, "select action, source, entity, actor, run_id, details from ops.operator_actions"
    )
    assert (action, source, entity, actor, run_id) == ("backfill", "shop", "orders", "alice", "bf")
    assert details["pull_id"] == str(pull_id) and details["records"] == 2
    assert details["watermark_kept"] == stored

    # The next regular pull carries on from the stored watermark: nothing new.
    assert (
        staging("run", "--source", "shop", "--entity", "orders", run_id="next", monkeypatch=monkeypatch) == 0
    )
    assert committed(ops_env, "orders")[-1][:4] == (0, "incremental", None, None)
    assert watermark(ops_env, "orders") == stored


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "shop", "--entity", "customers"], "cannot backfill shop.customers: pulled whole"),
        (["--source", "shop"], "cannot backfill shop.customers: pulled whole"),
        (["--source", "web"], "cannot backfill web.events"),
    ],
)
def test_backfill_of_an_entity_pulled_whole_exits_2(
    ops_env: str, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = staging(
        "run",
        *args,
        "--backfill-from",
        "2024-01-01",
        "--backfill-to",
        "2024-01-02",
        run_id="x",
        monkeypatch=monkeypatch,
    )

    assert code == 2
    ((status, exit_code, error),) = rows(ops_env, "select status, exit_code, error from ops.job_runs")
    assert (status, exit_code) == ("failed", 2)
    assert message in error
    assert rows(ops_env, "select count(*) from staging.pulls") == [(0,)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--source", "shop", "--backfill-from", "2024-01-01"],
            "needs both --backfill-from and --backfill-to",
        ),
        (["--backfill-from", "2024-01-01", "--backfill-to", "2024-01-02"], "needs --source"),
        (
            ["--source", "shop", "--backfill-from", "2024-01-05", "--backfill-to", "2024-01-01"],
            "is not before",
        ),
        (
            ["--source", "shop", "--backfill-from", "yesterday", "--backfill-to", "2024-01-01"],
            "is not a date",
        ),
    ],
)
def test_backfill_usage_errors_exit_2(
    ops_env: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert staging("run", *args) == 2
    assert message in capsys.readouterr().err


def test_backfill_of_a_rest_entity_sends_the_range_and_keeps_the_watermark(
    ops_env: str, tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [{"id": i, "updated_at": f"2024-03-0{i}T12:00:00Z"} for i in range(1, 8)]
    seen: list[dict[str, str]] = []

    def handler(request: Request) -> Response:
        seen.append(dict(request.args))
        since = request.args.get("since")
        chosen = [item for item in items if since is None or item["updated_at"] >= since]
        return Response(__import__("json").dumps({"data": chosen}), content_type="application/json")

    httpserver.expect_request("/api/items").respond_with_handler(handler)
    sources = tmp_path / "rest.yml"
    sources.write_text(
        f"""
sources:
  - name: api
    kind: rest
    connection: {{base_url: "{httpserver.url_for("/api")}", timeout_s: 5, max_retries: 0}}
    entities:
      - name: items
        path: /items
        records_path: data
        incremental: {{param: since, until_param: until, cursor_field: updated_at}}
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("ETL_SOURCES_FILE", str(sources))
    assert staging("run", run_id="r1", monkeypatch=monkeypatch) == 0
    assert watermark(ops_env, "items") == "2024-03-07T12:00:00Z"

    code = staging(
        "run",
        "--source",
        "api",
        "--backfill-from",
        "2024-03-02",
        "--backfill-to",
        "2024-03-03T12:00:00+00:00",
        run_id="bf",
        monkeypatch=monkeypatch,
    )

    assert code == 0
    assert seen[-1] == {"since": "2024-03-02T00:00:00Z", "until": "2024-03-03T12:00:00Z"}
    (pull_id,) = rows(ops_env, "select pull_id from staging.pulls where backfill_from is not null")[0]
    # The API ignores `until`: the records from the end of the range on are dropped (the end is excluded).
    assert records(ops_env, pull_id) == [[2, "2024-03-02T12:00:00Z"]]
    assert watermark(ops_env, "items") == "2024-03-07T12:00:00Z"
    # The regular pull asks from the stored watermark again.
    assert staging("run", run_id="r2", monkeypatch=monkeypatch) == 0
    assert seen[-1] == {"since": "2024-03-07T12:00:00Z"}


def _pull_state(url: str) -> dict[str, Any]:
    return {
        "pulls": rows(url, "select source, entity, count(*) from staging.pulls group by 1, 2 order by 1, 2"),
        "batches": rows(url, "select count(*) from staging.pull_batches")[0][0],
        "payloads": rows(url, "select count(*) from staging.pull_payloads")[0][0],
        "watermarks": rows(url, "select source, entity from staging.watermarks order by 1, 2"),
        "loaded_files": rows(url, "select count(*) from staging.loaded_files")[0][0],
    }


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_reset_clears_watermark_and_pulls_audited_and_the_next_pull_is_full(
    ops_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert staging("run", run_id="a", monkeypatch=monkeypatch) == 0
    assert staging("run", run_id="b", monkeypatch=monkeypatch) == 0
    before = _pull_state(ops_env)
    assert before["pulls"] == [("shop", "customers", 2), ("shop", "orders", 2), ("web", "events", 2)]
    monkeypatch.setenv("ETL_OPERATOR", "bob")

    assert (
        staging(
            "reset",
            "--source",
            "shop",
            "--entity",
            "orders",
            "--yes",
            run_id="reset-1",
            monkeypatch=monkeypatch,
        )
        == 0
    )

    out = capsys.readouterr()
    assert "shop.orders: 2 pull(s) (2 committed, 3 batches, 0 payloads), watermark 2024-01-06" in out.out
    after = _pull_state(ops_env)
    assert after["pulls"] == [("shop", "customers", 2), ("web", "events", 2)]
    assert after["watermarks"] == [("shop", "customers"), ("web", "events")]
    assert after["batches"] == before["batches"] - 3
    ((action, source, entity, actor, host, run_id, details),) = rows(
        ops_env, "select action, source, entity, actor, host, run_id, details from ops.operator_actions"
    )
    assert (action, source, entity, actor, run_id) == ("reset", "shop", "orders", "bob", "reset-1")
    assert host
    assert details["pulls"] == 2 and details["committed_pulls"] == 2 and details["batches"] == 3
    assert details["watermark"].startswith("2024-01-06") and len(details["pull_ids"]) == 2

    # The next pull of orders is a full first pull again.
    assert staging("run", "--source", "shop", "--entity", "orders", run_id="c", monkeypatch=monkeypatch) == 0
    assert committed(ops_env, "orders") == [
        (5, "incremental", None, None, None, committed(ops_env, "orders")[0][5])
    ]

    # A whole source, every entity (with its loaded-file records).
    assert staging("reset", "--source", "web", "--yes") == 0
    assert _pull_state(ops_env)["pulls"] == [("shop", "customers", 2), ("shop", "orders", 1)]
    assert rows(ops_env, "select count(*) from ops.operator_actions where action = 'reset'") == [(2,)]


def test_reset_refuses_without_yes_when_not_interactive(
    ops_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert staging("run", "--source", "shop", run_id="a", monkeypatch=monkeypatch) == 0
    before = _pull_state(ops_env)
    monkeypatch.setattr("sys.stdin", io.StringIO("shop\n"))

    assert staging("reset", "--source", "shop") == 2

    assert "refusing to reset without --yes: not an interactive terminal" in capsys.readouterr().err
    assert _pull_state(ops_env) == before
    assert rows(ops_env, "select count(*) from ops.operator_actions") == [(0,)]


def test_reset_on_a_terminal_asks_for_the_source_name(
    ops_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert staging("run", "--source", "shop", run_id="a", monkeypatch=monkeypatch) == 0
    before = _pull_state(ops_env)

    monkeypatch.setattr("sys.stdin", _Terminal("no\n"))
    assert staging("reset", "--source", "shop", "--entity", "customers") == 2
    assert "not confirmed: nothing was changed" in capsys.readouterr().err
    assert _pull_state(ops_env) == before

    monkeypatch.setattr("sys.stdin", _Terminal("shop\n"))
    assert staging("reset", "--source", "shop", "--entity", "customers") == 0
    assert _pull_state(ops_env)["pulls"] == [("shop", "orders", 1)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "nope", "--yes"], "no source named 'nope'"),
        (["--source", "shop", "--entity", "nope", "--yes"], "no entity 'nope' of source 'shop'"),
    ],
)
def test_reset_of_unknown_names_exits_2(
    ops_env: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert staging("reset", *args) == 2
    assert message in capsys.readouterr().err
