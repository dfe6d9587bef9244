"""The public API of etl_shared: a change to it must be a deliberate change to this test."""

from __future__ import annotations

import importlib

import etl_shared

EXPECTED = {
    # errors and exit codes
    "EXIT_CONFIGURATION",
    "EXIT_DATABASE",
    "EXIT_DATA_QUALITY",
    "EXIT_OK",
    "EXIT_SOURCE",
    "EXIT_UNEXPECTED",
    "ConfigurationError",
    "DataQualityError",
    "DatabaseError",
    "EtlError",
    "SourceError",
    "SourceFatalError",
    "SourceTransientError",
    "TransformError",
    "Selection",
    "ZoneHooks",
    "exit_code_for",
    "history_retention_rules",
    "is_transient_database_error",
    "is_connection_lost",
    "is_outcome_unknown",
    # settings
    "Settings",
    "load_settings",
    "new_run_id",
    # database
    "CopyWriter",
    "Database",
    "redact_url",
    "run_transaction",
    "RetryPolicy",
    "KeysetRead",
    "Restarted",
    "Session",
    "MigrationRunner",
    "LeaseLock",
    "LeaseBusy",
    "LeaseLost",
    "AbandonedJob",
    "ZoneBusy",
    "mark_abandoned_jobs",
    "zone_lease_names",
    "DEFAULT_DURATION_SLA_S",
    "Migration",
    "apply_migrations",
    "apply_retention_rules",
    "bundled_migrations",
    "load_migrations",
    "WAREHOUSE_DATABASE",
    "EmbeddedPostgres",
    "start_embedded",
    # audit, logging, metrics
    "JobAudit",
    "NodeResult",
    "QualityResult",
    "RetentionRule",
    "JsonFormatter",
    "bind_context",
    "configure_logging",
    "log_context",
    "redact",
    "fsync_folder",
    "remove_stale_temporary_files",
    "temporary_file",
    "write_atomically",
    "register_secret",
    "register_url_password",
    "url_password_problem",
    "JobMetrics",
    # dbt
    "DbtOutcome",
    "DbtProject",
    "DbtZoneSettings",
    # the note conformed writes for a pull without records, which semantic reads (unchanged pulls)
    "EMPTY_PULL_NOTE",
    "build_zone",
    "detect_cockroachdb",
    "profile_from_url",
    "raise_for_outcome",
    # jobs
    "JobContext",
    "JobTerminated",
    "count_rows",
    "dbt_zone_main",
    "resolve_database_url",
    "run_job",
    "run_retention",
    "zone_manifest",
    "declared_retention_rules",
    "model_retention_rules",
    "zone_project",
    "zone_variables",
    # domains (docs/domains.md)
    "ZoneProject",
    "Domain",
    "assemble_zone_project",
    "configured_domains",
    "installed_domains",
    "platform_dir",
    "absolute_path",
    "configured_secrets_dir",
    # lineage
    "Dataset",
    "OpenLineageEmitter",
    "database_namespace",
    "file_namespace",
    "record_lineage_edges",
    "url_namespace",
}


def test_all_is_exactly_the_expected_api() -> None:
    assert set(etl_shared.__all__) == EXPECTED
    assert len(etl_shared.__all__) == len(EXPECTED), "a name is listed twice in __all__"


def test_every_public_name_is_importable() -> None:
    module = importlib.import_module("etl_shared")
    for name in etl_shared.__all__:
        assert getattr(module, name, None) is not None, name
    namespace: dict[str, object] = {}
    exec("from etl_shared import *", namespace)  # noqa: S102 - the star import is what users get
    assert set(etl_shared.__all__) <= set(namespace)


def test_public_names_come_from_the_private_modules() -> None:
    for name in etl_shared.__all__:
        value = getattr(etl_shared, name)
        origin = getattr(value, "__module__", None)
        if origin is not None and callable(value):
            assert origin.startswith("etl_shared._"), f"{name} is defined in {origin}"


def test_private_modules_are_not_exported() -> None:
    assert not [name for name in etl_shared.__all__ if name.startswith("_")]
