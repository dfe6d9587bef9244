"""Source configuration: a YAML file validated with pydantic at start.

Secrets are never written inline: connections name an environment variable (``url_env``) or a
secret file, and the configuration refuses keys that look like inline credentials.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from etl_shared import ConfigurationError, register_url_password, url_password_problem

from ._contract import DEFAULT_CONTRACT, ContractMode, DeclaredColumns, columns_field, contract_field
from ._identifiers import Identifier
from ._rest import AsyncRestEntity, NoAuth, RestAuth, RestConnection, RestEntity
from ._roots import FileRoots, check_file_paths
from ._xml import check_namespaces, records_element

_NAME = r"^[a-z][a-z0-9_]{0,62}$"


def freshness_sla_field() -> Any:
    """``freshness_sla_hours``: the longest acceptable age of the last committed pull (alert, status)."""
    return Field(
        default=None,
        gt=0,
        description="Hours after which an entity without a newer committed pull is stale; on the source,"
        " overridable per entity",
    )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConnection(_Strict):
    url_env: str | None = Field(
        default=None, description="Environment variable holding the source database URL"
    )
    url_file: str | None = Field(default=None, description="File in the secrets folder holding the URL")
    embedded_database: str | None = Field(
        default=None,
        description="With no URL in the environment and an embedded warehouse, use this database on it (demo)",
    )

    @model_validator(mode="after")
    def _one_reference(self) -> DatabaseConnection:
        if (self.url_env is None) == (self.url_file is None):
            raise ValueError("give exactly one of url_env (environment variable) or url_file (secret file)")
        return self


class KeyReconciliation(_Strict):
    """Deletes of an incremental entity: its key set is pulled (a pull of mode ``keys``), and the
    conformed history records a delete for each current key missing from it."""

    every_days: float = Field(
        default=0,
        ge=0,
        description="0: after every pull; N: after a pull when the last key listing is N days old or more",
    )
    max_drop_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="a listing with this share fewer keys than the previous one is refused (exit 4), not"
        " turned into deletes: a source that answers with an empty or truncated table must not empty the"
        " history; 1: never refused",
    )


class DatabaseEntity(_Strict):
    name: str = Field(pattern=_NAME)
    table: str = Field(pattern=r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$", description="schema.table")
    key: list[Identifier] = Field(
        default_factory=list, description="Columns ordering a full pull (deterministic)"
    )
    cursor: Identifier | None = Field(
        default=None, description="Watermark column: incremental pulls when set"
    )
    reconcile_keys: KeyReconciliation | None = Field(
        default=None, description="Incremental entities: pull the key set on a schedule, to see hard deletes"
    )
    freshness_sla_hours: float | None = freshness_sla_field()
    keep_unchanged_pulls: bool = Field(
        default=False,
        description="Keep every full pull (and key listing) as a new committed snapshot, even one equal to"
        " the previous (default: an unchanged pull is recorded as 'unchanged' and its batches removed)",
    )
    contract: ContractMode | None = contract_field()
    columns: DeclaredColumns = columns_field()

    @model_validator(mode="after")
    def _check_reconciliation(self) -> DatabaseEntity:
        if self.reconcile_keys is not None and (self.cursor is None or not self.key):
            raise ValueError(
                f"entity {self.name}: reconcile_keys needs an incremental entity (cursor) with a key; an entity"
                " pulled whole already shows its deletes"
            )
        return self


class FileGroup(_Strict):
    path: str = Field(description="Path or glob; {data_dir} is replaced by the data folder")
    format: Literal["csv", "jsonl", "json", "xml", "parquet"]
    encoding: str = "utf-8-sig"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quotechar: str = Field(default='"', min_length=1, max_length=1)
    records_path: str | None = Field(
        default=None,
        description="JSON: dotted key of the record list; XML: the record element, 'name' (no namespace),"
        " '{uri}name' or 'prefix:name' (a prefix of namespaces)",
    )
    namespaces: dict[str, str] = Field(
        default_factory=dict,
        description="XML: namespace prefixes (prefix: uri) for records_path and for the keys of elements and"
        " attributes of a namespace",
    )
    arrays: list[str] = Field(
        default_factory=list,
        description="XML: element keys always stored as a JSON array, even when the element occurs once",
    )
    rename: dict[str, Identifier] = Field(
        default_factory=dict, description="Field renames applied to every record (new names are identifiers)"
    )

    @model_validator(mode="after")
    def _check_xml_options(self) -> FileGroup:
        if self.format != "xml":
            if self.namespaces or self.arrays:
                raise ValueError("namespaces and arrays are options of format xml")
            return self
        check_namespaces(self.namespaces)
        if self.records_path is not None:
            records_element(self.records_path, self.namespaces)  # ValueError: what to write instead
        return self


class FileEntity(_Strict):
    name: str = Field(pattern=_NAME)
    files: list[FileGroup] = Field(min_length=1)
    keep_payload: bool = Field(default=True, description="Store the file bytes as fetched")
    skip_loaded_files: bool = Field(
        default=False,
        description="Drop folders: skip a file whose checksum a committed pull of this entity already loaded",
    )
    on_empty: Literal["warn", "fail"] = Field(
        default="warn",
        description="A file that holds no record (empty, a header only, an empty record list, an XML"
        " path that matches nothing): warn: a WARNING names it and the pull goes on; fail: the pull fails"
        " (exit 3)",
    )
    on_bad_record: Literal["fail", "quarantine"] = Field(
        default="fail",
        description="A record that cannot be read (a malformed line, a wrong number of fields, a NUL"
        " character, invalid UTF-8 in a JSON line, a value that is not an object): fail: the pull"
        " fails naming file and line (exit 3); quarantine: the line is kept in staging.rejected_records"
        " with file, line and reason, and the pull goes on",
    )
    max_bad_share: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="on_bad_record quarantine: the pull fails (exit 3) when more than this share of its"
        " records is rejected",
    )
    freshness_sla_hours: float | None = freshness_sla_field()
    keep_unchanged_pulls: bool = Field(
        default=False,
        description="Keep every full pull (and key listing) as a new committed snapshot, even one equal to"
        " the previous (default: an unchanged pull is recorded as 'unchanged' and its batches removed)",
    )
    contract: ContractMode | None = contract_field()
    columns: DeclaredColumns = columns_field()


class _SourceBase(_Strict):
    name: str = Field(pattern=_NAME)
    batch_size: int = Field(default=5000, ge=1, le=1_000_000)
    freshness_sla_hours: float | None = freshness_sla_field()
    contract: ContractMode = Field(
        default=DEFAULT_CONTRACT, description="The schema contract of the entities that declare none"
    )

    def effective_contract(self, entity: str) -> ContractMode:
        """The entity's ``contract`` if it sets one, else the source's (default ``loose``)."""
        for candidate in getattr(self, "entities", ()):
            if candidate.name == entity:
                own: ContractMode | None = candidate.contract
                return own if own is not None else self.contract
        raise ConfigurationError(f"source {self.name}: no entity {entity!r}")

    def effective_freshness_sla_hours(self, entity: str) -> float | None:
        """The entity's ``freshness_sla_hours`` if it sets one, else the source's (None: no SLA)."""
        for candidate in getattr(self, "entities", ()):
            if candidate.name == entity:
                own: float | None = candidate.freshness_sla_hours
                return own if own is not None else self.freshness_sla_hours
        raise ConfigurationError(f"source {self.name}: no entity {entity!r}")


class DatabaseSource(_SourceBase):
    kind: Literal["database"]
    connection: DatabaseConnection
    entities: list[DatabaseEntity] = Field(min_length=1)


class FileSource(_SourceBase):
    kind: Literal["file"]
    entities: list[FileEntity] = Field(min_length=1)


class RestSource(_SourceBase):
    """A REST API read with ``requests``; see etl_staging._rest for connection, auth and pagination."""

    kind: Literal["rest"]
    connection: RestConnection
    auth: RestAuth = Field(default_factory=lambda: NoAuth(type="none"))
    entities: list[RestEntity] = Field(min_length=1)
    fallback: dict[str, list[FileGroup]] = Field(
        default_factory=dict,
        description="Per entity: files read instead when the API fails (the pull's metadata says so)",
    )

    @model_validator(mode="after")
    def _fallback_entities_exist(self) -> RestSource:
        unknown = set(self.fallback) - {e.name for e in self.entities}
        if unknown:
            raise ValueError(f"fallback for unknown entities: {', '.join(sorted(unknown))}")
        return self


class AsyncRestSource(_SourceBase):
    """A REST API read with aiohttp: each entity fans out into many independent one-page requests
    (dates, values such as account ids, or a known number of pages), ``concurrency`` at a time, under
    the same retry rules and rate budget as ``kind: rest``; see etl_staging._rest._async_models."""

    kind: Literal["rest_async"]
    connection: RestConnection
    auth: RestAuth = Field(default_factory=lambda: NoAuth(type="none"))
    concurrency: int = Field(default=8, ge=1, le=64, description="Requests in flight at once")
    entities: list[AsyncRestEntity] = Field(min_length=1)


SourceConfig = Annotated[
    DatabaseSource | FileSource | RestSource | AsyncRestSource, Field(discriminator="kind")
]


class SourcesFile(_Strict):
    sources: list[SourceConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> SourcesFile:
        seen: set[str] = set()
        for source in self.sources:
            if source.name in seen:
                raise ValueError(f"source name {source.name!r} is declared twice")
            seen.add(source.name)
            entities = [e.name for e in source.entities]
            if len(set(entities)) != len(entities):
                raise ValueError(f"source {source.name!r} declares an entity twice")
            for entity in source.entities:
                if source.effective_contract(entity.name) == "strict" and not entity.columns:
                    raise ValueError(
                        f"source {source.name!r} entity {entity.name!r}: contract strict needs the entity's"
                        " columns (the columns it relies on, with their types); declare them, or use"
                        " contract: loose"
                    )
        return self

    def select(
        self, source: str | None = None, entity: str | None = None
    ) -> Iterator[tuple[SourceConfig, str]]:
        """(source, entity name) pairs matching the filters; unknown names are a usage error."""
        sources = [s for s in self.sources if source is None or s.name == source]
        if not sources:
            raise ConfigurationError(
                f"no source named {source!r}; known: {', '.join(s.name for s in self.sources)}"
            )
        found = False
        for src in sources:
            for ent in src.entities:
                if entity is None or ent.name == entity:
                    found = True
                    yield src, ent.name
        if not found:
            known = sorted({e.name for s in sources for e in s.entities})
            raise ConfigurationError(
                f"no entity {entity!r} in source {source or '(any)'}; known: {', '.join(known)}"
            )


def entity_config(
    source: SourceConfig, entity: str
) -> DatabaseEntity | FileEntity | RestEntity | AsyncRestEntity:
    for candidate in source.entities:
        if candidate.name == entity:
            return candidate
    raise ConfigurationError(f"source {source.name}: no entity {entity!r}")


_INLINE_SECRET_KEYS = {"password", "secret", "token", "api_key", "client_secret", "url"}


def _find_inline_secrets(node: object, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if str(key).lower() in _INLINE_SECRET_KEYS and isinstance(value, str):
                found.append(where)
            found.extend(_find_inline_secrets(value, where))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_find_inline_secrets(value, f"{path}[{index}]"))
    return found


def load_sources(path: Path, *, roots: FileRoots | None = None) -> SourcesFile:
    """Read and validate a sources file; every problem names the file, the source and the field.
    With ``roots``, a file group's path outside them is refused too (see _roots)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"sources file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"sources file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigurationError(f"sources file {path}: expected a mapping with a 'sources' list")
    inline = _find_inline_secrets(raw)
    if inline:
        raise ConfigurationError(
            f"sources file {path}: inline secret(s) at {', '.join(inline)}; reference an environment variable"
            " (url_env) or a secret file instead"
        )
    try:
        raw = _expand_variables(raw, path)
        sources = SourcesFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(
            f"sources file {path}: " + "; ".join(_describe(err, raw) for err in exc.errors())
        ) from None
    if roots is not None:
        check_file_paths(path, sources, roots)
    return sources


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_variables(node: Any, path: Path) -> Any:
    """Replace ``${NAME}`` and ``${NAME:-default}`` in string values (host names, ports, paths) from the
    environment, as docker compose does. Secrets still go through ``*_env``/``*_file`` references."""
    if isinstance(node, dict):
        return {key: _expand_variables(value, path) for key, value in node.items()}
    if isinstance(node, list):
        return [_expand_variables(value, path) for value in node]
    if isinstance(node, str):

        def substitute(match: re.Match[str]) -> str:
            value = os.environ.get(match.group(1))
            if value:
                return value
            if match.group(2) is not None:
                return match.group(2)
            raise ConfigurationError(f"sources file {path}: environment variable {match.group(1)} is not set")

        return _VARIABLE.sub(substitute, node)
    return node


def _describe(err: dict, raw: dict) -> str:  # type: ignore[type-arg]
    loc = list(err["loc"])
    where = ".".join(str(p) for p in loc)
    if len(loc) >= 2 and loc[0] == "sources" and isinstance(loc[1], int):
        try:
            name = raw["sources"][loc[1]].get("name", f"#{loc[1]}")
        except (IndexError, AttributeError, KeyError):
            name = f"#{loc[1]}"
        rest = [str(p) for p in loc[2:] if p not in {"database", "file", "rest", "rest_async"}]
        where = f"source {name!r} field {'.'.join(rest) or '(source)'}"
        if len(rest) >= 2 and rest[0] == "entities" and rest[1].isdigit():
            with contextlib.suppress(IndexError, AttributeError, KeyError, TypeError):
                where += f" (entity {raw['sources'][loc[1]]['entities'][int(rest[1])]['name']!r})"
    return f"{where}: {err['msg']}"


def resolve_database_url(conn: DatabaseConnection, *, warehouse_url: str, embedded: bool) -> str:
    if conn.url_file:
        from ._rest import resolve_secret

        return _checked_url(resolve_secret(None, conn.url_file), f"the secret file {conn.url_file}")
    url = os.environ.get(conn.url_env) if conn.url_env else None
    if url:
        return _checked_url(url, f"environment variable {conn.url_env}")
    if embedded and conn.embedded_database:
        from urllib.parse import urlsplit

        return urlsplit(warehouse_url)._replace(path="/" + conn.embedded_database).geturl()
    if not conn.url_env:
        raise ConfigurationError("a database connection needs url_env or url_file")
    raise ConfigurationError(f"environment variable {conn.url_env} (source database URL) is not set")


def _checked_url(url: str, where: str) -> str:
    """``url``, once its password is known to read the same to every driver (url_password_problem)."""
    register_url_password(url)
    problem = url_password_problem(url)
    if problem:
        raise ConfigurationError(f"{where} (source database URL): {problem}")
    return url


def merge_sources(files: Sequence[tuple[Path, SourcesFile]]) -> SourcesFile:
    """The sources of several files (one per domain) as one: a source name may be declared once."""
    declared: dict[str, Path] = {}
    for path, sources in files:
        for source in sources.sources:
            if source.name in declared:
                raise ConfigurationError(
                    f"source {source.name!r} is declared in {declared[source.name]} and in {path}:"
                    " a source name belongs to one domain"
                )
            declared[source.name] = path
    return SourcesFile.model_construct(sources=[s for _, sources in files for s in sources.sources])
