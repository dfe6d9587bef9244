"""etl_staging: the staging zone (extractors, raw pull storage, retention)."""

from ._config import SourcesFile, load_sources
from ._extract import Batch, DatabaseExtractor, FileExtractor, Payload
from ._raw import (
    PullSummary,
    RawPullWriter,
    apply_retention,
    clean_abandoned_pulls,
    encode_batch,
    read_watermark,
)
from ._runner import StagingJob
from ._sizes import COCKROACHDB, POSTGRESQL, ValueSizes, resolve_value_sizes, value_sizes

__all__ = [
    "COCKROACHDB",
    "POSTGRESQL",
    "Batch",
    "DatabaseExtractor",
    "FileExtractor",
    "Payload",
    "PullSummary",
    "RawPullWriter",
    "SourcesFile",
    "StagingJob",
    "ValueSizes",
    "apply_retention",
    "clean_abandoned_pulls",
    "encode_batch",
    "load_sources",
    "read_watermark",
    "resolve_value_sizes",
    "value_sizes",
]
