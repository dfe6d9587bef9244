"""Hard deletes of an incremental REST entity: reconcile_keys names a listing endpoint, and staging
pulls the keys it lists (a pull of mode ``keys``) after each data pull, as for a database entity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ops_support import rows
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

from etl_staging.cli import main

pytestmark = pytest.mark.integration

SOURCES = """
sources:
  - name: api
    kind: rest
    connection: {{base_url: "{url}"}}
    entities:
      - name: items
        path: /items
        records_path: data
        incremental: {{param: since, cursor_field: updated_at}}
        reconcile_keys:
          path: /items/ids
          records_path: data
          key: [region, item_id]
          pagination: {{type: cursor_body, cursor_path: next, cursor_param: cursor}}
"""


class Api:
    """Items keyed by (region, item_id); the listing pages two keys at a time."""

    def __init__(self) -> None:
        self.items = {("eu", i): f"2026-01-0{i}T00:00:00Z" for i in range(1, 6)}

    def records(self, request: Request) -> Response:
        since = request.args.get("since")
        data = [
            {"region": r, "item_id": i, "name": f"item {i}", "updated_at": t}
            for (r, i), t in sorted(self.items.items())
            if since is None or t > since
        ]
        return Response(json.dumps({"data": data}), content_type="application/json")

    def ids(self, request: Request) -> Response:
        keys = sorted(self.items)
        start = int(request.args.get("cursor") or 0)
        page = keys[start : start + 2]
        body: dict[str, Any] = {"data": [{"region": r, "item_id": i} for r, i in page]}
        if start + 2 < len(keys):
            body["next"] = str(start + 2)
        return Response(json.dumps(body), content_type="application/json")


@pytest.fixture
def api(httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Api:
    served = Api()
    httpserver.expect_request("/items").respond_with_handler(served.records)
    httpserver.expect_request("/items/ids").respond_with_handler(served.ids)
    sources = tmp_path / "sources.yml"
    sources.write_text(SOURCES.format(url=httpserver.url_for("").rstrip("/")))
    monkeypatch.setenv("ETL_DATABASE_URL", database_url)
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_SOURCES_FILE", str(sources))
    return served


def listings(url: str) -> list[list[Any]]:
    """The key rows of each committed listing, oldest first."""
    found = rows(
        url,
        "select p.pull_id, b.data from staging.pulls p join staging.pull_batches b using (pull_id)"
        " where p.mode = 'keys' and p.status = 'committed' order by p.committed_at, b.batch_no",
    )
    by_pull: dict[Any, list[Any]] = {}
    for pull_id, data in found:
        assert data["columns"] == ["region", "item_id"]
        by_pull.setdefault(pull_id, []).extend(data["rows"])
    return list(by_pull.values())


def test_a_rest_listing_is_pulled_after_the_data_and_refused_when_truncated(
    api: Api, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run"]) == 0
    assert listings(database_url) == [[["eu", i] for i in range(1, 6)]]
    assert rows(database_url, "select mode, record_count from staging.pulls order by committed_at") == [
        ("incremental", 5),
        ("keys", 5),
    ]

    # item 3 is deleted in the source: the incremental pull cannot see it, the listing does
    del api.items[("eu", 3)]
    api.items[("eu", 4)] = "2026-02-01T00:00:00Z"
    assert main(["run"]) == 0
    assert listings(database_url)[-1] == [["eu", 1], ["eu", 2], ["eu", 4], ["eu", 5]]
    assert rows(
        database_url,
        "select record_count from staging.pulls where mode = 'incremental' order by committed_at",
    ) == [(5,), (1,)]

    # the API answers the listing with a truncated set: refused, exit 4, no listing committed
    for key in [("eu", 1), ("eu", 2), ("eu", 4)]:
        del api.items[key]
    capsys.readouterr()
    assert main(["run"]) == 4
    out = capsys.readouterr()
    assert "api.items: the key listing has 1 keys, the previous one 4" in out.out + out.err
    assert len(listings(database_url)) == 2


def test_a_listing_needs_an_incremental_rest_entity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text(
        "sources:\n  - name: api\n    kind: rest\n    connection: {base_url: 'http://127.0.0.1:9'}\n"
        "    entities:\n      - name: items\n        path: /items\n"
        "        reconcile_keys: {path: /items/ids, key: [item_id]}\n"
    )
    assert main(["validate", "--sources-file", str(sources)]) == 2
