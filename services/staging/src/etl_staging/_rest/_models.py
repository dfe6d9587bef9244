"""Configuration of a ``kind: rest`` source: connection, auth, pagination and entities.

Secrets are never written inline. A ``*_env`` field names an environment variable, a ``*_file`` field
names a file inside the secrets folder (``ETL_SECRETS_DIR``, default ``/run/secrets``); both are read by
:func:`resolve_secret` when a pull starts, not when the configuration is loaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from etl_shared import ConfigurationError, configured_secrets_dir

from .._contract import ContractMode, DeclaredColumns, columns_field, contract_field
from .._identifiers import Identifier

DEFAULT_SECRETS_DIR = "/run/secrets"
_NAME = r"^[a-z][a-z0-9_]{0,62}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_FILE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
_DOTTED = r"^[^.\s]+(\.[^.\s]+)*$"

# Header names that carry credentials: they belong in `auth`, never as a literal in `headers`.
_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "apikey", "x-auth-token"}
)
_CREDENTIAL_HEADER_WORDS = re.compile(r"(?i)(auth|token|secret|password|passwd|api[-_]?key|session)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _one_of(model: BaseModel, first: str, second: str) -> None:
    given = [name for name in (first, second) if getattr(model, name) is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {first} or {second}")


# ------------------------------------------------------------------------------- connection


class RateLimit(_Strict):
    requests: int = Field(ge=1, description="Requests allowed per period (also the burst size)")
    per: Literal["second", "minute"] = "second"

    @property
    def per_seconds(self) -> float:
        return 1.0 if self.per == "second" else 60.0


class RestConnection(_Strict):
    base_url: str | None = Field(default=None, pattern=r"^https?://", description="http(s)://host[/prefix]")
    base_url_env: str | None = Field(
        default=None, pattern=_ENV_NAME, description="Environment variable holding the base URL"
    )
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="Connect and read timeout per request")
    max_retries: int = Field(default=5, ge=0, le=20)
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    max_retry_wait_s: float = Field(
        default=120.0, ge=0, description="A longer Retry-After fails the pull (transient) instead of waiting"
    )
    rate_limit: RateLimit | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers; never credentials")
    verify_tls: bool = True

    @model_validator(mode="after")
    def _check(self) -> RestConnection:
        _one_of(self, "base_url", "base_url_env")
        for name in self.headers:
            if name.lower() in _CREDENTIAL_HEADERS or _CREDENTIAL_HEADER_WORDS.search(name):
                raise ValueError(
                    f"header {name!r} looks like a credential; declare it under auth"
                    " (api_key with in: header, value_env or value_file)"
                )
        return self

    def resolve_base_url(self) -> str:
        if self.base_url is not None:
            return self.base_url
        assert self.base_url_env is not None
        url = os.environ.get(self.base_url_env)
        if not url:
            raise ConfigurationError(f"environment variable {self.base_url_env} (REST base URL) is not set")
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"environment variable {self.base_url_env}: not an http(s) URL")
        return url


# ------------------------------------------------------------------------------------- auth


class ApiKeyAuth(_Strict):
    type: Literal["api_key"]
    location: Literal["header", "query"] = Field(alias="in")
    name: str = Field(min_length=1, description="Header or query parameter name")
    value_env: str | None = Field(default=None, pattern=_ENV_NAME)
    value_file: str | None = Field(default=None, pattern=_FILE_NAME)

    @model_validator(mode="after")
    def _check(self) -> ApiKeyAuth:
        _one_of(self, "value_env", "value_file")
        return self


class BearerAuth(_Strict):
    type: Literal["bearer"]
    token_env: str | None = Field(default=None, pattern=_ENV_NAME)
    token_file: str | None = Field(default=None, pattern=_FILE_NAME)

    @model_validator(mode="after")
    def _check(self) -> BearerAuth:
        _one_of(self, "token_env", "token_file")
        return self


class BasicAuth(_Strict):
    type: Literal["basic"]
    username_env: str = Field(pattern=_ENV_NAME)
    password_env: str | None = Field(default=None, pattern=_ENV_NAME)
    password_file: str | None = Field(default=None, pattern=_FILE_NAME)

    @model_validator(mode="after")
    def _check(self) -> BasicAuth:
        _one_of(self, "password_env", "password_file")
        return self


class OAuth2ClientCredentialsAuth(_Strict):
    type: Literal["oauth2_client_credentials"]
    token_url: str = Field(pattern=r"^https?://")
    client_id_env: str = Field(pattern=_ENV_NAME)
    client_secret_env: str | None = Field(default=None, pattern=_ENV_NAME)
    client_secret_file: str | None = Field(default=None, pattern=_FILE_NAME)
    scope: str | None = None
    refresh_margin_s: int = Field(default=60, ge=0, description="Refresh this long before the token expires")
    client_auth: Literal["body", "basic"] = Field(
        default="body", description="Send client id and secret in the form body or as HTTP basic auth"
    )

    @model_validator(mode="after")
    def _check(self) -> OAuth2ClientCredentialsAuth:
        _one_of(self, "client_secret_env", "client_secret_file")
        return self


class NoAuth(_Strict):
    type: Literal["none"]


RestAuth = Annotated[
    ApiKeyAuth | BearerAuth | BasicAuth | OAuth2ClientCredentialsAuth | NoAuth, Field(discriminator="type")
]


def resolve_secret(env: str | None, file: str | None) -> str:
    """The value of a secret reference: an environment variable or a file in the secrets folder.

    Errors name the variable or the file, never a value.
    """
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise ConfigurationError(f"environment variable {env} (a secret) is not set or empty")
        return value
    if file is None:
        raise ConfigurationError("a secret reference needs an environment variable or a file name")
    if not re.match(_FILE_NAME, file):
        raise ConfigurationError(f"secret file name {file!r} must be a plain name inside the secrets folder")
    folder = configured_secrets_dir() or Path(DEFAULT_SECRETS_DIR)
    path = folder / file
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigurationError(f"secret file {path} does not exist (ETL_SECRETS_DIR={folder})") from None
    except OSError as exc:
        raise ConfigurationError(f"secret file {path} cannot be read: {exc.strerror}") from None
    if not value:
        raise ConfigurationError(f"secret file {path} is empty")
    return value


# ------------------------------------------------------------------------------- pagination


class _PaginationBase(_Strict):
    max_pages: int = Field(default=100_000, ge=1, description="Safety limit: more pages fail the pull")
    stop_on_empty_page: bool = Field(default=True, description="A page without records ends the pull")


class NoPagination(_PaginationBase):
    type: Literal["none"]


class OffsetPagination(_PaginationBase):
    type: Literal["offset"]
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = Field(default=100, ge=1)
    start: int = Field(default=0, ge=0)
    total_path: str | None = Field(
        default=None, pattern=_DOTTED, description="Dotted path to the total count"
    )


class PageNumberPagination(_PaginationBase):
    type: Literal["page_number"]
    page_param: str = "page"
    size_param: str | None = None
    size: int | None = Field(default=None, ge=1)
    start_page: int = Field(default=1, ge=0)
    total_pages_path: str | None = Field(default=None, pattern=_DOTTED)

    @model_validator(mode="after")
    def _check(self) -> PageNumberPagination:
        if (self.size_param is None) != (self.size is None):
            raise ValueError("size_param and size go together")
        return self


class CursorBodyPagination(_PaginationBase):
    type: Literal["cursor_body"]
    cursor_path: str = Field(pattern=_DOTTED, description="Dotted path to the next cursor in the JSON body")
    cursor_param: str = Field(min_length=1, description="Query parameter the cursor is sent in")


class CursorHeaderPagination(_PaginationBase):
    type: Literal["cursor_header"]
    header: str = Field(min_length=1, description="Response header holding the next cursor")
    cursor_param: str = Field(min_length=1)


class LinkHeaderPagination(_PaginationBase):
    type: Literal["link_header"]


class NextUrlBodyPagination(_PaginationBase):
    type: Literal["next_url_body"]
    next_path: str = Field(pattern=_DOTTED, description="Dotted path to the next page URL in the JSON body")


class PostBodyPagination(_PaginationBase):
    """Search APIs: a POST whose JSON body carries the cursor (or the offset) of the next page."""

    type: Literal["post_body"]
    cursor_path: str | None = Field(default=None, pattern=_DOTTED, description="Next cursor in the response")
    body_cursor_field: str | None = Field(default=None, pattern=_DOTTED, description="Request body field")
    body_offset_field: str | None = Field(default=None, pattern=_DOTTED)
    body_limit_field: str | None = Field(default=None, pattern=_DOTTED)
    limit: int | None = Field(default=None, ge=1)
    total_path: str | None = Field(default=None, pattern=_DOTTED)

    @model_validator(mode="after")
    def _check(self) -> PostBodyPagination:
        cursor_style = self.cursor_path is not None or self.body_cursor_field is not None
        offset_style = self.body_offset_field is not None or self.body_limit_field is not None
        if cursor_style == offset_style:
            raise ValueError(
                "give either cursor_path + body_cursor_field or body_offset_field + limit (+ body_limit_field)"
            )
        if cursor_style and (self.cursor_path is None or self.body_cursor_field is None):
            raise ValueError("cursor_path and body_cursor_field go together")
        if offset_style and (self.body_offset_field is None or self.limit is None):
            raise ValueError("offset style needs body_offset_field and limit")
        return self


Pagination = Annotated[
    NoPagination
    | OffsetPagination
    | PageNumberPagination
    | CursorBodyPagination
    | CursorHeaderPagination
    | LinkHeaderPagination
    | NextUrlBodyPagination
    | PostBodyPagination,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------------- entities


class Incremental(_Strict):
    param: str = Field(min_length=1, description="Query parameter (GET) or body field (POST) of the start")
    cursor_field: str = Field(pattern=_DOTTED, description="Record field giving its cursor, e.g. updated_at")
    lookback_s: int = Field(default=0, ge=0, description="Ask again for this much before the watermark")
    initial: str | None = Field(default=None, description="Start value of the first pull (else no parameter)")
    format: Literal["iso", "epoch", "date"] = "iso"
    until_param: str | None = Field(
        default=None,
        description="Query parameter (GET) or body field (POST) of the end of a backfill range, when the API has one",
    )


def check_records_path(value: str) -> str:
    if value and not re.match(_DOTTED, value):
        raise ValueError("records_path is a dotted path like 'data.items' (or '' for the whole body)")
    return value


def check_relative_path(value: str) -> str:
    if "://" in value:
        raise ValueError("path is relative to the connection's base_url")
    return value


class RestKeyListing(_Strict):
    """Deletes of an incremental REST entity: an endpoint that lists the key of every record the
    source still holds (a pull of mode ``keys``; the conformed history deletes each current key
    missing from it)."""

    path: str = Field(description="The listing endpoint, appended to the base URL")
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    records_path: str = Field(default="", description="Dotted path to the list of keys in a page")
    pagination: Pagination = Field(default_factory=lambda: NoPagination(type="none"))
    key: list[Identifier] = Field(
        min_length=1, description="The record fields that make the key, in key order"
    )
    every_days: float = Field(
        default=0,
        ge=0,
        description="0: after every pull; N: after a pull when the last key listing is N days old or more",
    )
    max_drop_share: float = Field(
        default=0.5, gt=0, le=1, description="refuse a listing that lost more than this share of keys"
    )

    @field_validator("records_path")
    @classmethod
    def _dotted(cls, value: str) -> str:
        return check_records_path(value)

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        return check_relative_path(value)


class RestEntity(_Strict):
    name: str = Field(pattern=_NAME)
    path: str = Field(description="Appended to the base URL")
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    body: dict[str, Any] | None = Field(default=None, description="JSON body of a POST")
    records_path: str = Field(default="", description="Dotted path to the record list; '' = the body is it")
    pagination: Pagination = Field(default_factory=lambda: NoPagination(type="none"))
    incremental: Incremental | None = None
    keep_payload: bool = Field(default=True, description="Store every page body as fetched")
    freshness_sla_hours: float | None = Field(
        default=None, gt=0, description="Overrides the source's freshness SLA (hours)"
    )
    keep_unchanged_pulls: bool = Field(
        default=False,
        description="Keep every full pull (and key listing) as a new committed snapshot, even one equal to"
        " the previous (default: an unchanged pull is recorded as 'unchanged' and its batches removed)",
    )
    contract: ContractMode | None = contract_field()
    columns: DeclaredColumns = columns_field()
    reconcile_keys: RestKeyListing | None = Field(
        default=None, description="Incremental entities: list the keys on a schedule, to see hard deletes"
    )

    @field_validator("records_path")
    @classmethod
    def _dotted(cls, value: str) -> str:
        return check_records_path(value)

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        return check_relative_path(value)

    @model_validator(mode="after")
    def _check(self) -> RestEntity:
        if self.reconcile_keys is not None and self.incremental is None:
            raise ValueError(
                f"entity {self.name}: reconcile_keys needs an incremental entity; an entity pulled whole"
                " already shows its deletes"
            )
        if self.body is not None and self.method != "POST":
            raise ValueError("body needs method: POST")
        if isinstance(self.pagination, PostBodyPagination) and self.method != "POST":
            raise ValueError("post_body pagination needs method: POST")
        return self
