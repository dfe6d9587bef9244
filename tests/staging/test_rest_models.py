"""The ``kind: rest`` configuration models, secret references and the public API of etl_staging._rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

import etl_staging._rest as rest
from etl_shared import ConfigurationError
from etl_staging._rest import (
    ApiKeyAuth,
    OAuth2ClientCredentialsAuth,
    PostBodyPagination,
    RestAuth,
    RestConnection,
    RestEntity,
    resolve_secret,
)

EXAMPLE = """
name: billing
kind: rest
batch_size: 5000
connection:
  base_url_env: BILLING_API_URL
  timeout_s: 20
  max_retries: 5
  max_retry_wait_s: 120
  rate_limit: {requests: 10, per: second}
  headers: {Accept-Language: en}
auth:
  type: oauth2_client_credentials
  token_url: https://auth.example.com/oauth/token
  client_id_env: BILLING_CLIENT_ID
  client_secret_file: billing_client_secret
  scope: invoices.read
entities:
  - name: invoices
    path: /v2/invoices
    params: {status: all}
    records_path: data.items
    pagination: {type: cursor_body, cursor_path: meta.next_cursor, cursor_param: cursor}
    incremental: {param: updated_since, cursor_field: updated_at, lookback_s: 3600, initial: "2024-01-01T00:00:00Z"}
  - name: customers
    path: /v2/customers
    pagination: {type: link_header}
  - name: payments
    path: /v2/payments/search
    method: POST
    body: {filter: {currency: EUR}, size: 500}
    records_path: hits
    pagination: {type: post_body, cursor_path: next, body_cursor_field: search_after}
"""


class _Source(BaseModel):
    """What the lead embeds in _config.py (a RestSource), reduced to the REST parts."""

    name: str
    kind: str
    batch_size: int
    connection: RestConnection
    auth: RestAuth
    entities: list[RestEntity]


def test_the_documented_example_validates() -> None:
    source = _Source.model_validate(yaml.safe_load(EXAMPLE))

    assert source.connection.rate_limit is not None and source.connection.rate_limit.per_seconds == 1.0
    assert isinstance(source.auth, OAuth2ClientCredentialsAuth)
    assert source.auth.refresh_margin_s == 60
    invoices, customers, payments = source.entities
    assert invoices.pagination.type == "cursor_body"
    assert invoices.incremental is not None and invoices.incremental.lookback_s == 3600
    assert customers.pagination.type == "link_header" and customers.method == "GET"
    assert isinstance(payments.pagination, PostBodyPagination)
    assert payments.pagination.max_pages == 100_000


def _error(model: Any, data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        TypeAdapter(model).validate_python(data)
    return str(info.value)


class TestConnection:
    def test_defaults(self) -> None:
        conn = RestConnection(base_url="https://api.example.com")
        assert (conn.timeout_s, conn.max_retries, conn.backoff_base_s, conn.backoff_max_s) == (30, 5, 0.5, 30)
        assert conn.max_retry_wait_s == 120 and conn.verify_tls is True and conn.rate_limit is None

    def test_exactly_one_base_url(self) -> None:
        assert "exactly one of base_url or base_url_env" in _error(RestConnection, {})
        both = {"base_url": "https://a", "base_url_env": "A"}
        assert "exactly one" in _error(RestConnection, both)

    @pytest.mark.parametrize("header", ["Authorization", "x-api-key", "X-Auth-Token", "Cookie", "My-Secret"])
    def test_credential_headers_are_refused(self, header: str) -> None:
        message = _error(RestConnection, {"base_url": "https://a", "headers": {header: "literal"}})
        assert "looks like a credential" in message

    def test_unknown_keys_are_refused(self) -> None:
        assert "Extra inputs" in _error(RestConnection, {"base_url": "https://a", "retries": 3})

    def test_base_url_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        conn = RestConnection(base_url_env="API_URL_FOR_TEST")
        with pytest.raises(ConfigurationError, match="API_URL_FOR_TEST"):
            conn.resolve_base_url()
        monkeypatch.setenv("API_URL_FOR_TEST", "https://api.example.com/v1")
        assert conn.resolve_base_url() == "https://api.example.com/v1"


class TestAuth:
    def test_api_key_uses_in(self) -> None:
        auth = TypeAdapter(RestAuth).validate_python(
            {"type": "api_key", "in": "query", "name": "api_key", "value_env": "K"}
        )
        assert isinstance(auth, ApiKeyAuth) and auth.location == "query"

    @pytest.mark.parametrize(
        "data",
        [
            {"type": "api_key", "in": "header", "name": "X-Key"},
            {"type": "bearer", "token_env": "T", "token_file": "t"},
            {"type": "basic", "username_env": "U"},
            {"type": "oauth2_client_credentials", "token_url": "https://a/t", "client_id_env": "I"},
        ],
    )
    def test_one_secret_reference_each(self, data: dict[str, Any]) -> None:
        assert "give exactly one of" in _error(RestAuth, data)

    def test_unknown_type(self) -> None:
        assert "does not match any of the expected tags" in _error(RestAuth, {"type": "digest"})


class TestEntity:
    def test_post_body_pagination_needs_post(self) -> None:
        data = {
            "name": "x",
            "path": "/search",
            "pagination": {"type": "post_body", "cursor_path": "next", "body_cursor_field": "after"},
        }
        assert "needs method: POST" in _error(RestEntity, data)

    def test_post_body_needs_one_style(self) -> None:
        data = {"name": "x", "path": "/s", "method": "POST", "pagination": {"type": "post_body"}}
        assert "either cursor_path" in _error(RestEntity, data)

    def test_path_is_relative(self) -> None:
        assert "relative" in _error(RestEntity, {"name": "x", "path": "https://other/x"})

    def test_page_size_param_and_size_go_together(self) -> None:
        data = {"name": "x", "path": "/p", "pagination": {"type": "page_number", "size_param": "per_page"}}
        assert "go together" in _error(RestEntity, data)

    def test_defaults(self) -> None:
        entity = RestEntity(name="things", path="/things")
        assert entity.method == "GET" and entity.records_path == "" and entity.pagination.type == "none"
        assert entity.keep_payload is True and entity.incremental is None


class TestResolveSecret:
    def test_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("REST_TEST_SECRET", "s3cr3t-value")
        assert resolve_secret("REST_TEST_SECRET", None) == "s3cr3t-value"

    def test_missing_variable_is_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("REST_TEST_MISSING", raising=False)
        with pytest.raises(ConfigurationError, match="REST_TEST_MISSING"):
            resolve_secret("REST_TEST_MISSING", None)

    def test_from_the_secrets_folder(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "api_token").write_text("file-secret-value\n", encoding="utf-8")
        monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
        assert resolve_secret(None, "api_token") == "file-secret-value"

    def test_missing_file_is_named(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
        with pytest.raises(ConfigurationError, match="nope"):
            resolve_secret(None, "nope")

    def test_empty_file_is_refused(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "empty").write_text("\n", encoding="utf-8")
        monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
        with pytest.raises(ConfigurationError, match="is empty"):
            resolve_secret(None, "empty")

    def test_no_path_outside_the_folder(self) -> None:
        with pytest.raises(ConfigurationError, match="plain name"):
            resolve_secret(None, "../etc/passwd")


def test_public_api() -> None:
    assert sorted(rest.__all__) == sorted(
        [
            "RETRY_STATUSES",
            "ApiKeyAuth",
            "ApiKeyAuthenticator",
            "AsyncRestEntity",
            "AsyncRestExtractor",
            "Authenticator",
            "BasePaginator",
            "BasicAuth",
            "BasicAuthenticator",
            "BearerAuth",
            "BearerAuthenticator",
            "CursorBodyPagination",
            "CursorHeaderPagination",
            "DatesFanOut",
            "Decision",
            "DuplicateCounter",
            "FanOut",
            "HeaderCursorPaginator",
            "HeaderLinkPaginator",
            "Incremental",
            "JSONResponseCursorPaginator",
            "JSONResponseNextUrlPaginator",
            "LinkHeaderPagination",
            "NextUrlBodyPagination",
            "NoAuth",
            "NoPagination",
            "OAuth2ClientCredentialsAuth",
            "OAuth2ClientCredentialsAuthenticator",
            "OffsetPagination",
            "OffsetPaginator",
            "Page",
            "PageNumberPagination",
            "PageNumberPaginator",
            "PagesFanOut",
            "Pagination",
            "PauseGate",
            "PostBodyPagination",
            "RateBudget",
            "RateLimit",
            "Redactor",
            "RestAuth",
            "RestClient",
            "RestConnection",
            "RestCounters",
            "RestEntity",
            "RestExtractor",
            "RetryPolicy",
            "SinglePagePaginator",
            "ValuesFanOut",
            "announced_pause",
            "build_authenticator",
            "decide",
            "incremental_start",
            "make_paginator",
            "resolve_secret",
            "retry_after_seconds",
        ]
    )
    for name in rest.__all__:
        assert getattr(rest, name) is not None
