"""Typed settings, read once at start from the environment (prefix ``ETL_``) and a secrets folder."""

from __future__ import annotations

import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._errors import ConfigurationError
from ._logging import register_url_password, url_password_problem

DEFAULT_SECRETS_DIR = Path("/run/secrets")
_RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


def absolute_path(path: Path | str) -> Path:
    """``path`` made absolute against the working directory, ``~`` expanded, symbolic links kept.

    Settings resolve every path once, when they are read: dbt resolves a relative path against its
    project folder, a subprocess against its own working directory, and the same relative data folder
    would otherwise name different places in different components of one job."""
    return Path(os.path.abspath(Path(path).expanduser()))


def new_run_id() -> str:
    """A sortable, unique run id: UTC time of the start plus random hex."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


class Settings(BaseSettings):
    """Settings common to every zone job. Services subclass it to add their own fields."""

    model_config = SettingsConfigDict(env_prefix="ETL_", extra="ignore", frozen=True)

    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL/CockroachDB URL of the warehouse. Unset: an embedded PostgreSQL is started.",
    )
    run_id: str = Field(default_factory=new_run_id, description="Run id shared by the three zones.")
    pushgateway_url: str | None = Field(
        default=None, description="Prometheus Pushgateway, e.g. http://host:9091"
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    data_dir: Path = Field(
        default_factory=lambda: absolute_path(".etl"),
        description="Local data folder (embedded database, files, exports); a relative path is taken"
        " against the working directory when the settings are read",
    )
    domains: str | None = Field(
        default=None,
        description="The domain folders (sources file and dbt projects; docs/domains.md), separated by ':';"
        " unset: the installed domains (the demo's, domains/commerce)",
    )
    secrets_dir: Path | None = Field(
        default=None,
        description="Folder of secret files (ETL_SECRETS_DIR); unset: /run/secrets when it exists",
    )
    # -- timeouts of every database connection of a job (psycopg's and dbt's); docs/configuration.md
    lock_timeout_s: float = Field(
        default=120,
        ge=0,
        description="Longest wait of one statement for a lock another session holds (server-side"
        " lock_timeout), then the job ends with exit 5; 0 = wait for ever",
    )
    statement_timeout_s: float = Field(
        default=3600,
        ge=0,
        description="Longest run of one statement (server-side statement_timeout), then the job ends with"
        " exit 5; 0 = none",
    )
    lock_wait_log_s: float = Field(
        default=5,
        gt=0,
        description="A statement of the job waiting for a lock this long is logged with the session that"
        " blocks it (and again every 30 s while it waits)",
    )
    transaction_attempts: int = Field(
        default=10,
        ge=1,
        le=50,
        description="Attempts of a transaction (40001, a lost connection, an unknown outcome)",
    )
    duration_sla_s: float | None = Field(
        default=None,
        ge=0,
        description="Longest acceptable run of the job in seconds (metric etl_job_duration_sla_seconds);"
        " unset: the zone's default (staging 3600, conformed and semantic 7200), 0: none",
    )
    # One run of a zone at a time, and dead jobs seen (docs/configuration.md, "Leases")
    lease_wait_s: float = Field(
        default=600,
        ge=0,
        description="How long a conformed or semantic job waits for another job of its zone and domain to"
        " end before it exits 5 having written nothing",
    )
    lease_s: int = Field(
        default=60,
        ge=4,
        le=3600,
        description="A job renews its leases (its zone's, and its job row's) every quarter of this; one not"
        " renewed for this long is a dead job's: taken over, and its row marked abandoned",
    )
    openlineage_url: str | None = Field(
        default=None,
        description="OpenLineage endpoint the jobs POST their run events to, e.g. http://marquez:5000/api/v1/lineage",
    )
    openlineage_file: Path | None = Field(
        default=None, description="File the jobs append their OpenLineage run events to (one JSON a line)"
    )
    openlineage_api_key: SecretStr | None = Field(
        default=None, description="Bearer token for the OpenLineage endpoint (or the secret file)"
    )
    openlineage_namespace: str = Field(default="etl", description="OpenLineage namespace of the zone jobs")

    # -- What the jobs may read and write on the local file system (docs/configuration.md, File roots).
    file_roots: str | None = Field(
        default=None,
        description="More folders file sources may read, besides the data folder, separated by ':';"
        " a file source's path outside the data folder and these is refused (exit 2)",
    )

    def readable_roots(self) -> tuple[Path, ...]:
        """The folders file sources may read: the data folder, then ``file_roots``, each absolute."""
        extra = [absolute_path(part) for part in (self.file_roots or "").split(":") if part.strip()]
        return (self.data_dir, *extra)

    @field_validator("*")
    @classmethod
    def _absolute_paths(cls, value: Any) -> Any:
        """Every path setting, of this class and of every zone's subclass, is absolute from here on."""
        return absolute_path(value) if isinstance(value, Path) else value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        problem = url_password_problem(value.get_secret_value()) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("run_id")
    @classmethod
    def _check_run_id(cls, value: str) -> str:
        if not _RUN_ID_PATTERN.match(value):
            raise ValueError("run id must be 1-100 characters of letters, digits and . _ : -")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log level must be DEBUG, INFO, WARNING or ERROR")
        return value

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None


S = TypeVar("S", bound=Settings)


def configured_secrets_dir() -> Path | None:
    """The secrets folder, absolute: ``ETL_SECRETS_DIR``, else /run/secrets when it exists, else None."""
    configured = os.environ.get("ETL_SECRETS_DIR")
    if configured:
        return absolute_path(configured)
    return DEFAULT_SECRETS_DIR if DEFAULT_SECRETS_DIR.is_dir() else None


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings once at start. Secrets may come from files named like the variable
    (``etl_database_url``) in ``ETL_SECRETS_DIR`` (default /run/secrets when it exists).

    A validation failure becomes a ConfigurationError naming the variable and what is wrong.
    """
    secrets_dir = configured_secrets_dir()
    if secrets_dir is not None and not secrets_dir.is_dir():
        raise ConfigurationError(f"ETL_SECRETS_DIR={secrets_dir} is not a directory")
    overrides.setdefault("secrets_dir", secrets_dir)
    try:
        settings = cls(_secrets_dir=secrets_dir, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(
            f"ETL_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None
    for name in type(settings).model_fields:
        if isinstance(value := getattr(settings, name), SecretStr):
            # a URL's password (whatever a driver shows of it), never the host or database names
            register_url_password(value.get_secret_value())
    return settings
