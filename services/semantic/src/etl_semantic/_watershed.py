"""The Watershed upload: ``semantic.watershed_statements`` as a CSV, its import template and xAPI JSON.

One export writes three files into a folder:

- ``<stem>.csv``: one row per xAPI statement in the layout of :data:`CSV_COLUMNS` (what Watershed's CSV
  import reads);
- ``<stem>.template.json``: the mapping of a CSV row to an xAPI 1.0.3 statement (:func:`build_template`,
  rendered by :func:`render_statement`);
- ``<stem>.xapi.json``: the same statements as a JSON array, for an LRS that takes statements directly.

The files are a pure function of the table content (no run id, no clock), so an unchanged table gives
byte-identical files; statement ids are deterministic, so uploading the same file again is idempotent in an
LRS. Every statement is checked with :func:`validate_statement` before any file is put in place.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

import orjson
import psycopg

from etl_shared import ConfigurationError, KeysetRead, TransformError, fsync_folder, temporary_file
from etl_shared._dbt import model_label, models_declaring

TABLE = "semantic.watershed_statements"
TEMPLATE_FORMAT = "etl-watershed-csv-template"
TEMPLATE_VERSION = 1
XAPI_VERSION = "1.0.3"
#: the verb of a voiding statement (xAPI 1.0.3, 2.3.2 Voiding)
VOIDED_VERB = "http://adlnet.gov/expapi/verbs/voided"
PLATFORM = "web shop"
#: ws_source names what a statement was built from (the demo: web_event, order): a lower-case name
_SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
FETCH_ROWS = 2000
"""Rows fetched per round trip from the server-side cursor."""


@dataclass(frozen=True)
class CsvColumn:
    """One CSV column: its header name, the table column it comes from, its type in the template
    (``string``, ``timestamp`` or ``number``), whether every row has a value, the xAPI field it
    fills and what it means."""

    name: str
    table_column: str
    type: str
    required: bool
    xapi_field: str
    meaning: str


CSV_COLUMNS: tuple[CsvColumn, ...] = (
    CsvColumn("statement_id", "ws_statement_id", "string", True, "id",
              "statement id: a deterministic UUID, so re-uploading is idempotent"),
    CsvColumn("timestamp", "ws_timestamp", "timestamp", True, "timestamp",
              "when it happened: ISO 8601 UTC with millisecond precision and 'Z'"),
    CsvColumn("actor_home_page", "ws_actor_home_page", "string", True, "actor.account.homePage",
              "home page of the system the customer account belongs to"),
    CsvColumn("actor_account_name", "ws_actor_account", "string", True, "actor.account.name",
              "pseudonymous customer account name (already masked)"),
    CsvColumn("verb_id", "ws_verb_id", "string", True, "verb.id",
              "verb IRI, e.g. http://id.tincanapi.com/verb/viewed"),
    CsvColumn("verb_display", "ws_verb_display", "string", True, "verb.display.en-US",
              "English display of the verb, e.g. viewed"),
    CsvColumn("object_id", "ws_object_id", "string", True, "object.id",
              "activity IRI, e.g. https://shop.example.com/products/42"),
    CsvColumn("object_type", "ws_object_type", "string", True, "object.definition.type",
              "activity type IRI, e.g. http://activitystrea.ms/schema/1.0/product"),
    CsvColumn("object_name", "ws_object_name", "string", True, "object.definition.name.en-US",
              "English name of the activity"),
    CsvColumn("result_amount", "ws_result_amount", "number", False,
              "result.extensions.<home page>/xapi/extensions/amount",
              "order amount in the reporting currency, 2 decimal places (orders only)"),
    CsvColumn("result_currency", "ws_result_currency", "string", False,
              "result.extensions.<home page>/xapi/extensions/currency",
              "ISO 4217 code of the amount (orders only)"),
    CsvColumn("source", "ws_source", "string", True,
              "context.extensions.<home page>/xapi/extensions/source.type",
              "what the statement was built from: web_event or order"),
    CsvColumn("source_id", "ws_source_id", "string", True,
              "context.extensions.<home page>/xapi/extensions/source.id",
              "id of the web event or order"),
)  # fmt: skip
"""The CSV layout, in column order."""

CSV_HEADER: tuple[str, ...] = tuple(c.name for c in CSV_COLUMNS)


@dataclass(frozen=True)
class ExportFile:
    """One written file: ``kind`` is ``watershed_csv``, ``watershed_template`` or ``watershed_xapi``;
    ``rows`` counts statements (0 for the template)."""

    kind: str
    path: Path
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class WatershedRow:
    """One row of ``semantic.watershed_statements``."""

    statement_id: str
    timestamp: datetime
    actor_home_page: str
    actor_account: str
    verb_id: str
    verb_display: str
    object_id: str
    object_type: str
    object_name: str
    result_amount: Decimal | None
    result_currency: str | None
    source: str
    source_id: str


# --------------------------------------------------------------------------------------------------
# Rows, CSV cells and statements


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with millisecond precision and 'Z' (microseconds are truncated, not rounded,
    so a timestamp never moves into the next second)."""
    if value.tzinfo is None:
        raise ValueError("timestamp without a time zone")
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{utc.microsecond // 1000:03d}Z"


def format_amount(value: Decimal) -> str:
    """A plain decimal with 2 places (no exponent, no grouping)."""
    return f"{value.quantize(Decimal('0.01')):f}"


def csv_row(row: WatershedRow) -> dict[str, str]:
    """The CSV cells of one row, keyed by CSV column name (empty string for null)."""
    return {
        "statement_id": row.statement_id,
        "timestamp": format_timestamp(row.timestamp),
        "actor_home_page": row.actor_home_page,
        "actor_account_name": row.actor_account,
        "verb_id": row.verb_id,
        "verb_display": row.verb_display,
        "object_id": row.object_id,
        "object_type": row.object_type,
        "object_name": row.object_name,
        "result_amount": "" if row.result_amount is None else format_amount(row.result_amount),
        "result_currency": row.result_currency or "",
        "source": row.source,
        "source_id": row.source_id,
    }


def extension_iri(home_page: str, name: str) -> str:
    return f"{home_page}/xapi/extensions/{name}"


def statement_from_row(row: WatershedRow) -> dict[str, Any]:
    """The xAPI statement of one row, built directly from the table values (the template must render
    the CSV row into exactly this; the tests hold the two together)."""
    statement: dict[str, Any] = {
        "id": row.statement_id,
        "timestamp": format_timestamp(row.timestamp),
        "actor": {
            "objectType": "Agent",
            "account": {"homePage": row.actor_home_page, "name": row.actor_account},
        },
        "verb": {"id": row.verb_id, "display": {"en-US": row.verb_display}},
        "object": {
            "objectType": "Activity",
            "id": row.object_id,
            "definition": {"type": row.object_type, "name": {"en-US": row.object_name}},
        },
    }
    extensions: dict[str, Any] = {}
    if row.result_amount is not None:
        extensions[extension_iri(row.actor_home_page, "amount")] = row.result_amount.quantize(Decimal("0.01"))
    if row.result_currency:
        extensions[extension_iri(row.actor_home_page, "currency")] = row.result_currency
    if extensions:
        statement["result"] = {"extensions": extensions}
    statement["context"] = {
        "platform": PLATFORM,
        "extensions": {
            extension_iri(row.actor_home_page, "source"): {"type": row.source, "id": row.source_id}
        },
    }
    return statement


def row_problems(row: WatershedRow) -> list[str]:
    """What the statement validation cannot see: the bookkeeping columns of the row (same message form as
    :func:`validate_statement`)."""
    checks = [
        (
            bool(row.source and _SOURCE_NAME.match(row.source)),
            "ws_source",
            f"{row.source!r} is not a name of lower-case letters, digits and _",
        ),
        (bool(row.source_id), "ws_source_id", "is empty"),
        (
            row.result_amount is None or row.result_currency is not None,
            "ws_result_currency",
            "is null but ws_result_amount is set (an amount needs its currency)",
        ),
        (
            row.result_currency is None or bool(re.fullmatch(r"[A-Z]{3}", row.result_currency)),
            "ws_result_currency",
            f"{row.result_currency!r} is not an ISO 4217 code",
        ),
        (
            row.result_amount is None or row.result_amount.is_finite(),
            "ws_result_amount",
            f"{row.result_amount} is not a finite number",
        ),
    ]
    return [
        f"statement {row.statement_id or '(no id)'}: {column}: {message}"
        for ok, column, message in checks
        if not ok
    ]


# --------------------------------------------------------------------------------------------------
# The import template


def build_template() -> dict[str, Any]:
    """The import template: the CSV columns and the statement skeleton with ``{column}`` placeholders."""
    home = "{actor_home_page}"
    return {
        "format": TEMPLATE_FORMAT,
        "version": TEMPLATE_VERSION,
        "xapi_version": XAPI_VERSION,
        "columns": [
            {"name": c.name, "type": c.type, "required": c.required, "description": c.meaning}
            for c in CSV_COLUMNS
        ],
        "statement": {
            "id": "{statement_id}",
            "timestamp": "{timestamp}",
            "actor": {
                "objectType": "Agent",
                "account": {"homePage": home, "name": "{actor_account_name}"},
            },
            "verb": {"id": "{verb_id}", "display": {"en-US": "{verb_display}"}},
            "object": {
                "objectType": "Activity",
                "id": "{object_id}",
                "definition": {"type": "{object_type}", "name": {"en-US": "{object_name}"}},
            },
            "result": {
                "extensions": {
                    extension_iri(home, "amount"): "{result_amount}",
                    extension_iri(home, "currency"): "{result_currency}",
                }
            },
            "context": {
                "platform": PLATFORM,
                "extensions": {extension_iri(home, "source"): {"type": "{source}", "id": "{source_id}"}},
            },
        },
    }


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DROP = object()
"""Marker for a part of the skeleton left out because an optional column is empty."""


class _Renderer:
    """Renders a template skeleton for one CSV row (see :func:`render_statement`)."""

    def __init__(self, template: Mapping[str, Any], row: Mapping[str, str]) -> None:
        if template.get("format") != TEMPLATE_FORMAT or template.get("version") != TEMPLATE_VERSION:
            raise ValueError(f"not a {TEMPLATE_FORMAT} version {TEMPLATE_VERSION} template")
        self.columns: dict[str, Mapping[str, Any]] = {c["name"]: c for c in template["columns"]}
        self.row = row

    def cell(self, name: str) -> str | None:
        """The cell of a placeholder; None when an optional column is empty."""
        column = self.columns.get(name)
        if column is None:
            raise ValueError(f"template placeholder {{{name}}} names no column of the template")
        if name not in self.row:
            raise ValueError(f"CSV row has no column {name!r}")
        value = self.row[name]
        if value == "" and not column.get("required", False):
            return None
        return value

    def text(self, text: str) -> Any:
        names = _PLACEHOLDER.findall(text)
        if not names:
            return text
        cells = {name: self.cell(name) for name in names}
        if any(value is None for value in cells.values()):
            return _DROP
        whole = _PLACEHOLDER.fullmatch(text)
        if whole and self.columns[whole.group(1)].get("type") == "number":
            name, cell = whole.group(1), cells[whole.group(1)] or ""
            try:
                number = Decimal(cell)
            except InvalidOperation:
                number = Decimal("NaN")
            if not number.is_finite():
                raise ValueError(f"column {name!r} is not a number: {cell!r}")
            return number
        return _PLACEHOLDER.sub(lambda m: cells[m.group(1)] or "", text)

    def node(self, node: Any) -> Any:
        if isinstance(node, str):
            return self.text(node)
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for key, value in node.items():
                rendered_key, rendered = self.text(key), self.node(value)
                if rendered_key is _DROP or rendered is _DROP:
                    continue
                out[str(rendered_key)] = rendered
            return out if out or not node else _DROP
        if isinstance(node, list):
            items = [item for item in (self.node(i) for i in node) if item is not _DROP]
            return items if items or not node else _DROP
        return node


def render_statement(template: Mapping[str, Any], row: Mapping[str, str]) -> dict[str, Any]:
    """Map one CSV row (column name -> cell) to an xAPI statement with ``template``.

    Placeholders ``{column}`` are replaced in string values and in object keys. A value that is exactly
    one placeholder of a ``number`` column becomes a number (a ``Decimal``, exact). A value or key that
    refers to an empty optional column is left out, and so is an object or array left empty by that
    (this is how ``result`` disappears for a web event); an empty required column renders as ``""``.
    """
    rendered = _Renderer(template, row).node(template["statement"])
    if not isinstance(rendered, dict):
        raise ValueError("the template's statement renders to nothing")
    return rendered


# --------------------------------------------------------------------------------------------------
# Validation against xAPI 1.0.3 (structural)

_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+")
_IRL = re.compile(r"https?://[^\s/?#<>\"{}|\\^`]+[^\s<>\"{}|\\^`]*", re.IGNORECASE)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*|[xXiI](-[A-Za-z0-9]{1,8})+")
"""RFC 5646-like: a 2-3 letter primary language with subtags (en, en-US, zh-Hant-TW), or private use."""
_SHA1 = re.compile(r"[0-9a-f]{40}")

_STATEMENT_KEYS = frozenset(
    {"id", "actor", "verb", "object", "result", "context", "timestamp", "stored", "authority", "version"}
    | {"attachments"}
)
_SUBSTATEMENT_KEYS = frozenset({"objectType", "actor", "verb", "object", "result", "context", "timestamp"})
_AGENT_KEYS = frozenset({"objectType", "name", "mbox", "mbox_sha1sum", "openid", "account"})
_GROUP_KEYS = _AGENT_KEYS | {"member"}
_IFIS = ("mbox", "mbox_sha1sum", "openid", "account")
_VERB_KEYS = frozenset({"id", "display"})
_ACTIVITY_KEYS = frozenset({"objectType", "id", "definition"})
_DEFINITION_KEYS = frozenset(
    {"name", "description", "type", "moreInfo", "extensions", "interactionType", "correctResponsesPattern"}
    | {"choices", "scale", "source", "target", "steps"}
)
_RESULT_KEYS = frozenset({"score", "success", "completion", "response", "duration", "extensions"})
_CONTEXT_KEYS = frozenset(
    {"registration", "instructor", "team", "contextActivities", "revision", "platform", "language"}
    | {"statement", "extensions"}
)
_OBJECT_TYPES = ("Activity", "Agent", "Group", "SubStatement", "StatementRef")


def is_iri(value: Any) -> bool:
    """An absolute IRI with a scheme; http(s) IRIs need a host."""
    if not isinstance(value, str) or not _IRI.fullmatch(value):
        return False
    scheme = value.split(":", 1)[0].lower()
    return scheme not in ("http", "https") or bool(_IRL.fullmatch(value))


def is_uuid(value: Any) -> bool:
    """An RFC 4122 UUID (versions 1-5, RFC 4122 variant) in lower-case hex."""
    return isinstance(value, str) and bool(_UUID.fullmatch(value))


def is_timestamp(value: Any) -> bool:
    """ISO 8601 date and time with a time zone (xAPI forbids the offset -00:00)."""
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value) or value.endswith("-00:00"):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


class _Validator:
    def __init__(self, statement: Any) -> None:
        ident = statement.get("id") if isinstance(statement, dict) else None
        self.label = f"statement {ident}" if isinstance(ident, str) and ident else "statement (no id)"
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{self.label}: {path}: {message}")

    def keys(self, node: dict[str, Any], allowed: frozenset[str], path: str) -> None:
        for key in sorted(set(node) - allowed):
            self.problem(f"{path}.{key}" if path else key, "unknown property")

    def obj(self, node: Any, path: str) -> bool:
        if not isinstance(node, dict):
            self.problem(path, f"must be an object, not {_json_type(node)}")
            return False
        return True

    def iri(self, node: Any, path: str) -> None:
        if not is_iri(node):
            self.problem(path, f"must be an absolute IRI, not {node!r}")

    def language_map(self, node: Any, path: str) -> None:
        if not self.obj(node, path):
            return
        if not node:
            self.problem(path, "language map is empty")
        for tag, text in node.items():
            if not _LANGUAGE_TAG.fullmatch(tag):
                self.problem(f"{path}.{tag}", "key is not an RFC 5646 language tag")
            if not isinstance(text, str):
                self.problem(f"{path}.{tag}", f"must be a string, not {_json_type(text)}")

    def extensions(self, node: Any, path: str) -> None:
        if not self.obj(node, path):
            return
        for key in node:
            if not is_iri(key):
                self.problem(f"{path}[{key!r}]", "extension key is not an absolute IRI")

    def statement(self, node: Any) -> None:
        if not self.obj(node, "statement"):
            return
        self.keys(node, _STATEMENT_KEYS, "")
        if "id" in node and not is_uuid(node["id"]):
            self.problem("id", f"must be a lower-case RFC 4122 UUID, not {node['id']!r}")
        self.body(node, "")
        if "version" in node and not (
            isinstance(node["version"], str) and re.fullmatch(r"1\.0(\.\d+)?", node["version"])
        ):
            self.problem("version", f"must be a 1.0.x version, not {node['version']!r}")
        if "stored" in node and not is_timestamp(node["stored"]):
            self.problem("stored", f"must be an ISO 8601 timestamp with a time zone, not {node['stored']!r}")
        if "authority" in node:
            self.agent(node["authority"], "authority")
        verb = node.get("verb")
        if isinstance(verb, dict) and verb.get("id") == VOIDED_VERB:
            # xAPI 1.0.3, 2.3.2 Voiding: the object of a voiding statement is the StatementRef of the
            # statement it voids
            target = node.get("object")
            if not (isinstance(target, dict) and target.get("objectType") == "StatementRef"):
                self.problem("object", "a voiding statement's object must be a StatementRef")
            elif target.get("id") == node.get("id"):
                self.problem("object.id", "a statement cannot void itself")

    def body(self, node: dict[str, Any], prefix: str) -> None:
        """The parts a statement and a sub-statement share."""
        for required in ("actor", "verb", "object"):
            if required not in node:
                self.problem(prefix + required, "is required")
        if "actor" in node:
            self.agent(node["actor"], prefix + "actor")
        if "verb" in node:
            self.verb(node["verb"], prefix + "verb")
        if "object" in node:
            self.object(node["object"], prefix + "object", sub=bool(prefix))
        if "timestamp" in node and not is_timestamp(node["timestamp"]):
            self.problem(
                prefix + "timestamp", f"must be ISO 8601 with a time zone, not {node['timestamp']!r}"
            )
        if "result" in node:
            self.result(node["result"], prefix + "result")
        if "context" in node:
            self.context(node["context"], prefix + "context")

    def agent(self, node: Any, path: str) -> None:
        if not self.obj(node, path):
            return
        kind = node.get("objectType", "Agent")
        if kind not in ("Agent", "Group"):
            self.problem(f"{path}.objectType", f"must be Agent or Group, not {kind!r}")
            return
        self.keys(node, _AGENT_KEYS if kind == "Agent" else _GROUP_KEYS, path)
        ifis = [key for key in _IFIS if key in node]
        if kind == "Agent" and len(ifis) != 1:
            found = ", ".join(ifis) or "none"
            self.problem(path, f"an Agent needs exactly one inverse functional identifier (found {found})")
        if kind == "Group":
            if len(ifis) > 1:
                self.problem(
                    path, f"a Group has at most one inverse functional identifier (found {', '.join(ifis)})"
                )
            if not ifis and not (isinstance(node.get("member"), list) and node["member"]):
                self.problem(f"{path}.member", "an anonymous Group needs members")
            for i, member in enumerate(node.get("member") or []):
                if isinstance(member, dict) and member.get("objectType", "Agent") != "Agent":
                    self.problem(f"{path}.member[{i}].objectType", "a Group member must be an Agent")
                self.agent(member, f"{path}.member[{i}]")
        if "name" in node and not isinstance(node["name"], str):
            self.problem(f"{path}.name", "must be a string")
        if "mbox" in node and not (
            isinstance(node["mbox"], str) and re.fullmatch(r"mailto:[^@\s]+@[^@\s]+", node["mbox"])
        ):
            self.problem(f"{path}.mbox", f"must be a mailto: IRI, not {node['mbox']!r}")
        if "mbox_sha1sum" in node and not (
            isinstance(node["mbox_sha1sum"], str) and _SHA1.fullmatch(node["mbox_sha1sum"])
        ):
            self.problem(f"{path}.mbox_sha1sum", "must be 40 lower-case hex digits")
        if "openid" in node:
            self.iri(node["openid"], f"{path}.openid")
        if "account" in node:
            self.account(node["account"], f"{path}.account")

    def account(self, node: Any, path: str) -> None:
        if not self.obj(node, path):
            return
        self.keys(node, frozenset({"homePage", "name"}), path)
        if "homePage" not in node:
            self.problem(f"{path}.homePage", "is required")
        elif not (isinstance(node["homePage"], str) and _IRL.fullmatch(node["homePage"])):
            self.problem(f"{path}.homePage", f"must be an http(s) IRL, not {node['homePage']!r}")
        if "name" not in node:
            self.problem(f"{path}.name", "is required")
        elif not (isinstance(node["name"], str) and node["name"]):
            self.problem(f"{path}.name", "must be a non-empty string")

    def verb(self, node: Any, path: str) -> None:
        if not self.obj(node, path):
            return
        self.keys(node, _VERB_KEYS, path)
        if "id" not in node:
            self.problem(f"{path}.id", "is required")
        else:
            self.iri(node["id"], f"{path}.id")
        if "display" in node:
            self.language_map(node["display"], f"{path}.display")

    def object(self, node: Any, path: str, *, sub: bool) -> None:
        if not self.obj(node, path):
            return
        kind = node.get("objectType", "Activity")
        if kind not in _OBJECT_TYPES:
            self.problem(f"{path}.objectType", f"must be one of {', '.join(_OBJECT_TYPES)}, not {kind!r}")
        elif kind == "Activity":
            self.keys(node, _ACTIVITY_KEYS, path)
            if "id" not in node:
                self.problem(f"{path}.id", "is required")
            else:
                self.iri(node["id"], f"{path}.id")
            if "definition" in node:
                self.definition(node["definition"], f"{path}.definition")
        elif kind in ("Agent", "Group"):
            self.agent(node, path)
        elif kind == "StatementRef":
            self.keys(node, frozenset({"objectType", "id"}), path)
            if not is_uuid(node.get("id")):
                self.problem(f"{path}.id", f"must be a lower-case RFC 4122 UUID, not {node.get('id')!r}")
        elif sub:
            self.problem(f"{path}.objectType", "a SubStatement cannot contain a SubStatement")
        else:
            self.keys(node, _SUBSTATEMENT_KEYS, path)
            self.body(node, f"{path}.")

    def definition(self, node: Any, path: str) -> None:
        if not self.obj(node, path):
            return
        self.keys(node, _DEFINITION_KEYS, path)
        for key in ("name", "description"):
            if key in node:
                self.language_map(node[key], f"{path}.{key}")
        if "type" in node:
            self.iri(node["type"], f"{path}.type")
        if "moreInfo" in node and not (
            isinstance(node["moreInfo"], str) and _IRL.fullmatch(node["moreInfo"])
        ):
            self.problem(f"{path}.moreInfo", f"must be an http(s) IRL, not {node['moreInfo']!r}")
        if "extensions" in node:
            self.extensions(node["extensions"], f"{path}.extensions")

    def result(self, node: Any, path: str) -> None:
        if not self.obj(node, path):
            return
        self.keys(node, _RESULT_KEYS, path)
        for key in ("success", "completion"):
            if key in node and not isinstance(node[key], bool):
                self.problem(f"{path}.{key}", "must be true or false")
        if "response" in node and not isinstance(node["response"], str):
            self.problem(f"{path}.response", "must be a string")
        if "score" in node:
            self.obj(node["score"], f"{path}.score")
        if "extensions" in node:
            self.extensions(node["extensions"], f"{path}.extensions")

    def context(self, node: Any, path: str) -> None:
        if not self.obj(node, path):
            return
        self.keys(node, _CONTEXT_KEYS, path)
        if "registration" in node and not is_uuid(node["registration"]):
            self.problem(f"{path}.registration", "must be a lower-case RFC 4122 UUID")
        for key in ("platform", "revision"):
            if key in node and not isinstance(node[key], str):
                self.problem(f"{path}.{key}", "must be a string")
        if "language" in node and not (
            isinstance(node["language"], str) and _LANGUAGE_TAG.fullmatch(node["language"])
        ):
            self.problem(f"{path}.language", "must be an RFC 5646 language tag")
        if "instructor" in node:
            self.agent(node["instructor"], f"{path}.instructor")
        if "team" in node:
            self.agent(node["team"], f"{path}.team")
        if "extensions" in node:
            self.extensions(node["extensions"], f"{path}.extensions")


def validate_statement(statement: Any) -> list[str]:
    """The problems of one statement against the structure of xAPI 1.0.3, each naming the statement id and
    the path (``statement 2f1c...: actor.account.homePage: ...``); empty when it is valid.

    Structural only: required properties, inverse functional identifiers, IRIs (absolute, with a scheme),
    UUIDs, timestamps, language maps and unknown properties. ``id`` and ``timestamp`` are optional, as in
    the specification (an export always sets both)."""
    validator = _Validator(statement)
    validator.statement(statement)
    return validator.problems


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


# --------------------------------------------------------------------------------------------------
# JSON text (fixed: insertion key order, compact separators, UTF-8, exact decimals)


def encode_json(value: Any) -> str:
    """Compact JSON with the keys in insertion order and ``Decimal`` written exactly as its plain decimal
    (``12.50``): the standard encoder would need floats, which are not exact."""
    if isinstance(value, dict):
        return "{" + ",".join(_string(k) + ":" + encode_json(v) for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode_json(v) for v in value) + "]"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} cannot be written as JSON")
        return f"{value:f}"
    if isinstance(value, str | bool | int) or value is None:
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _orjson_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} cannot be written as JSON")
        return orjson.Fragment(f"{value:f}".encode())
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def encode_json_bytes(value: Any) -> bytes:
    """:func:`encode_json` with orjson (the same text, as UTF-8 bytes): compact, keys in insertion
    order, ``Decimal`` as its exact plain decimal (an orjson fragment), no float anywhere."""
    return orjson.dumps(value, default=_orjson_default)


def _string(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
    return json.dumps(key, ensure_ascii=False)


def template_text() -> str:
    """The template file's text: indented for people to read, keys in the documented order."""
    return json.dumps(build_template(), ensure_ascii=False, indent=2) + "\n"


# --------------------------------------------------------------------------------------------------
# Writing the files


class _HashedFile:
    """A UTF-8 text sink over a binary temporary file that counts and hashes what it writes."""

    def __init__(self, kind: str, final: Path) -> None:
        self.kind = kind
        self.final = final
        handle, self.temp = temporary_file(final)
        self.raw: IO[bytes] = os.fdopen(handle, "wb")
        self.digest = hashlib.sha256()
        self.bytes = 0
        self.rows = 0

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self.raw.write(data)
        self.digest.update(data)
        self.bytes += len(data)
        return len(text)

    def finish(self) -> None:
        self.raw.flush()
        os.fsync(self.raw.fileno())
        self.raw.close()
        os.chmod(self.temp, 0o644)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.raw.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()

    def commit(self) -> ExportFile:
        os.replace(self.temp, self.final)
        return ExportFile(self.kind, self.final, self.rows, self.bytes, self.digest.hexdigest())


#: the meta key of a semantic model whose rows are a Watershed upload (the columns of WatershedRow):
#: ``meta: {etl_watershed_export: <name>}`` exports it as ``<name>_<run id>.*`` after every build
WATERSHED_META_KEY = "etl_watershed_export"
_EXPORT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _select(table: str, *, resume: bool = False) -> str:
    """The export query; with ``resume``, for the rows after (ws_timestamp, ws_statement_id) = (%s, %s)."""
    return (
        "select ws_statement_id, ws_timestamp, ws_actor_home_page, ws_actor_account, ws_verb_id,"
        " ws_verb_display, ws_object_id, ws_object_type, ws_object_name, ws_result_amount,"
        " ws_result_currency, ws_source, ws_source_id"
        f" from {table}"
        + (" where (ws_timestamp, ws_statement_id) > (%s, %s)" if resume else "")
        + " order by ws_timestamp, ws_statement_id"
    )


def watershed_exports(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Export name -> ``schema.table`` of every model declaring ``meta: {etl_watershed_export: <name>}``
    (the demo's watershed_statements declares ``watershed``). A malformed name, or one two models
    declare, is a ConfigurationError naming the model."""
    exports: dict[str, str] = {}
    for node, name in models_declaring(manifest, WATERSHED_META_KEY):
        if not isinstance(name, str) or not _EXPORT_NAME.match(name):
            raise ConfigurationError(
                f"{model_label(node)}: meta {WATERSHED_META_KEY} must be a name of lower-case letters, digits"
                f" and _, not {name!r}"
            )
        if name in exports:
            raise ConfigurationError(
                f"{model_label(node)}: Watershed export {name!r} is already declared by {exports[name]}"
            )
        exports[name] = f"{node.get('schema') or 'semantic'}.{node.get('alias') or node['name']}"
    return exports


def _stream_rows(
    conn: psycopg.Connection[Any],
    table: str = TABLE,
    *,
    reconnect: Callable[[], psycopg.Connection[Any]] | None = None,
) -> Iterator[WatershedRow]:
    """The table's rows in export order through a server-side cursor, ``FETCH_ROWS`` at a time. A UUID in
    text form sorts the same under every collation, so the order does not depend on the database's.

    The order is a unique key (the statement id is unique), so with ``reconnect`` a lost connection
    resumes after the last row read, on a new connection: the files get every row once, as without
    the interruption."""

    def statement(_conn: psycopg.Connection[Any], after: Sequence[Any] | None) -> tuple[Any, Sequence[Any]]:
        return _select(table, resume=after is not None), tuple(after or ())

    read = KeysetRead(
        statement,
        connect=reconnect,
        first=conn,
        name=f"watershed export of {table}",
        cursor_name="watershed_export",
        fetch_rows=FETCH_ROWS,
        position=lambda record: (record[1], record[0]),
    )
    for batch in read.batches():
        assert isinstance(batch, list)  # a read by key never starts again
        for record in batch:
            if record[1] is None:
                raise TransformError(f"watershed export: statement {record[0]}: ws_timestamp is null")
            yield WatershedRow(*record)


class WatershedExport:
    """One export of ``semantic.watershed_statements`` into ``folder`` as ``<file_stem>.*``."""

    def __init__(self, folder: Path, file_stem: str, table: str = TABLE) -> None:
        if not file_stem or file_stem in (".", "..") or "/" in file_stem or os.sep in file_stem:
            raise ValueError(f"file stem {file_stem!r} must be a plain file name")
        self.folder = Path(folder)
        self.file_stem = file_stem
        self.table = table

    def path(self, suffix: str) -> Path:
        return self.folder / f"{self.file_stem}{suffix}"

    def run(
        self, conn: psycopg.Connection[Any], reconnect: Callable[[], psycopg.Connection[Any]] | None = None
    ) -> list[ExportFile]:
        self.folder.mkdir(parents=True, exist_ok=True)
        files: list[_HashedFile] = []
        try:
            csv_file = _HashedFile("watershed_csv", self.path(".csv"))
            files.append(csv_file)
            template_file = _HashedFile("watershed_template", self.path(".template.json"))
            files.append(template_file)
            xapi_file = _HashedFile("watershed_xapi", self.path(".xapi.json"))
            files.append(xapi_file)

            template_file.write(template_text())
            self._write_statements(conn, csv_file, xapi_file, reconnect)
            for file in files:
                file.finish()
        except BaseException:
            for file in files:
                file.discard()
            raise
        results = [file.commit() for file in files]
        _fsync_folder(self.folder)
        return results

    def _write_statements(
        self,
        conn: psycopg.Connection[Any],
        csv_file: _HashedFile,
        xapi_file: _HashedFile,
        reconnect: Callable[[], psycopg.Connection[Any]] | None,
    ) -> None:
        writer = csv.writer(csv_file, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(CSV_HEADER)
        xapi_file.write("[")
        with contextlib.closing(_stream_rows(conn, self.table, reconnect=reconnect)) as rows:
            for row in rows:
                statement = self._statement(row)
                cells = csv_row(row)
                writer.writerow([cells[name] for name in CSV_HEADER])
                xapi_file.write(("\n" if xapi_file.rows == 0 else ",\n") + encode_json(statement))
                csv_file.rows += 1
                xapi_file.rows += 1
        xapi_file.write("\n]\n")

    @staticmethod
    def _statement(row: WatershedRow) -> dict[str, Any]:
        """The row's statement, or TransformError naming the statement and every problem found."""
        problems = row_problems(row)
        if not problems:
            statement = statement_from_row(row)
            problems = validate_statement(statement)
        if problems:
            raise TransformError(
                f"watershed export: invalid row ({row.source} {row.source_id}): " + "; ".join(problems)
            )
        return statement


def export_watershed(
    conn: psycopg.Connection[Any],
    folder: Path,
    file_stem: str,
    table: str = TABLE,
    *,
    reconnect: Callable[[], psycopg.Connection[Any]] | None = None,
) -> list[ExportFile]:
    """Write ``<file_stem>.csv``, ``<file_stem>.template.json`` and ``<file_stem>.xapi.json`` into
    ``folder`` from ``table`` (a model declaring meta etl_watershed_export) and describe them.

    Rows are streamed (server-side cursor) and written as they come; each file goes to a temporary file in
    ``folder`` and is renamed into place only when every statement was valid. An invalid statement raises
    :class:`~etl_shared.TransformError` and leaves none of the three files behind (an earlier export
    under the same names stays as it was).

    With ``reconnect`` (a new connection), a connection lost mid-read is replaced and the read goes on
    after the last row written (nothing of a file is visible before its rename)."""
    return WatershedExport(folder, file_stem, table).run(conn, reconnect)


_fsync_folder = fsync_folder


# --------------------------------------------------------------------------------------------------
# Streaming validation


def _context_shape(context: Any) -> Any:
    """What the validation reads of a context, less the extension values (any JSON, per record):
    its properties, platform and extension keys."""
    if not isinstance(context, dict):
        return orjson.dumps(context, default=_orjson_default)
    extensions = context.get("extensions")
    others = {k: v for k, v in context.items() if k != "extensions"}
    return (
        orjson.dumps(others, default=_orjson_default),
        tuple(extensions)
        if isinstance(extensions, dict)
        else orjson.dumps(extensions, default=_orjson_default),
    )


class StatementChecker:
    """The validation of :func:`validate_statement` for the statements of an export, as they stream.

    The values a row brings itself (id, timestamp, actor account name, object id and name; for a voiding
    statement the id it voids) are checked against the same rules on every statement; the whole statement
    goes through :func:`validate_statement` the first time its shape and shared values are seen (home
    page, verb, activity type, which optional parts it has), and again whenever a row's own values fail, so
    that the problems are named exactly as the full validation names them. What it accepts, the full
    validation accepts (tests/semantic/test_semantic_watershed.py holds the two together)."""

    def __init__(self) -> None:
        self.seen: set[tuple[Any, ...]] = set()

    @staticmethod
    def _shape(statement: dict[str, Any]) -> tuple[Any, ...]:
        verb, target = statement["verb"], statement["object"]
        definition = target.get("definition") or {}
        result = statement.get("result")
        actor = statement["actor"]
        return (
            tuple(statement),
            tuple(actor),
            actor.get("objectType"),
            tuple(actor["account"]),
            actor["account"]["homePage"],
            tuple(verb),
            tuple(target),
            verb["id"],
            tuple((verb.get("display") or {}).items()),
            target.get("objectType"),
            definition.get("type"),
            tuple(definition),
            tuple((definition.get("name") or {}).keys()),
            (tuple(result), tuple(result.get("extensions") or {})) if result else None,
            _context_shape(statement.get("context")),
        )

    @staticmethod
    def _own_values_ok(statement: dict[str, Any]) -> bool:
        name = statement["actor"]["account"].get("name")
        target = statement["object"]
        if not (is_uuid(statement.get("id")) and is_timestamp(statement.get("timestamp"))):
            return False
        if not (isinstance(name, str) and name):
            return False
        if target.get("objectType") == "StatementRef":
            return is_uuid(target.get("id")) and target["id"] != statement["id"]
        names = (target.get("definition") or {}).get("name") or {}
        return is_iri(target.get("id")) and all(isinstance(text, str) for text in names.values())

    def problems(self, statement: dict[str, Any]) -> list[str]:
        try:
            shape = self._shape(statement)
            fast = self._own_values_ok(statement)
        except (KeyError, TypeError, AttributeError):
            return validate_statement(statement)
        if fast and shape in self.seen:
            return []
        problems = validate_statement(statement)
        if not problems:
            self.seen.add(shape)
        return problems


# --------------------------------------------------------------------------------------------------
# The incremental export: the change ledger's rows written since the last export


#: the columns of the platform's change ledger (etl_platform.ledger_rows with prefix ws): a table with
#: them is exported incrementally (:func:`export_watershed_changes`)
LEDGER_COLUMNS = ("ws_row_hash", "ws_is_voided", "ws_run_id", "ws_changed_at")
MANIFEST_FORMAT = "etl-watershed-manifest"
MANIFEST_VERSION = 1
VOIDED_CSV_HEADER = (
    "statement_id",
    "timestamp",
    "actor_home_page",
    "actor_account_name",
    "voided_statement_id",
)
"""The layout of ``<stem>.voided.csv``: one voiding statement per row."""


def voiding_statement_id(voided_id: str) -> str:
    """The id of the statement that voids ``voided_id``: a UUID of it (version 5), so that voiding the
    same statement again gives the same statement."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:etl:watershed:voided:{voided_id}"))


def voiding_statement(row: WatershedRow, voided_at: datetime) -> dict[str, Any]:
    """The statement voiding ``row``'s (xAPI 1.0.3, 2.3.2): the same actor, the verb voided, the
    voided statement as a StatementRef; its timestamp is when the ledger voided the row."""
    return {
        "id": voiding_statement_id(row.statement_id),
        "timestamp": format_timestamp(voided_at),
        "actor": {
            "objectType": "Agent",
            "account": {"homePage": row.actor_home_page, "name": row.actor_account},
        },
        "verb": {"id": VOIDED_VERB, "display": {"en-US": "voided"}},
        "object": {"objectType": "StatementRef", "id": row.statement_id},
    }


def is_ledger_table(conn: psycopg.Connection[Any], table: str) -> bool:
    """Whether ``table`` (schema.table) has the change ledger's columns."""
    schema, _, name = table.partition(".")
    found = conn.execute(
        "select count(*) from information_schema.columns where table_schema = %s and table_name = %s"
        " and column_name = any(%s)",
        (schema, name, list(LEDGER_COLUMNS)),
    ).fetchone()
    return bool(found) and found[0] == len(LEDGER_COLUMNS)


def _select_changes(table: str, *, resume: bool = False) -> str:
    """The rows of the runs the export has not written (the current run's included, so that a rerun
    writes its batch again): voided rows first, then new ones, each by (ws_timestamp, ws_statement_id).
    Parameters: export name, run id[, resume position]."""
    return (
        "select ws_statement_id, ws_timestamp, ws_actor_home_page, ws_actor_account, ws_verb_id,"
        " ws_verb_display, ws_object_id, ws_object_type, ws_object_name, ws_result_amount,"
        " ws_result_currency, ws_source, ws_source_id, ws_is_voided, ws_changed_at"
        f" from {table}"
        " where ws_run_id not in (select batches.run_id from ops.export_batches as batches"
        " where batches.export_name = %s and batches.run_id <> %s)"
        + (" and (not ws_is_voided, ws_timestamp, ws_statement_id) > (%s, %s, %s)" if resume else "")
        + " order by not ws_is_voided, ws_timestamp, ws_statement_id"
    )


def _stream_changes(
    conn: psycopg.Connection[Any],
    table: str,
    export_name: str,
    run_id: str,
    *,
    reconnect: Callable[[], psycopg.Connection[Any]] | None = None,
) -> Iterator[tuple[WatershedRow, bool, datetime | None]]:
    def statement(_conn: psycopg.Connection[Any], after: Sequence[Any] | None) -> tuple[Any, Sequence[Any]]:
        return _select_changes(table, resume=after is not None), (export_name, run_id, *(after or ()))

    read = KeysetRead(
        statement,
        connect=reconnect,
        first=conn,
        name=f"watershed export of {table}",
        cursor_name="watershed_export",
        fetch_rows=FETCH_ROWS,
        position=lambda record: (not record[13], record[1], record[0]),
    )
    for batch in read.batches():
        assert isinstance(batch, list)
        for record in batch:
            if record[1] is None:
                raise TransformError(f"watershed export: statement {record[0]}: ws_timestamp is null")
            yield WatershedRow(*record[:13]), bool(record[13]), record[14]


def _file_entry(file: ExportFile) -> dict[str, Any]:
    return {
        "kind": file.kind,
        "name": file.path.name,
        "rows": file.rows,
        "bytes": file.bytes,
        "sha256": file.sha256,
    }


class WatershedChangesExport:
    """One incremental export of a change-ledger table (see :func:`export_watershed_changes`)."""

    def __init__(
        self, db: Any, folder: Path, export_name: str, run_id: str, table: str, *, job_id: str, zone: str
    ) -> None:
        stem = f"{export_name}_{run_id}"
        if not export_name or "/" in stem or os.sep in stem or stem in (".", ".."):
            raise ValueError(f"file stem {stem!r} must be a plain file name")
        self.db = db
        self.folder = Path(folder)
        self.export_name = export_name
        self.run_id = run_id
        self.stem = stem
        self.table = table
        self.job_id = job_id
        self.zone = zone
        self.checker = StatementChecker()

    def path(self, suffix: str) -> Path:
        return self.folder / f"{self.stem}{suffix}"

    def run(self) -> list[ExportFile]:
        self.folder.mkdir(parents=True, exist_ok=True)
        batch_files = self._write_batch()
        if batch_files is not None:
            self._record_batch(batch_files)
        manifest = self._write_manifest()
        _fsync_folder(self.folder)
        return [*(batch_files or []), manifest]

    def _write_batch(self) -> list[ExportFile] | None:
        """The batch's files in place, or None when no row changed since the last export (and this
        run wrote no batch before)."""
        files: list[_HashedFile] = []
        try:
            csv_file = _HashedFile("watershed_csv", self.path(".csv"))
            voided_file = _HashedFile("watershed_voided_csv", self.path(".voided.csv"))
            template_file = _HashedFile("watershed_template", self.path(".template.json"))
            xapi_file = _HashedFile("watershed_xapi", self.path(".xapi.json"))
            files += [csv_file, voided_file, template_file, xapi_file]
            template_file.write(template_text())
            written = self._write_statements(csv_file, voided_file, xapi_file)
            for file in files:
                file.finish()
        except BaseException:
            for file in files:
                file.discard()
            raise
        if not written and not self._batch_recorded():
            for file in files:
                file.discard()
            return None
        return [file.commit() for file in files]

    def _write_statements(
        self, csv_file: _HashedFile, voided_file: _HashedFile, xapi_file: _HashedFile
    ) -> int:
        writer = csv.writer(csv_file, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(CSV_HEADER)
        voided_writer = csv.writer(voided_file, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        voided_writer.writerow(VOIDED_CSV_HEADER)
        raw, digest = xapi_file.raw, xapi_file.digest
        pending: list[bytes] = [b"["]

        def flush() -> None:
            data = b"".join(pending)
            raw.write(data)
            digest.update(data)
            xapi_file.bytes += len(data)
            pending.clear()

        with (
            self.db.connect(autocommit=True) as conn,
            contextlib.closing(
                _stream_changes(
                    conn,
                    self.table,
                    self.export_name,
                    self.run_id,
                    reconnect=lambda: self.db.open_connection(autocommit=True),
                )
            ) as rows,
        ):
            for row, is_voided, changed_at in rows:
                if is_voided:
                    if changed_at is None:
                        raise TransformError(
                            f"watershed export: voided statement {row.statement_id}: ws_changed_at is null"
                        )
                    statement = voiding_statement(row, changed_at)
                    self._check(row, statement, bookkeeping=False)
                    voided_writer.writerow(
                        [
                            statement["id"],
                            statement["timestamp"],
                            row.actor_home_page,
                            row.actor_account,
                            row.statement_id,
                        ]
                    )
                    voided_file.rows += 1
                else:
                    statement = statement_from_row(row)
                    self._check(row, statement, bookkeeping=True)
                    cells = csv_row(row)
                    writer.writerow([cells[name] for name in CSV_HEADER])
                    csv_file.rows += 1
                pending.append(b"\n" if xapi_file.rows == 0 else b",\n")
                pending.append(encode_json_bytes(statement))
                xapi_file.rows += 1
                if len(pending) >= 2 * FETCH_ROWS:
                    flush()
        pending.append(b"\n]\n")
        flush()
        return xapi_file.rows

    def _check(self, row: WatershedRow, statement: dict[str, Any], *, bookkeeping: bool) -> None:
        problems = row_problems(row) if bookkeeping else []
        if not problems:
            problems = self.checker.problems(statement)
        if problems:
            raise TransformError(
                f"watershed export: invalid row ({row.source} {row.source_id}): " + "; ".join(problems)
            )

    def _batch_recorded(self) -> bool:
        with self.db.connect(autocommit=True) as conn:
            return (
                conn.execute(
                    "select 1 from ops.export_batches where export_name = %s and run_id = %s",
                    (self.export_name, self.run_id),
                ).fetchone()
                is not None
            )

    def _record_batch(self, files: list[ExportFile]) -> None:
        """This run's batch in ops.export_batches, after the next sequence number of the export (a
        rerun keeps the number it had; safe to retry: the key makes a second insert a no-op)."""
        statements = next(f.rows for f in files if f.kind == "watershed_csv")
        voided = next(f.rows for f in files if f.kind == "watershed_voided_csv")
        entries = orjson.dumps([_file_entry(f) for f in files]).decode()

        def work(conn: Any) -> None:
            conn.execute(
                "insert into ops.export_batches (export_name, run_id, sequence_no, zone, job_id, statements,"
                " voided, files, exported_at)"
                " select %s, %s, coalesce(max(sequence_no), 0) + 1, %s, %s, %s, %s, %s::jsonb, now()"
                " from ops.export_batches where export_name = %s"
                " on conflict (export_name, run_id) do nothing",
                (
                    self.export_name,
                    self.run_id,
                    self.zone,
                    self.job_id,
                    statements,
                    voided,
                    entries,
                    self.export_name,
                ),
            )

        self.db.transaction(work, name=f"record the {self.export_name} export batch")

    def _write_manifest(self) -> ExportFile:
        """``<stem>.manifest.json``: every batch of the export up to this run's, in upload order; replayed
        in order, their files make the current state (statements minus the ones voided)."""
        with self.db.connect(autocommit=True) as conn:
            batches = conn.execute(
                "select sequence_no, run_id, statements, voided, files from ops.export_batches"
                " where export_name = %s and sequence_no <= coalesce("
                "  (select mine.sequence_no from ops.export_batches as mine"
                "   where mine.export_name = %s and mine.run_id = %s),"
                "  (select max(every.sequence_no) from ops.export_batches as every where every.export_name = %s),"
                "  0)"
                " order by sequence_no",
                (self.export_name, self.export_name, self.run_id, self.export_name),
            ).fetchall()
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "xapi_version": XAPI_VERSION,
            "export": self.export_name,
            "run_id": self.run_id,
            "statements": sum(b[2] for b in batches) - sum(b[3] for b in batches),
            "batches": [
                {"sequence": seq, "run_id": run, "statements": new, "voided": voided, "files": files}
                for seq, run, new, voided, files in batches
            ],
        }
        file = _HashedFile("watershed_manifest", self.path(".manifest.json"))
        try:
            file.write(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
            file.rows = len(batches)
            file.finish()
        except BaseException:
            file.discard()
            raise
        return file.commit()


def export_watershed_changes(
    db: Any,
    folder: Path,
    export_name: str,
    run_id: str,
    table: str = TABLE,
    *,
    job_id: str,
    zone: str = "semantic",
) -> list[ExportFile]:
    """The incremental Watershed export of a change-ledger table (etl_platform.ledger_rows): the rows
    of every run not exported yet (this run's included) as ``<name>_<run_id>.csv`` (new statements),
    ``.voided.csv`` (voiding statements), ``.template.json`` and ``.xapi.json`` (both kinds, voiding
    first), recorded as the export's next batch in ``ops.export_batches``, and
    ``<name>_<run_id>.manifest.json`` listing every batch so far with its files' rows and sha256. No row
    changed: no batch, only the manifest. A rerun of the same run id writes the same bytes.

    Statements are validated as they stream (:class:`StatementChecker`); an invalid one raises
    :class:`~etl_shared.TransformError` and leaves no file of the batch and no batch row behind."""
    return WatershedChangesExport(db, folder, export_name, run_id, table, job_id=job_id, zone=zone).run()
