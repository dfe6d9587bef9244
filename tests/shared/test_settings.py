"""Typed settings: ``ETL_`` environment, a secrets folder, errors naming the variable, run ids."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from etl_shared import ConfigurationError, Settings, load_settings, new_run_id


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ETL_"):
            monkeypatch.delenv(name)


def test_defaults_without_environment() -> None:
    settings = load_settings(Settings)
    assert settings.database_url is None
    assert settings.uses_embedded_database
    assert settings.log_level == "INFO"
    assert settings.pushgateway_url is None
    assert settings.data_dir == Path.cwd() / ".etl"
    assert settings.data_dir.is_absolute()
    assert settings.transaction_attempts == 10


def test_every_path_setting_is_absolute_once_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Relative paths are taken against the working directory when the settings are read, in the
    base settings and in every zone's subclass, so that dbt (which resolves a relative target path
    against its project folder) and subprocesses see the same folders as the job."""
    from etl_conformed.cli import ConformedSettings
    from etl_semantic.cli import SemanticSettings
    from etl_staging.cli import StagingSettings

    (tmp_path / "secrets").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ETL_DATA_DIR", "data/etl")
    monkeypatch.setenv("ETL_SECRETS_DIR", "secrets")
    monkeypatch.setenv("ETL_SOURCES_FILE", "conf/sources.yml")
    monkeypatch.setenv("ETL_EXPORT_DIR", "out/../exports")
    monkeypatch.setenv("ETL_OPENLINEAGE_FILE", "lineage.jsonl")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    staging = load_settings(StagingSettings)
    semantic = load_settings(SemanticSettings)
    conformed = load_settings(ConformedSettings)
    assert load_settings(Settings, data_dir="~/etl").data_dir == tmp_path / "home" / "etl"
    monkeypatch.chdir("/")  # a later change of directory changes nothing

    for settings in (staging, semantic, conformed):
        assert settings.data_dir == tmp_path / "data" / "etl"
        assert settings.secrets_dir == tmp_path / "secrets"
        assert settings.openlineage_file == tmp_path / "lineage.jsonl"
    assert staging.sources_file == tmp_path / "conf" / "sources.yml"
    assert semantic.export_dir == tmp_path / "exports"


def test_dbt_project_folders_are_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from etl_shared import DbtProject

    project = tmp_path / "project"
    project.mkdir()
    (project / "dbt_project.yml").write_text("name: p\n")
    monkeypatch.chdir(tmp_path)
    dbt = DbtProject(Path("project"), profile="p", schema="s", work_dir=Path("data/dbt/p"))
    assert dbt.project_dir == project
    assert dbt.target_path == tmp_path / "data" / "dbt" / "p" / "target"


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ETL_RUN_ID", "20240131T020000Z-ctm42")
    monkeypatch.setenv("ETL_LOG_LEVEL", "debug")
    monkeypatch.setenv("ETL_PUSHGATEWAY_URL", "http://gateway:9091")
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_TRANSACTION_ATTEMPTS", "3")
    monkeypatch.setenv("ETL_DATABASE_URL", "postgresql://etl:pw@db:26257/etl")
    # Unprefixed names are not settings.
    monkeypatch.setenv("RUN_ID", "ignored")
    monkeypatch.setenv("LOG_LEVEL", "ERROR")

    settings = load_settings(Settings)

    assert settings.run_id == "20240131T020000Z-ctm42"
    assert settings.log_level == "DEBUG"
    assert settings.pushgateway_url == "http://gateway:9091"
    assert settings.data_dir == tmp_path
    assert settings.transaction_attempts == 3
    assert isinstance(settings.database_url, SecretStr)
    assert settings.database_url.get_secret_value() == "postgresql://etl:pw@db:26257/etl"
    assert not settings.uses_embedded_database


def test_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_RUN_ID", "from-env")
    assert load_settings(Settings, run_id="from-cli").run_id == "from-cli"


def test_secret_from_secrets_folder_is_hidden(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_url = "postgresql://etl:Very-Secret-42@db:26257/etl"
    (tmp_path / "etl_database_url").write_text(secret_url + "\n")
    monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))

    settings = load_settings(Settings)

    assert isinstance(settings.database_url, SecretStr)
    assert settings.database_url.get_secret_value() == secret_url
    assert "Very-Secret-42" not in repr(settings)
    assert "Very-Secret-42" not in str(settings)
    assert "Very-Secret-42" not in repr(settings.database_url)


def test_environment_wins_over_secrets_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "etl_database_url").write_text("postgresql://from-file/etl")
    monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_DATABASE_URL", "postgresql://from-env/etl")
    settings = load_settings(Settings)
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgresql://from-env/etl"


def test_missing_secrets_folder_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nope"
    monkeypatch.setenv("ETL_SECRETS_DIR", str(missing))
    with pytest.raises(ConfigurationError, match="ETL_SECRETS_DIR") as info:
        load_settings(Settings)
    assert str(missing) in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ETL_LOG_LEVEL", "LOUD"),
        ("ETL_RUN_ID", "has spaces"),
        ("ETL_RUN_ID", "-starts-with-dash"),
        ("ETL_RUN_ID", "x" * 101),
        ("ETL_TRANSACTION_ATTEMPTS", "0"),
        ("ETL_STATEMENT_TIMEOUT_S", "-1"),
    ],
)
def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(Settings)


def test_invalid_value_error_does_not_echo_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_DATABASE_URL", "postgresql://etl:Very-Secret-42@db/etl")
    monkeypatch.setenv("ETL_LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigurationError) as info:
        load_settings(Settings)
    assert "Very-Secret-42" not in str(info.value)
    assert info.value.__cause__ is None


def test_settings_are_frozen() -> None:
    settings = Settings(run_id="r1")
    with pytest.raises(ValueError, match="frozen"):
        settings.run_id = "r2"  # type: ignore[misc]


def test_services_subclass_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    class StagingSettings(Settings):
        batch_rows: int = 500

    monkeypatch.setenv("ETL_BATCH_ROWS", "not-a-number")
    with pytest.raises(ConfigurationError, match="ETL_BATCH_ROWS"):
        load_settings(StagingSettings)
    monkeypatch.setenv("ETL_BATCH_ROWS", "20")
    assert load_settings(StagingSettings).batch_rows == 20


def test_run_ids_are_unique_well_formed_and_time_ordered() -> None:
    before = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    ids = [new_run_id() for _ in range(50)]
    after = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")

    assert len(set(ids)) == len(ids)
    for run_id in ids:
        assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", run_id)
        # The time prefix sorts as the clock does, so a later run sorts after an earlier one.
        assert before <= run_id[:16] <= after
        # Every generated id is a valid run id setting.
        assert Settings(run_id=run_id).run_id == run_id


def test_default_run_id_is_generated_per_settings() -> None:
    first, second = Settings(), Settings()
    assert first.run_id != second.run_id
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", first.run_id)
