"""How large one stored value may be: the byte budget of a batch's JSON, the size of a payload chunk,
and the largest single record, per warehouse.

CockroachDB recommends keeping JSONB and BYTES values under 1 MB ("write amplification and other
considerations may cause significant performance degradation" above it; docs, data types JSONB and
BYTES), and a write larger than ``kv.raft.command.max_size`` (64 MiB by default) fails; the row-size
guardrails (``sql.guardrails.max_row_size_log`` 64 MiB, ``max_row_size_err`` 512 MiB) come later
than that (cockroachdb/cockroach#160949). PostgreSQL takes a jsonb value up to 255 MiB and any field
up to 1 GB, and stores large values out of line (TOAST) without a penalty of that kind.

The sizes are chosen once per job: from the warehouse (:func:`resolve_value_sizes` asks the server
what it is), from a named profile, or overridden one by one by the ``ETL_*`` settings
(docs/configuration.md, docs/cockroachdb.md "Value sizes").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal

from etl_shared import ConfigurationError, Database, detect_cockroachdb

_log = logging.getLogger(__name__)

KIB = 1024
MIB = 1024 * KIB

Profile = Literal["auto", "cockroachdb", "postgresql"]


@dataclass(frozen=True)
class ValueSizes:
    """Byte limits of the values a pull stores.

    ``batch_bytes``: a stored batch closes when its encoded JSON would pass this many bytes (and at
    ``batch_size`` records, whichever comes first); only a batch of one record may be larger.
    ``payload_chunk_bytes``: the bytes as fetched are stored in chunks of at most this many bytes.
    ``record_max_bytes``: a single record whose JSON is larger is refused (the pull fails).
    """

    batch_bytes: int
    payload_chunk_bytes: int
    record_max_bytes: int
    #: where the figures come from, for logs and messages ("cockroachdb", "postgresql", "settings")
    profile: str = "settings"

    def __post_init__(self) -> None:
        for name in ("batch_bytes", "payload_chunk_bytes", "record_max_bytes"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"value sizes: {name} must be at least 1 byte")
        if self.batch_bytes > self.record_max_bytes:
            raise ConfigurationError(
                f"value sizes: the batch budget ({self.batch_bytes:,} bytes, ETL_BATCH_BYTES) is larger than"
                f" the largest record ({self.record_max_bytes:,} bytes, ETL_RECORD_MAX_BYTES)"
            )

    def describe(self) -> str:
        return (
            f"{self.profile}: batches up to {self.batch_bytes:,} bytes of JSON, payload chunks up to"
            f" {self.payload_chunk_bytes:,} bytes, a single record up to {self.record_max_bytes:,} bytes"
        )


#: CockroachDB: every value under 1 MiB. A batch's budget counts the JSON text sent; the server keeps
#: its own binary JSONB form, larger than the text for short values (a 4-byte entry per element
#: against the text's quotes and comma, numbers as decimals; PostgreSQL's jsonb has the same layout
#: and is 1.29 times the text of the benchmark's batches), so the text is held to 3/4 of 1 MiB: at
#: that ratio at most 990 KiB stored. A payload chunk is raw
#: bytes, stored as they are: 1 MiB exactly. A record alone may pass the budget (a batch of one,
#: with a warning) up to 32 MiB: half of ``kv.raft.command.max_size`` and of
#: ``sql.guardrails.max_row_size_log`` (64 MiB each by default), room for the binary form and the
#: row's other columns; above it the write would fail on the server or come close.
COCKROACHDB = ValueSizes(
    batch_bytes=768 * KIB, payload_chunk_bytes=1 * MIB, record_max_bytes=32 * MIB, profile="cockroachdb"
)

#: PostgreSQL: batches cut by records as before (5,000 records of the benchmark's orders are 1.5 MB
#: of JSON; 16 MiB is a ceiling that only wide records reach), payload chunks of 8 MiB (fewer
#: transactions; bench/README.md measured both). A record up to 128 MiB: half of jsonb's 255 MiB.
POSTGRESQL = ValueSizes(
    batch_bytes=16 * MIB, payload_chunk_bytes=8 * MIB, record_max_bytes=128 * MIB, profile="postgresql"
)

PROFILES = {"cockroachdb": COCKROACHDB, "postgresql": POSTGRESQL}


def value_sizes(
    profile: Profile | str,
    *,
    cockroachdb: bool | None = None,
    batch_bytes: int | None = None,
    payload_chunk_bytes: int | None = None,
    record_max_bytes: int | None = None,
) -> ValueSizes:
    """The sizes of ``profile`` (``auto``: CockroachDB's when ``cockroachdb``, else PostgreSQL's),
    with each limit that is given (not None) in place of the profile's."""
    if profile == "auto":
        if cockroachdb is None:
            raise ValueError("value sizes 'auto' needs to know whether the warehouse is CockroachDB")
        profile = "cockroachdb" if cockroachdb else "postgresql"
    if profile not in PROFILES:
        raise ConfigurationError(
            f"value sizes: unknown profile {profile!r} (auto, cockroachdb or postgresql; ETL_VALUE_SIZES)"
        )
    base = PROFILES[profile]
    overrides = {
        name: value
        for name, value in (
            ("batch_bytes", batch_bytes),
            ("payload_chunk_bytes", payload_chunk_bytes),
            ("record_max_bytes", record_max_bytes),
        )
        if value is not None
    }
    if not overrides:
        return base
    return replace(base, profile=f"{base.profile} with settings", **overrides)


def resolve_value_sizes(
    db: Database,
    profile: Profile | str = "auto",
    *,
    batch_bytes: int | None = None,
    payload_chunk_bytes: int | None = None,
    record_max_bytes: int | None = None,
) -> ValueSizes:
    """:func:`value_sizes` for the warehouse ``db`` (asked only for ``auto``), logged once."""
    cockroachdb = None
    if profile == "auto":
        cockroachdb = detect_cockroachdb(db.url)
    sizes = value_sizes(
        profile,
        cockroachdb=cockroachdb,
        batch_bytes=batch_bytes,
        payload_chunk_bytes=payload_chunk_bytes,
        record_max_bytes=record_max_bytes,
    )
    _log.info("value sizes %s", sizes.describe())
    return sizes
