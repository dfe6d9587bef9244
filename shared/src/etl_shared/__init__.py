"""etl_shared: the common library of the zone ETL platform (no entry points of its own)."""

from ._audit import JobAudit, NodeResult, QualityResult
from ._db import CopyWriter, Database, redact_url, run_transaction
from ._dbt import DbtOutcome, DbtProject, build_zone, detect_cockroachdb, profile_from_url, raise_for_outcome
from ._dbt_zone import DbtZoneSettings, Selection, ZoneHooks, dbt_zone_main, run_retention
from ._embedded import WAREHOUSE_DATABASE, EmbeddedPostgres, start_embedded
from ._errors import (
    EXIT_CONFIGURATION,
    EXIT_DATA_QUALITY,
    EXIT_DATABASE,
    EXIT_OK,
    EXIT_SOURCE,
    EXIT_UNEXPECTED,
    ConfigurationError,
    DatabaseError,
    DataQualityError,
    EtlError,
    SourceError,
    SourceFatalError,
    SourceTransientError,
    TransformError,
    exit_code_for,
    is_transient_database_error,
)
from ._job import JobContext, JobTerminated, count_rows, resolve_database_url, run_job
from ._lineage import (
    Dataset,
    OpenLineageEmitter,
    database_namespace,
    file_namespace,
    record_lineage_edges,
    url_namespace,
)
from ._locks import LeaseLock
from ._logging import JsonFormatter, bind_context, configure_logging, log_context, redact
from ._metrics import JobMetrics
from ._migrations import Migration, apply_migrations, bundled_migrations, load_migrations
from ._retention import RetentionRule, apply_retention_rules, history_retention_rules
from ._settings import Settings, load_settings, new_run_id

__all__ = [
    "EXIT_CONFIGURATION",
    "EXIT_DATABASE",
    "EXIT_DATA_QUALITY",
    "EXIT_OK",
    "EXIT_SOURCE",
    "EXIT_UNEXPECTED",
    "WAREHOUSE_DATABASE",
    "ConfigurationError",
    "CopyWriter",
    "DataQualityError",
    "Database",
    "DatabaseError",
    "Dataset",
    "DbtOutcome",
    "DbtProject",
    "DbtZoneSettings",
    "EmbeddedPostgres",
    "EtlError",
    "JobAudit",
    "JobContext",
    "JobMetrics",
    "JobTerminated",
    "JsonFormatter",
    "LeaseLock",
    "Migration",
    "NodeResult",
    "OpenLineageEmitter",
    "QualityResult",
    "RetentionRule",
    "Selection",
    "Settings",
    "SourceError",
    "SourceFatalError",
    "SourceTransientError",
    "TransformError",
    "ZoneHooks",
    "apply_migrations",
    "apply_retention_rules",
    "bind_context",
    "build_zone",
    "bundled_migrations",
    "configure_logging",
    "count_rows",
    "database_namespace",
    "dbt_zone_main",
    "detect_cockroachdb",
    "exit_code_for",
    "file_namespace",
    "history_retention_rules",
    "is_transient_database_error",
    "load_migrations",
    "load_settings",
    "log_context",
    "new_run_id",
    "profile_from_url",
    "raise_for_outcome",
    "record_lineage_edges",
    "redact",
    "redact_url",
    "resolve_database_url",
    "run_job",
    "run_retention",
    "run_transaction",
    "start_embedded",
    "url_namespace",
]
