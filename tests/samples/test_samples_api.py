"""The sample REST sources: OAuth, CRM cursor pages, FX pages, rate limiting, faults, ``etl-samples serve``."""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from etl_samples import Faults, SampleApiServer, generate
from etl_samples._api import CRM_RESOURCES, DEMO_CLIENT_SECRET
from etl_samples.cli import main

pytestmark = pytest.mark.integration

SECRET = "test-secret"
TIMEOUT = 10


@pytest.fixture(scope="module")
def data_dir(db_server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generation for the module (orders=200); ``database_url`` is per test, so its server is used."""
    folder = tmp_path_factory.mktemp("api-data")
    generate(folder, db_server.create_database("api"), orders=200, seed=42)
    return folder


@pytest.fixture
def api(data_dir: Path) -> Iterator[SampleApiServer]:
    with SampleApiServer(data_dir, client_secret=SECRET, rate_limit_per_s=None) as server:
        yield server


def jsonl(data_dir: Path, resource: str) -> list[dict[str, Any]]:
    path = data_dir / "sources" / "crm" / f"{resource}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def token(server: SampleApiServer, secret: str = SECRET) -> str:
    response = requests.post(
        f"{server.url}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": secret},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def crm_get(
    server: SampleApiServer, resource: str, access_token: str | None, **params: Any
) -> requests.Response:
    headers = {} if access_token is None else {"Authorization": f"Bearer {access_token}"}
    return requests.get(f"{server.url}/crm/v1/{resource}", params=params, headers=headers, timeout=TIMEOUT)


def all_pages(server: SampleApiServer, resource: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every record through the cursor, and the number of pages."""
    access_token = token(server)
    records: list[dict[str, Any]] = []
    cursor = None
    for pages in range(1, 1000):
        response = crm_get(server, resource, access_token, **params, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["data"]) <= params.get("limit", 100)
        records += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return records, pages
    raise AssertionError("the cursor never ended")


def test_health(api: SampleApiServer) -> None:
    response = requests.get(f"{api.url}/health", timeout=TIMEOUT)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert requests.get(f"{api.url}/nowhere", timeout=TIMEOUT).status_code == 404


def test_token_for_form_and_basic_credentials(api: SampleApiServer) -> None:
    response = requests.post(
        f"{api.url}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": SECRET},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and len(body["access_token"]) > 20
    basic = requests.post(
        f"{api.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("demo-client", SECRET),
        timeout=TIMEOUT,
    )
    assert basic.status_code == 200 and basic.json()["access_token"] != body["access_token"]
    assert crm_get(api, "accounts", basic.json()["access_token"], limit=1).status_code == 200


@pytest.mark.parametrize(
    ("form", "auth", "status", "error"),
    [
        ({"client_id": "demo-client", "client_secret": "wrong"}, None, 401, "invalid_client"),
        ({"client_id": "someone", "client_secret": SECRET}, None, 401, "invalid_client"),
        ({}, None, 401, "invalid_client"),
        ({}, ("demo-client", "wrong"), 401, "invalid_client"),
        ({"grant_type": "password", "client_id": "demo-client", "client_secret": SECRET}, None, 400, None),
    ],
)
def test_token_refused(
    api: SampleApiServer, form: dict[str, str], auth: tuple[str, str] | None, status: int, error: str | None
) -> None:
    response = requests.post(
        f"{api.url}/oauth/token",
        data={"grant_type": "client_credentials", **form},
        auth=auth,
        timeout=TIMEOUT,
    )
    assert response.status_code == status
    assert response.json()["error"] == (error or "unsupported_grant_type")


def test_crm_refuses_missing_unknown_and_expired_tokens(data_dir: Path) -> None:
    with SampleApiServer(data_dir, client_secret=SECRET, token_ttl_s=0.3, rate_limit_per_s=None) as server:
        missing = crm_get(server, "accounts", None)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
        assert crm_get(server, "accounts", "not-a-token").json()["error"] == "invalid_token"
        access_token = token(server)
        assert crm_get(server, "accounts", access_token).status_code == 200
        time.sleep(0.4)
        expired = crm_get(server, "accounts", access_token)
        assert expired.status_code == 401 and expired.json()["error"] == "invalid_token"
        assert crm_get(server, "accounts", token(server)).status_code == 200


@pytest.mark.parametrize("resource", sorted(CRM_RESOURCES))
def test_cursor_pages_return_every_record_once_in_order(
    api: SampleApiServer, data_dir: Path, resource: str
) -> None:
    id_field = CRM_RESOURCES[resource]
    expected = sorted(jsonl(data_dir, resource), key=lambda r: (instant(r["updated_at"]), r[id_field]))
    assert len(expected) > 10
    records, pages = all_pages(api, resource, limit=7)
    assert records == expected
    assert len({record[id_field] for record in records}) == len(records)
    assert pages == -(-len(expected) // 7)


def test_limits_and_bad_parameters(data_dir: Path) -> None:
    with SampleApiServer(data_dir, client_secret=SECRET, rate_limit_per_s=None, page_limit_max=4) as server:
        access_token = token(server)
        assert len(crm_get(server, "contacts", access_token, limit=1000).json()["data"]) == 4
        default = crm_get(server, "contacts", access_token).json()
        assert len(default["data"]) == 4 and default["next_cursor"]
        accounts_cursor = crm_get(server, "accounts", access_token, limit=1).json()["next_cursor"]
        for params in (
            {"limit": 0},
            {"limit": "x"},
            {"cursor": "garbage!"},
            {"cursor": accounts_cursor},  # another resource's cursor
            {"updated_since": "yesterday"},
        ):
            response = crm_get(server, "contacts", access_token, **params)
            assert response.status_code == 400, params
            assert response.json()["error"] == "invalid_request"
        assert requests.post(f"{server.url}/crm/v1/contacts", timeout=TIMEOUT).status_code == 405


def test_cursor_is_opaque_base64(api: SampleApiServer) -> None:
    cursor = crm_get(api, "accounts", token(api), limit=2).json()["next_cursor"]
    assert isinstance(cursor, str) and "," not in cursor
    base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))  # decodes


def test_updated_since_filters(api: SampleApiServer, data_dir: Path) -> None:
    accounts = jsonl(data_dir, "accounts")
    since = sorted(record["updated_at"] for record in accounts)[len(accounts) // 2]
    expected = {r["account_id"] for r in accounts if instant(r["updated_at"]) >= instant(since)}
    records, _ = all_pages(api, "accounts", limit=3, updated_since=since)
    assert {record["account_id"] for record in records} == expected
    assert 0 < len(records) < len(accounts)
    # The same instant in another offset, and a moment one second later that excludes it.
    moment = instant(since)
    shifted = moment.astimezone(datetime.fromisoformat("2000-01-01T00:00:00+02:00").tzinfo).isoformat()
    records, _ = all_pages(api, "accounts", limit=100, updated_since=shifted)
    assert {record["account_id"] for record in records} == expected
    later = datetime.fromtimestamp(moment.timestamp() + 1, UTC).isoformat()
    records, _ = all_pages(api, "accounts", limit=100, updated_since=later)
    assert {record["account_id"] for record in records} == {
        r["account_id"] for r in accounts if instant(r["updated_at"]) >= instant(later)
    }
    assert all_pages(api, "accounts", updated_since="2100-01-01T00:00:00Z")[0] == []


def test_rate_limit_answers_429_with_retry_after(data_dir: Path) -> None:
    with SampleApiServer(data_dir, client_secret=SECRET, rate_limit_per_s=3) as server:
        url = f"{server.url}/fx/v1/rates?start=2024-01-02&end=2024-01-02"
        with requests.Session() as session:
            statuses = [session.get(url, timeout=TIMEOUT) for _ in range(8)]
            limited = [response for response in statuses if response.status_code == 429]
            assert len(limited) >= 4 and all(r.headers["Retry-After"] == "1" for r in limited)
            assert {r.status_code for r in statuses} == {200, 429}
            assert session.get(f"{server.url}/health", timeout=TIMEOUT).status_code == 200  # never limited
            time.sleep(1.05)
            assert session.get(url, timeout=TIMEOUT).status_code == 200


def test_fault_fx_down(api: SampleApiServer) -> None:
    api.faults.fx_down = True
    response = requests.get(f"{api.url}/fx/v1/rates", params={"start": "2024-01-02"}, timeout=TIMEOUT)
    assert response.status_code == 503
    api.faults = Faults()
    assert requests.get(f"{api.url}/fx/v1/rates?start=2024-01-02", timeout=TIMEOUT).status_code == 200


def test_faults_500_and_429_count_down(api: SampleApiServer) -> None:
    access_token = token(api)
    api.faults = Faults(crm_500_times=2, crm_429_times=1)
    statuses = [crm_get(api, "accounts", access_token, limit=1) for _ in range(4)]
    assert [response.status_code for response in statuses] == [500, 500, 429, 200]
    assert statuses[2].headers["Retry-After"] == "1"
    assert api.faults.crm_500_times == api.faults.crm_429_times == 0


def test_fault_tokens_expire_after_requests(api: SampleApiServer) -> None:
    api.faults = Faults(expire_tokens_after_requests=2)
    access_token = token(api)
    statuses = [crm_get(api, "accounts", access_token, limit=1).status_code for _ in range(3)]
    assert statuses == [200, 200, 401]
    assert crm_get(api, "accounts", access_token, limit=1).status_code == 401  # stays invalid
    assert crm_get(api, "accounts", token(api), limit=1).status_code == 200  # a refresh helps


def test_fault_truncated_body_once(api: SampleApiServer) -> None:
    access_token = token(api)
    whole = crm_get(api, "contacts", access_token, limit=5)
    api.faults.truncate_next_body = True
    truncated = crm_get(api, "contacts", access_token, limit=5)
    assert truncated.status_code == 200
    assert truncated.content == whole.content[: len(whole.content) // 2]
    with pytest.raises(ValueError):
        json.loads(truncated.content)
    assert crm_get(api, "contacts", access_token, limit=5).content == whole.content
    assert api.faults.truncate_next_body is False


def test_fault_cursor_loop(api: SampleApiServer) -> None:
    access_token = token(api)
    api.faults.cursor_loop = True
    first = crm_get(api, "accounts", access_token, limit=3).json()
    again = crm_get(api, "accounts", access_token, limit=3, cursor=first["next_cursor"]).json()
    assert again == first and first["next_cursor"] is not None
    whole = crm_get(api, "accounts", access_token, limit=500).json()  # even the last page loops
    assert whole["next_cursor"] == first["next_cursor"]


def fx_csv_rates(data_dir: Path) -> tuple[list[dict[str, str]], list[str]]:
    """(every rate as the API lists it, the first data row) straight from the CSV."""
    with (data_dir / "sources" / "fx" / "eurofxref-hist.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    rates = [
        {"date": row[0], "currency": currency, "rate": cell}
        for row in rows[1:]
        for currency, cell in zip(header[1:], row[1:], strict=False)
        if currency and cell not in ("", "N/A")
    ]
    rates.sort(key=lambda rate: (rate["date"], rate["currency"]))
    return rates, dict(zip(header, rows[1], strict=False))


def test_fx_pages_follow_link_headers(api: SampleApiServer, data_dir: Path) -> None:
    all_rates, _ = fx_csv_rates(data_dir)
    expected = [rate for rate in all_rates if "2024-01-01" <= rate["date"] <= "2024-03-31"]
    url: str | None = f"{api.url}/fx/v1/rates?start=2024-01-01&end=2024-03-31&page_size=250"
    rates: list[dict[str, str]] = []
    pages = 0
    while url:
        response = requests.get(url, timeout=TIMEOUT)
        assert response.status_code == 200
        body = response.json()
        assert body["base"] == "EUR" and len(body["rates"]) <= 250
        rates += body["rates"]
        pages += 1
        url = response.links.get("next", {}).get("url")
        if url:
            assert f"page={pages + 1}" in url and 'rel="next"' in response.headers["Link"]
    assert rates == expected
    assert pages == -(-len(expected) // 250) and pages > 2
    assert all(Decimal(rate["rate"]) > 0 for rate in rates)
    assert {rate["currency"] for rate in rates} >= {"USD", "GBP", "JPY", "CHF", "SEK"}


def test_fx_known_values_and_defaults(api: SampleApiServer, data_dir: Path) -> None:
    all_rates, first_row = fx_csv_rates(data_dir)
    day = first_row["Date"]
    body = requests.get(f"{api.url}/fx/v1/rates", params={"start": day, "end": day}, timeout=TIMEOUT).json()
    by_currency = {rate["currency"]: rate["rate"] for rate in body["rates"]}
    assert by_currency["USD"] == first_row["USD"] and Decimal(by_currency["USD"]) == Decimal(first_row["USD"])
    assert "N/A" not in by_currency.values() and "" not in by_currency
    # No range: the whole history, 1000 rates a page by default.
    response = requests.get(f"{api.url}/fx/v1/rates", timeout=TIMEOUT)
    assert response.json()["rates"] == all_rates[:1000]
    assert "page=2" in response.links["next"]["url"]
    last_page = -(-len(all_rates) // 1000)
    last = requests.get(f"{api.url}/fx/v1/rates", params={"page": last_page}, timeout=TIMEOUT)
    assert last.json()["rates"] == all_rates[(last_page - 1) * 1000 :] and "Link" not in last.headers
    beyond = requests.get(f"{api.url}/fx/v1/rates", params={"page": last_page + 1}, timeout=TIMEOUT)
    assert beyond.json()["rates"] == [] and "Link" not in beyond.headers
    for params in ({"start": "2024-13-01"}, {"start": "2024-02-01", "end": "2024-01-01"}, {"page": 0}):
        assert requests.get(f"{api.url}/fx/v1/rates", params=params, timeout=TIMEOUT).status_code == 400


def test_fx_api_key(data_dir: Path) -> None:
    with SampleApiServer(data_dir, rate_limit_per_s=None, api_key="k3y") as server:
        url = f"{server.url}/fx/v1/rates?start=2024-01-02&end=2024-01-02"
        assert requests.get(url, timeout=TIMEOUT).status_code == 401
        assert requests.get(url, headers={"X-Api-Key": "nope"}, timeout=TIMEOUT).status_code == 401
        assert requests.get(url, headers={"X-Api-Key": "k3y"}, timeout=TIMEOUT).status_code == 200


def test_missing_files_answer_503_until_generated(data_dir: Path, tmp_path: Path) -> None:
    with SampleApiServer(tmp_path, rate_limit_per_s=None) as server:
        access_token = token(server, DEMO_CLIENT_SECRET)
        missing = crm_get(server, "accounts", access_token)
        assert missing.status_code == 503 and missing.json()["error"] == "no_data"
        assert requests.get(f"{server.url}/fx/v1/rates", timeout=TIMEOUT).status_code == 503
        shutil.copytree(data_dir / "sources", tmp_path / "sources")
        records = crm_get(server, "accounts", access_token, limit=500).json()["data"]
        assert len(records) == len(jsonl(data_dir, "accounts"))
        # A rewritten file (generate renames new files into place) is re-indexed.
        path = tmp_path / "sources" / "crm" / "accounts.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        path.with_name("new").write_text("".join(lines[:3]), encoding="utf-8")
        os.replace(path.with_name("new"), path)
        assert len(crm_get(server, "accounts", access_token, limit=500).json()["data"]) == 3


def serve(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "etl_samples", "serve", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), (
        url,
        process.stderr.read() if process.poll() is not None else "",
    )
    return process, url


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, stderr
    return stderr


def test_serve_cli_with_the_demo_secret(data_dir: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "ETL_SAMPLE_CLIENT_SECRET"}
    process, url = serve(data_dir, env)
    try:
        assert requests.get(f"{url}/health", timeout=TIMEOUT).json() == {"status": "ok"}
        response = requests.post(
            f"{url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("demo-client", "demo-secret"),
            timeout=TIMEOUT,
        )
        assert response.status_code == 200
    finally:
        stderr = stop(process)
    assert "demo client secret" in stderr and url in stderr


def test_serve_cli_with_a_secret_from_the_environment(data_dir: Path) -> None:
    process, url = serve(data_dir, {**os.environ, "ETL_SAMPLE_CLIENT_SECRET": "from-env"})
    try:
        auth_url = f"{url}/oauth/token"
        form = {"grant_type": "client_credentials"}
        assert (
            requests.post(
                auth_url, data=form, auth=("demo-client", "demo-secret"), timeout=TIMEOUT
            ).status_code
            == 401
        )
        response = requests.post(auth_url, data=form, auth=("demo-client", "from-env"), timeout=TIMEOUT)
        access_token = response.json()["access_token"]
        page = requests.get(
            f"{url}/crm/v1/accounts", headers={"Authorization": f"Bearer {access_token}"}, timeout=TIMEOUT
        )
        assert page.status_code == 200 and page.json()["data"]
    finally:
        stderr = stop(process)
    assert "demo client secret" not in stderr


@pytest.mark.parametrize("argv", [["serve", "--port", "70000"], ["serve", "--rate-limit", "-1"]])
def test_serve_usage_errors(argv: list[str]) -> None:
    assert main(argv) == 2
