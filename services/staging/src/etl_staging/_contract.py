"""Schema contracts of source entities: what each pull's columns are compared with, and what happens
on a difference (docs/configuration.md, "Schema contracts").

An entity (or, as a default, its source) declares ``contract: strict | loose`` (default ``loose``) and
optionally ``columns``: the columns it relies on, each with an optional type. Every pull is checked
batch by batch, as it is written:

- a column the previous committed pull of the entity (same mode) did not have, or, for a first pull,
  that is not declared, is **new**: a warning, in both modes;
- a column of the previous pull that no batch of this pull has, and that is not declared, has
  **vanished**: a warning (``missing_column``), in both modes;
- a declared column that the pull does not have is **missing**, and a value of a declared column that
  does not cast to its declared type is a **type mismatch**: ``strict`` stops the entity (a
  :class:`ContractViolation`, exit 4; the pull is not committed), ``loose`` warns and goes on.

Every finding is a row of ``ops.schema_changes``. The casts are the patterns of the conformed zone's
``try_cast`` macro, applied to the value as the conformed zone reads it (the JSON text, trimmed; empty
is null), so "does not cast" means "the conformed zone would read null".
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from pydantic import BeforeValidator, Field

from etl_shared import DataQualityError

_log = logging.getLogger(__name__)

ContractMode = Literal["strict", "loose"]
DEFAULT_CONTRACT: ContractMode = "loose"

#: The declarable column types and the pattern a value's text must match (case-insensitive), those of
#: the conformed zone's try_cast macro (services/conformed/.../macros/safe_cast.sql). ``text`` and a
#: column declared without a type only need to be present.
_TIMESTAMP = r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?)?"
TYPE_PATTERNS: dict[str, re.Pattern[str] | None] = {
    "text": None,
    "integer": re.compile(r"[+-]?[0-9]{1,9}", re.IGNORECASE),
    "bigint": re.compile(r"[+-]?[0-9]{1,18}", re.IGNORECASE),
    "numeric": re.compile(r"[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?", re.IGNORECASE),
    "boolean": re.compile(r"true|false|t|f|yes|no|y|n|1|0", re.IGNORECASE),
    "date": re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.IGNORECASE),
    "timestamp": re.compile(_TIMESTAMP, re.IGNORECASE),
    "timestamptz": re.compile(_TIMESTAMP + r"( ?(Z|[+-][0-9]{2}(:?[0-9]{2})?))?", re.IGNORECASE),
}
#: Values a database driver already typed that cast for sure, tested by their Python type before any
#: text is made of them (the check costs a type test per value, not a regular expression).
_SURE: dict[str, Callable[[Any], bool]] = {
    "integer": lambda v: type(v) is int and -(10**9) < v < 10**9,
    "bigint": lambda v: type(v) is int and -(10**18) < v < 10**18,
    "numeric": lambda v: type(v) is int or (type(v) is Decimal and v.is_finite()),
    "boolean": lambda v: type(v) is bool,
    "date": lambda v: type(v) is date,
    "timestamp": lambda v: type(v) is datetime and v.tzinfo is None,
    "timestamptz": lambda v: (
        type(v) is datetime and v.utcoffset() is not None and v.utcoffset().seconds % 60 == 0
    ),
}
ColumnType = Literal["text", "integer", "bigint", "numeric", "boolean", "date", "timestamp", "timestamptz"]


def _declared_columns(value: Any) -> Any:
    """``columns`` as a mapping name -> type (None: any type). Accepted forms: a mapping
    ``{customer_id: integer, note: ~}`` or a list of names and one-key mappings
    ``[customer_id, {email: text}]``."""
    if value is None or isinstance(value, dict):
        return value
    if not isinstance(value, list):
        raise ValueError("columns is a mapping {name: type} or a list of names (or {name: type} items)")
    found: dict[str, Any] = {}
    for item in value:
        if isinstance(item, str):
            name, kind = item, None
        elif isinstance(item, dict) and len(item) == 1:
            ((name, kind),) = item.items()
        else:
            raise ValueError(
                f"columns: {item!r} is neither a column name nor a one-key mapping {{name: type}}"
            )
        if name in found:
            raise ValueError(f"columns: {name!r} is declared twice")
        found[name] = kind
    return found


DeclaredColumns = Annotated[dict[str, ColumnType | None] | None, BeforeValidator(_declared_columns)]


def contract_field() -> Any:
    return Field(
        default=None,
        description="strict: a missing declared column or a value not casting to its declared type stops the"
        " entity (exit 4); loose: a warning. On an entity, else its source's, else loose",
    )


def columns_field() -> Any:
    return Field(
        default=None,
        description="The declared columns, {name: type} or a list of names; types: "
        + ", ".join(TYPE_PATTERNS),
    )


class ContractViolation(DataQualityError):
    """A ``strict`` entity's pull broke its schema contract: it is not committed (exit 4)."""


@dataclass(frozen=True)
class SchemaChange:
    """One finding of a pull, a row of ``ops.schema_changes``."""

    kind: Literal["new_column", "missing_column", "type_mismatch"]
    column: str
    action: Literal["warned", "failed"]
    declared_type: str | None = None
    failing_values: int | None = None
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "column": self.column,
            "action": self.action,
            "declared_type": self.declared_type,
            "failing_values": self.failing_values,
            "detail": self.detail,
        }


def value_text(value: Any) -> str | None:
    """The value as the conformed zone reads it from the stored JSON (``->>``), trimmed; None for null
    or empty."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif hasattr(value, "isoformat"):
        text = value.isoformat()
    elif isinstance(value, dict | list):
        text = orjson.dumps(value).decode()
    else:
        text = str(value)  # Decimal (stored as its string), UUID, float, ...
    text = text.strip()
    return text or None


@dataclass
class _Mismatch:
    declared_type: str
    first_value: Any
    first_where: str
    count: int = 0


@dataclass
class ContractChecker:
    """Checks the batches of one pull against the entity's contract, as they are written."""

    source: str
    entity: str
    contract: ContractMode
    declared: dict[str, str | None] | None
    #: the columns of the previous committed pull of the entity in the same mode (None: none known)
    previous: Sequence[str] | None
    changes: list[SchemaChange] = field(default_factory=list)
    #: every column the pull's batches carried, in first-seen order
    columns: dict[str, None] = field(default_factory=dict)
    _mismatches: dict[str, _Mismatch] = field(default_factory=dict)
    _records: int = 0

    def restart(self) -> None:
        """Forget every batch checked so far: the pull's extraction starts again from its first row."""
        self.changes.clear()
        self.columns.clear()
        self._mismatches.clear()
        self._records = 0

    @property
    def strict(self) -> bool:
        return self.contract == "strict"

    def _name(self) -> str:
        return f"source {self.source}, entity {self.entity}"

    def check_batch(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        batch_no: int,
        header: bool = False,
        where: Callable[[int], str] | None = None,
    ) -> None:
        """Check one batch before it is written. ``header``: the batch's columns are the source's whole
        column list (a database query, a CSV header), so a declared column absent from it is missing
        now rather than only when no batch of the pull has it."""
        first_record = self._records + 1
        self._records += len(rows)
        for name in columns:
            if name not in self.columns:
                self.columns[name] = None
                self._seen_first(name)
        if header and self.declared:
            absent = [name for name in self.declared if name not in columns]
            if absent:
                self._missing(absent, f"batch {batch_no}" + (f", {where(0)}" if where and rows else ""))
        if not self.declared:
            return
        checks = [
            (index, name, kind, pattern)
            for index, name in enumerate(columns)
            if (kind := self.declared.get(name)) is not None and (pattern := TYPE_PATTERNS[kind]) is not None
        ]
        for index, name, kind, pattern in checks:
            sure = _SURE[kind]
            suspects = [
                row_no for row_no, row in enumerate(rows) if row[index] is not None and not sure(row[index])
            ]
            for row_no in suspects:
                row = rows[row_no]
                text = value_text(row[index])
                if text is None or pattern.fullmatch(text):
                    continue
                found = self._mismatches.get(name)
                if found is None:
                    place = f"record {first_record + row_no} of the pull (batch {batch_no}, row {row_no + 1}"
                    place += f"; {where(row_no)})" if where else ")"
                    found = self._mismatches[name] = _Mismatch(kind, row[index], place)
                    message = (
                        f"{self._name()}: column {name!r} declared {kind}: value {_shown(row[index])} at"
                        f" {place} does not cast to {kind}"
                    )
                    if self.strict:
                        found.count = 1
                        self._add(self._mismatch_change(name, found, "failed"))
                        raise ContractViolation(f"{message} (contract strict: the pull is not committed)")
                    _log.warning(
                        "%s (contract loose: the pull goes on)",
                        message,
                        extra={"source": self.source, "entity": self.entity, "column": name},
                    )
                found.count += 1

    def finish(self) -> list[SchemaChange]:
        """After the last batch: the declared columns no batch had, the vanished ones, the mismatch
        counts. Raises :class:`ContractViolation` for a strict entity missing a declared column."""
        if self._records == 0:
            return self.changes  # an empty pull says nothing about the columns
        if self.declared:
            absent = [name for name in self.declared if name not in self.columns]
            if absent:
                self._missing(absent, "any record of the pull")
        for name in self.previous or ():
            if name not in self.columns and not (self.declared and name in self.declared):
                self._warn(
                    SchemaChange(
                        "missing_column",
                        name,
                        "warned",
                        detail="in the previous pull, in no record of this one (values now null)",
                    ),
                    f"column {name!r} of the previous pull is gone (its values are now null)",
                )
        for name, found in self._mismatches.items():
            self._add(self._mismatch_change(name, found, "warned"))
        self._mismatches.clear()
        return self.changes

    # ------------------------------------------------------------------ internals

    def _seen_first(self, name: str) -> None:
        baseline = self.previous if self.previous is not None else self.declared
        if baseline is None or name in baseline or (self.declared and name in self.declared):
            return  # a declared column is expected, also when it (re)appears
        against = "the previous pull" if self.previous is not None else "the declared columns"
        self._warn(
            SchemaChange("new_column", name, "warned", detail=f"not in {against}"),
            f"new column {name!r} (not in {against}); it is stored, declare it if the entity relies on it",
        )

    def _missing(self, absent: list[str], where: str) -> None:
        for name in absent:
            if any(c.kind == "missing_column" and c.column == name for c in self.changes):
                continue
            declared_type = (self.declared or {}).get(name)
            detail = f"declared, not in {where}"
            if self.strict:
                self._add(SchemaChange("missing_column", name, "failed", declared_type, detail=detail))
                raise ContractViolation(
                    f"{self._name()}: declared column {name!r} is missing (not in {where}); contract strict:"
                    " the pull is not committed"
                )
            self._warn(
                SchemaChange("missing_column", name, "warned", declared_type, detail=detail),
                f"declared column {name!r} is missing (not in {where}); contract loose: the pull goes on",
            )

    def _mismatch_change(
        self, name: str, found: _Mismatch, action: Literal["warned", "failed"]
    ) -> SchemaChange:
        return SchemaChange(
            "type_mismatch",
            name,
            action,
            found.declared_type,
            failing_values=found.count,
            detail=f"first value {_shown(found.first_value)} at {found.first_where}",
        )

    def _warn(self, change: SchemaChange, message: str) -> None:
        self._add(change)
        _log.warning(
            "%s: %s",
            self._name(),
            message,
            extra={
                "source": self.source,
                "entity": self.entity,
                "column": change.column,
                "change": change.kind,
            },
        )

    def _add(self, change: SchemaChange) -> None:
        self.changes.append(change)


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else value_text(value) or repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


_INSERT_CHANGE = (
    "insert into ops.schema_changes (pull_id, kind, column_name, job_id, run_id, source, entity, mode,"
    " contract, action, declared_type, failing_values, detail, detected_at)"
    " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
    " on conflict (pull_id, kind, column_name) do nothing"
)


def record_schema_changes(
    conn: Any,
    changes: Iterable[SchemaChange],
    *,
    pull_id: uuid.UUID,
    job_id: uuid.UUID | None,
    run_id: str,
    source: str,
    entity: str,
    mode: str,
    contract: str,
) -> None:
    """The findings of one pull into ``ops.schema_changes`` (in the caller's transaction; idempotent)."""
    params = [
        (
            pull_id,
            c.kind,
            c.column,
            job_id,
            run_id,
            source,
            entity,
            mode,
            contract,
            c.action,
            c.declared_type,
            c.failing_values,
            (c.detail or "")[:4000] or None,
        )
        for c in changes
    ]
    if params:
        with conn.cursor() as cur:
            cur.executemany(_INSERT_CHANGE, params)
