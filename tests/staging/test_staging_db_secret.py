"""A database source's URL may come from a file in the secrets folder instead of the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl_shared import ConfigurationError
from etl_staging._config import DatabaseConnection, load_sources, resolve_database_url


def test_url_from_a_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "oltp_url").write_text("postgresql://reader:pw@db.internal:5432/shop\n")
    monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
    conn = DatabaseConnection(url_file="oltp_url")
    assert resolve_database_url(conn, warehouse_url="postgresql:///x", embedded=False) == (
        "postgresql://reader:pw@db.internal:5432/shop"
    )


def test_a_missing_secret_file_names_the_file_not_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
    with pytest.raises(ConfigurationError, match="oltp_url"):
        resolve_database_url(
            DatabaseConnection(url_file="oltp_url"), warehouse_url="postgresql:///x", embedded=False
        )


def test_exactly_one_reference_is_required(tmp_path: Path) -> None:
    path = tmp_path / "s.yml"
    path.write_text(
        "sources:\n  - name: db\n    kind: database\n    connection: {url_env: A, url_file: b}\n"
        "    entities: [{name: t, table: s.t}]\n"
    )
    with pytest.raises(ConfigurationError, match=r"source 'db' field connection.*exactly one"):
        load_sources(path)
