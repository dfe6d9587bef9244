"""Run a dbt project programmatically and record what it did.

The profile is written from the settings at run time (never committed), with ``autocommit: true``
because CockroachDB rejects dbt's nested BEGIN otherwise; the password reaches dbt through an
environment variable, never through a file. dbt's target and log folders go under the data folder so
that the project folder may be read-only (as it is in the container images).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from ._audit import NodeResult, QualityResult
from ._errors import (
    ConfigurationError,
    DatabaseError,
    DataQualityError,
    TransformError,
    is_timeout_message,
    timeout_advice,
)
from ._files import write_atomically
from ._logging import redact
from ._settings import absolute_path
from ._signals import raise_if_stopped

_log = logging.getLogger(__name__)
_PASSWORD_ENV = "ETL_DBT_PASSWORD"  # noqa: S105 - the name of a variable, not a password
_CONNECTION_HINTS = (
    "could not connect",
    "connection refused",
    "server closed the connection",
    "connection to server",
)


def profile_from_url(
    url: str, *, profile: str, schema: str, threads: int = 2, application_name: str | None = None
) -> dict[str, Any]:
    """A dbt-postgres profile for ``url`` (host may be a Unix socket folder given as ``?host=``).

    dbt-postgres has no profile field for session variables (its ``options`` carry only
    ``search_path``, which this profile leaves unset): the job's lock and statement timeouts reach
    dbt's connections through libpq's PGOPTIONS instead (DbtProject.invoke)."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = parts.hostname or query.get("host")
    if not host:
        raise ConfigurationError("database URL has no host (neither in the authority nor as ?host=)")
    output: dict[str, Any] = {
        "type": "postgres",
        "host": unquote(host),
        "port": parts.port or int(query.get("port", 5432)),
        "user": unquote(parts.username or "root"),
        "password": "{{ env_var('" + _PASSWORD_ENV + "', '') }}",
        "dbname": unquote(parts.path.lstrip("/")) or "postgres",
        "schema": schema,
        "threads": threads,
        "autocommit": True,
        "connect_timeout": 10,
        "retries": 3,
    }
    if application_name:
        output["application_name"] = application_name
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        if key in query:
            output[key] = query[key]
    return {profile: {"target": "default", "outputs": {"default": output}}}


@dataclass
class DbtOutcome:
    success: bool
    nodes: list[NodeResult] = field(default_factory=list)
    quality: list[QualityResult] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # "schema.table" of models built
    error: str | None = None
    #: those of ``models`` that persist from run to run (incremental): a table rebuilt every run
    #: gets no statistics from refresh_statistics, the next run replaces it anyway.
    incremental_models: list[str] = field(default_factory=list)
    #: the project's manifest.json after the build (build_zone sets it; None when dbt wrote none)
    manifest_path: Path | None = None

    @property
    def failed_nodes(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.status in {"error", "fail", "runtime error"}]

    @property
    def quality_status(self) -> str:
        statuses = {q.status for q in self.quality}
        if statuses & {"fail", "error"}:
            return "fail"
        if "warn" in statuses:
            return "warn"
        return "pass" if statuses else "none"


class DbtEventLog:
    """dbt's events as JSON lines (dbt's own format): info and above appended to ``path`` (rotated at
    10 MB, five files kept), warnings and errors also to stdout.

    In place of dbt's --log-level-file: dbt's loggers turn every event into a JSON line, the debug
    ones too (a SQLQuery and a SQLQueryStatus per statement), before the level of the file drops
    them. In the conformed benchmark's incremental run that was 1.7 s of CPU, in dbt's threads and so
    under the one GIL they share. Here the level is looked at first."""

    _WRITTEN = frozenset({"info", "warn", "error"})
    _SHOWN = frozenset({"warn", "error"})

    def __init__(self, path: Path, *, secrets: Sequence[str] = ()) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = RotatingFileHandler(path, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8")
        self._file.setFormatter(logging.Formatter("%(message)s"))
        self._secrets = [s for s in secrets if s]
        self._stdout_lock = threading.Lock()

    def __call__(self, msg: Any) -> None:
        level = msg.info.level
        if level not in self._WRITTEN:
            return
        from dbt_common.events.functions import msg_to_dict

        line = json.dumps(self._redacted(msg_to_dict(msg)), sort_keys=True, default=str)
        self._file.handle(logging.makeLogRecord({"msg": line}))
        if level in self._SHOWN:
            with self._stdout_lock:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()

    def _redacted(self, node: Any) -> Any:
        """The event with the password hidden from every text in it, and what dbt or its driver shows
        of a password (see _logging.register_secret), before JSON escapes a quote or a non-ASCII
        character of it."""
        if isinstance(node, str):
            for secret in self._secrets:
                node = node.replace(secret, "*****")
            return redact(node)
        if isinstance(node, dict):
            return {key: self._redacted(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self._redacted(value) for value in node]
        return node

    def close(self) -> None:
        self._file.close()


class DbtProject:
    """One dbt project (conformed or semantic) and where its run artefacts go."""

    def __init__(
        self, project_dir: Path, *, profile: str, schema: str, work_dir: Path, threads: int = 2
    ) -> None:
        if not (project_dir / "dbt_project.yml").is_file():
            raise ConfigurationError(f"no dbt_project.yml in {project_dir}")
        # absolute: dbt takes a relative --target-path against the project folder, not the working one
        self.project_dir = absolute_path(project_dir)
        self.profile = profile
        self.schema = schema
        self.work_dir = absolute_path(work_dir)
        self.threads = threads
        #: the session variables of dbt's connections (``-c lock_timeout=... -c statement_timeout=...``,
        #: the job's Database.options) and their application name; build_zone sets both
        self.session_options = ""
        self.application_name: str | None = None

    @property
    def target_path(self) -> Path:
        return self.work_dir / "target"

    def _write_profile(self, url: str) -> Path:
        profiles_dir = self.work_dir / "profiles"
        profiles_dir.mkdir(parents=True, exist_ok=True)
        content = profile_from_url(
            url,
            profile=self.profile,
            schema=self.schema,
            threads=self.threads,
            application_name=self.application_name,
        )
        write_atomically(profiles_dir / "profiles.yml", yaml.safe_dump(content, sort_keys=False).encode())
        return profiles_dir

    def invoke(
        self,
        command: str,
        url: str,
        *,
        args: Sequence[str] = (),
        variables: Mapping[str, Any] | None = None,
        run_values: Mapping[str, Any] | None = None,
        on_event: Callable[[Any], None] | None = None,
    ) -> Any:
        """Invoke ``dbt <command>`` in process and return dbt's result object; ``command`` may hold a
        subcommand ("docs generate"): dbt wants the options after it. ``on_event`` is called with
        each of dbt's events, in dbt's threads.

        ``variables`` are dbt vars: they must stay the same from run to run, because dbt parses the
        whole project again whenever its command-line vars change. Values that change with every run
        (run id, job id, job start) go in ``run_values``: environment variables that the projects'
        ``run_value`` macro reads only while dbt executes, so dbt's partial parsing keeps working."""
        dbt_runner = _import_dbt()
        profiles_dir = self._write_profile(url)
        argv = [
            *command.split(),
            "--project-dir",
            str(self.project_dir),
            "--profiles-dir",
            str(profiles_dir),
            "--target-path",
            str(self.target_path),
            "--log-path",
            str(self.work_dir / "logs"),
            # dbt's own loggers are off: _DbtEventLog writes its events (see there for why).
            "--log-level",
            "none",
            "--log-level-file",
            "none",
            "--no-use-colors",
            "--vars",
            json.dumps(dict(variables or {})),
            *args,
        ]
        _log.info("dbt %s in %s", " ".join([command, *args]), self.project_dir.name)
        environment = {
            _PASSWORD_ENV: unquote(urlsplit(url).password or ""),
            # no usage events to dbt Labs (also set in the projects' dbt_project.yml): on premises,
            # and each HTTP post waits up to 5 s on a firewall that drops it
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            **run_value_environment(run_values or {}),
        }
        if self.session_options:
            # libpq (dbt-postgres's psycopg2) reads PGOPTIONS for every connection dbt opens
            environment["PGOPTIONS"] = f"{os.environ.get('PGOPTIONS', '')} {self.session_options}".strip()
        event_log = DbtEventLog(self.work_dir / "logs" / "dbt.log", secrets=[environment[_PASSWORD_ENV]])
        try:
            with _environment(environment):
                callbacks = [event_log] if on_event is None else [event_log, on_event]
                result = dbt_runner(callbacks=callbacks).invoke(argv)
        finally:
            event_log.close()
        # SIGTERM/SIGINT while dbt ran: dbt cancelled its queries and returned the interrupt as a
        # failed result; the job ends as stopped (143), not as a failed build
        raise_if_stopped(f"dbt {command}")
        return result

    @property
    def _artefacts_stamp(self) -> Path:
        return self.target_path / "etl_artefacts_key"

    def _artefacts_current(self, key: str | None) -> bool:
        """Whether target/ holds the manifest.json of a build with this ``key`` (see build)."""
        stamp = self._artefacts_stamp
        return (
            key is not None
            and (self.target_path / "manifest.json").is_file()
            and stamp.is_file()
            and stamp.read_text(encoding="utf-8") == key
        )

    def manifest(
        self, url: str, *, checksum: str, variables: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The project's parsed manifest (target/manifest.json, as a dict), for a zone to read what the
        models declare before it decides what to build.

        The manifest a build of the same project checksum wrote is read as it is (build_zone's artefacts
        key starts with the checksum); otherwise ``dbt parse`` writes it first (a first run, a release,
        a container whose data folder is not a volume). ``variables`` must be those of the build, so
        that the build reuses this parse."""
        path = self.target_path / "manifest.json"
        stamp = self._artefacts_stamp
        current = (
            path.is_file() and stamp.is_file() and stamp.read_text(encoding="utf-8").split(" ")[0] == checksum
        )
        if not current:
            # the stamp names the artefacts of a build; a parse's manifest.json is not one
            stamp.unlink(missing_ok=True)
            result = self.invoke("parse", url, variables=variables)
            if not result.success or not path.is_file():
                reason = str(result.exception).strip() if result.exception is not None else "see the dbt log"
                raise TransformError(f"dbt parse of {self.project_dir} failed: {reason}")
        loaded: dict[str, Any] = json.loads(path.read_bytes())
        return loaded

    def build(
        self,
        url: str,
        *,
        select: Sequence[str] = (),
        full_refresh: bool = False,
        variables: Mapping[str, Any] | None = None,
        run_values: Mapping[str, Any] | None = None,
        artefacts_key: str | None = None,
        on_model_built: Callable[[str], None] | None = None,
    ) -> DbtOutcome:
        """``dbt build``, with a retry of the nodes a serialization conflict cancelled.

        ``artefacts_key`` names the project version and vars (build_zone: the project checksum): when
        target/ already holds the manifest.json of a build with the same key, dbt writes no JSON
        artefacts this time (--no-write-json). The manifest, the lineage's input, would be the same;
        writing it and run_results.json took 0.8 s of every conformed run on the benchmark.

        ``on_model_built`` is called with the ``schema.table`` of each model as soon as dbt has built
        it (build_zone counts its rows meanwhile)."""
        # dbt unit tests check the models' logic on fixed inputs: they belong to development and CI
        # (tests/conformed/test_conformed_dbt_unit.py), not to every production run, where an
        # incremental model's unit test cannot even compile before the model's first build.
        args: list[str] = ["--exclude-resource-type", "unit_test"]
        if select:
            args += ["--select", *select]
        if full_refresh:
            args.append("--full-refresh")
        reuse = self._artefacts_current(artefacts_key)
        if reuse:
            args.append("--no-write-json")
        else:
            self._artefacts_stamp.unlink(missing_ok=True)
        on_event = None if on_model_built is None else _on_model_built(on_model_built)
        result = self.invoke(
            "build", url, args=args, variables=variables, run_values=run_values, on_event=on_event
        )
        if not reuse and artefacts_key is not None and result.exception is None:
            write_atomically(self._artefacts_stamp, artefacts_key.encode("utf-8"))
        outcome = _outcome_from(result)
        for attempt in range(1, CONFLICT_RETRIES + 1):
            conflicted = [
                n.unique_id for n in outcome.nodes if n.status == "error" and _is_conflict(n.message)
            ]
            if not conflicted:
                break
            if reuse:
                # `dbt retry` reruns what target/run_results.json says failed or was skipped: without
                # JSON artefacts, that file is still the previous run's
                result.result.write(str(self.target_path / "run_results.json"))
            # Two dbt threads writing at once can conflict under SERIALIZABLE (CockroachDB, and the
            # embedded PostgreSQL): the database cancels one transaction with SQLSTATE 40001 and
            # nothing of it is written. Every model is idempotent, so `dbt retry` runs the failed
            # node and the nodes it stopped again, with the same run values.
            _log.warning(
                "dbt: %s cancelled by a serialization conflict (SQLSTATE 40001); retrying it and the nodes"
                " it stopped (retry %d of %d)",
                ", ".join(conflicted),
                attempt,
                CONFLICT_RETRIES,
                extra={"nodes": conflicted},
            )
            result = self.invoke("retry", url, variables=variables, run_values=run_values, on_event=on_event)
            outcome = _merged(outcome, _outcome_from(result))
        for node in outcome.nodes:
            level = logging.INFO if node.status in {"success", "pass"} else logging.WARNING
            _log.log(
                level,
                "dbt %s %s: %s",
                node.resource_type,
                node.unique_id,
                node.status,
                extra={
                    "node": node.unique_id,
                    "status": node.status,
                    "rows_affected": node.rows_affected,
                    "failures": node.failures,
                    "seconds": node.execution_time_s,
                },
            )
        return outcome


def _import_dbt() -> Any:
    """dbt's ``dbtRunner``, imported the first time with Python's cyclic garbage collector paused, and
    what the import made then frozen out of the collector's reach (``gc.freeze``).

    Importing dbt makes some hundreds of thousands of objects (classes, schemas, protobuf
    descriptors) that live as long as the process. With the collector running, the import set off
    collections that walked them again and again, and every full collection during the build walked
    them once more: 0.4-0.5 s of a conformed run on the benchmark, in the thread that feeds dbt's
    nodes. Frozen objects are still freed when their last reference goes; only cycles among them
    would outlive the process, and dbt's modules stay loaded until it ends anyway."""
    if "dbt.cli.main" in sys.modules:
        from dbt.cli.main import dbtRunner

        return dbtRunner
    enabled = gc.isenabled()
    gc.disable()
    try:
        from dbt.cli.main import dbtRunner
    finally:
        if enabled:
            gc.freeze()
            gc.enable()
    return dbtRunner


def _on_model_built(call: Callable[[str], None]) -> Callable[[Any], None]:
    """A dbt event callback that calls ``call`` with the ``schema.table`` of each model built (dbt's
    NodeFinished event of a table or incremental model that succeeded)."""

    def callback(msg: Any) -> None:
        if msg.info.name != "NodeFinished":
            return
        node = msg.data.node_info
        if node.resource_type != "model" or node.materialized == "ephemeral":
            return
        if msg.data.run_result.status != "success":
            return
        relation = node.node_relation
        if relation.schema and relation.alias:
            call(f"{relation.schema}.{relation.alias}")

    return callback


CONFLICT_RETRIES = 3
_CONFLICT_HINTS = (
    "could not serialize access",
    "restart transaction",
    "sqlstate 40001",
    "retry_serializable",
)


def _is_conflict(message: str | None) -> bool:
    """A node cancelled by a serialization conflict (SQLSTATE 40001): PostgreSQL says "could not
    serialize access", CockroachDB "restart transaction: TransactionRetryWithProtoRefreshError"."""
    text = (message or "").lower()
    return any(hint in text for hint in _CONFLICT_HINTS)


def _merged(first: DbtOutcome, retried: DbtOutcome) -> DbtOutcome:
    """The outcome of a build and its `dbt retry`: a node's result from the retry replaces its first."""
    if retried.error:
        return DbtOutcome(
            success=False,
            nodes=first.nodes,
            quality=first.quality,
            models=first.models,
            incremental_models=first.incremental_models,
            error=retried.error,
        )
    nodes = {n.unique_id: n for n in first.nodes} | {n.unique_id: n for n in retried.nodes}
    quality = {q.rule_id: q for q in first.quality} | {q.rule_id: q for q in retried.quality}
    return DbtOutcome(
        success=retried.success,
        nodes=list(nodes.values()),
        quality=list(quality.values()),
        models=list(dict.fromkeys([*first.models, *retried.models])),
        incremental_models=list(dict.fromkeys([*first.incremental_models, *retried.incremental_models])),
    )


def raise_for_outcome(outcome: DbtOutcome) -> None:
    """Turn a dbt outcome into the right exception (and so the right exit code)."""
    if outcome.error:
        message = outcome.error
        if any(h in message.lower() for h in _CONNECTION_HINTS):
            raise DatabaseError(f"dbt could not reach the database: {message}")
        if is_timeout_message(message):
            raise DatabaseError(f"dbt failed: {message}: {timeout_advice(message)}")
        raise TransformError(f"dbt failed: {message}")
    # A statement or lock timeout is the database's failure whichever node hit it, a test's included
    # (a data-quality test stopped by the timeout has not found bad data).
    timed_out = [n for n in outcome.failed_nodes if is_timeout_message(n.message)]
    if timed_out:
        first = timed_out[0]
        raise DatabaseError(
            f"{len(timed_out)} dbt node(s) stopped by a timeout; first {first.unique_id}: {first.message}:"
            f" {timeout_advice(first.message or '')}"
        )
    model_errors = [n for n in outcome.nodes if n.resource_type != "test" and n.status == "error"]
    if model_errors:
        first = model_errors[0]
        text = f"{len(model_errors)} dbt node(s) failed; first {first.unique_id}: {first.message}"
        if any(h in (first.message or "").lower() for h in _CONNECTION_HINTS) or _is_conflict(first.message):
            raise DatabaseError(text)
        raise TransformError(text)
    failed = [q for q in outcome.quality if q.status in {"fail", "error"}]
    if failed:
        names = ", ".join(f"{q.rule_id} ({q.failures} failing)" for q in failed[:5])
        raise DataQualityError(f"{len(failed)} data-quality rule(s) failed: {names}")
    skipped = [n for n in outcome.nodes if n.status == "skipped"]
    if skipped and not outcome.success:
        raise TransformError(f"dbt skipped {len(skipped)} node(s) after upstream failures")


def _outcome_from(result: Any) -> DbtOutcome:
    if result.exception is not None:
        return DbtOutcome(success=False, error=str(result.exception).strip())
    outcome = DbtOutcome(success=bool(result.success))
    for item in getattr(result.result, "results", None) or []:
        node = item.node
        adapter = getattr(item, "adapter_response", None) or {}
        resource_type = str(getattr(node, "resource_type", "unknown"))
        status = str(item.status)
        completed = _completed_at(item)
        outcome.nodes.append(
            NodeResult(
                unique_id=node.unique_id,
                resource_type=resource_type,
                status=status,
                execution_time_s=round(float(item.execution_time or 0.0), 3),
                rows_affected=adapter.get("rows_affected") if isinstance(adapter, dict) else None,
                failures=item.failures,
                message=(str(item.message)[:2000] if item.message else None),
                completed_at=completed,
            )
        )
        if resource_type == "test":
            severity = str(getattr(node.config, "severity", "error")).lower()
            outcome.quality.append(
                QualityResult(
                    rule_id=node.name,
                    severity=severity,
                    status=status,
                    failures=int(item.failures or 0),
                    message=(str(item.message)[:2000] if item.message else None),
                )
            )
        elif resource_type in {"model", "snapshot"} and status == "success":
            materialized = getattr(node.config, "materialized", "")
            relation = f"{node.schema}.{node.alias or node.name}"
            if materialized != "ephemeral":
                outcome.models.append(relation)
            if materialized == "incremental":
                outcome.incremental_models.append(relation)
    return outcome


def _completed_at(item: Any) -> datetime:
    for timing in getattr(item, "timing", None) or []:
        if getattr(timing, "name", "") == "execute" and getattr(timing, "completed_at", None):
            value: datetime = timing.completed_at
            return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.now(UTC)


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a dbt invocation, then restore them."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_value_environment(run_values: Mapping[str, Any]) -> dict[str, str]:
    """The environment variables that carry per-run values to the dbt projects' ``run_value`` macro
    (``run_id`` -> ``ETL_DBT_RUN_ID``)."""
    return {f"ETL_DBT_{name.upper()}": str(value) for name, value in run_values.items()}


def models_declaring(manifest: Mapping[str, Any], key: str) -> Iterator[tuple[dict[str, Any], Any]]:
    """(node, value) of every model of a dbt manifest whose config carries ``meta: {<key>: value}``,
    in unique-id order: how a zone reads what a domain's models declare (retention, Qlik apps, which
    source entity a model consumes) without naming any of them."""
    for _, node in sorted(manifest.get("nodes", {}).items()):
        if node.get("resource_type") != "model":
            continue
        value = ((node.get("config") or {}).get("meta") or {}).get(key)
        if value is not None:
            yield node, value


def model_label(node: Mapping[str, Any]) -> str:
    """``model <name> (<file>)``, for an error about what a model declares."""
    return f"model {node.get('name')} ({node.get('original_file_path', node.get('unique_id', '?'))})"


def detect_cockroachdb(url: str, *, options: str = "") -> bool:
    import psycopg

    from ._db import is_cockroachdb

    extra = {"options": options} if options else {}
    with psycopg.connect(url, autocommit=True, connect_timeout=10, **extra) as conn:
        return is_cockroachdb(conn)


def build_zone(
    context: Any,
    project: DbtProject,
    *,
    select: Sequence[str] = (),
    full_refresh: bool = False,
    variables: Mapping[str, Any] | None = None,
    on_built: Callable[[Any, DbtOutcome], None] | None = None,
    run_values: Mapping[str, str] | None = None,
) -> DbtOutcome:
    """``dbt build`` a zone's project inside a job: record every node and data-quality result in the
    audit tables, count the rows of the models built, call ``on_built`` (whatever the outcome: a
    zone adds its own summary there), then raise for failures (exit codes 4/5/1).

    The project gets the run values run_id, job_id (for rows its hooks write into the audit tables,
    and the key of the conformed job's snapshot of the pulls it reads) and job_started_at (the
    database's clock now: the tests check the rows loaded since; nothing is ordered by it), any
    ``run_values`` the zone adds, and the var is_cockroachdb."""
    from ._job import RowCounter, refresh_statistics

    url = context.db.url
    project.session_options = context.db.options
    # no pid in dbt's name: it is part of the profile, and a profile that differs from the last run's
    # makes dbt parse the whole project again (its partial parsing hashes the connection values)
    project.application_name = context.db.application_name.split(":", 1)[0] + "-dbt"
    all_vars = {"is_cockroachdb": detect_cockroachdb(url, options=context.db.options), **(variables or {})}
    run_values = {
        "run_id": context.settings.run_id,
        "job_id": str(context.audit.job_id),
        "job_started_at": _database_now(context.db),
        **(run_values or {}),
    }
    checksum = context.counts.get("dbt_project", {}).get("checksum")
    counter = RowCounter(context.db, serial=not all_vars["is_cockroachdb"])
    try:
        outcome = project.build(
            url,
            select=select,
            full_refresh=full_refresh,
            variables=all_vars,
            run_values=run_values,
            artefacts_key=f"{checksum} cockroachdb={all_vars['is_cockroachdb']}" if checksum else None,
            on_model_built=counter.submit,
        )
        manifest = project.target_path / "manifest.json"
        outcome.manifest_path = manifest if manifest.is_file() else None
        context.audit.record_nodes(outcome.nodes)
        context.audit.record_quality(outcome.quality)
        record_dbt_lineage(context, project, outcome)
        for result in outcome.quality:
            context.metrics.observe_dq(
                result.rule_id, result.severity, failures=result.failures, status=result.status
            )
        context.counts["dq_status"] = outcome.quality_status
        context.counts["dq_failed_rules"] = [
            q.rule_id for q in outcome.quality if q.status in {"fail", "error"}
        ]
        context.counts["dq_warned_rules"] = [q.rule_id for q in outcome.quality if q.status == "warn"]
        context.counts["nodes"] = {
            status: sum(1 for n in outcome.nodes if n.status == status)
            for status in sorted({n.status for n in outcome.nodes})
        }
        if outcome.incremental_models and not all_vars["is_cockroachdb"]:
            analysed = refresh_statistics(context.db, sorted(set(outcome.incremental_models)))
            if analysed:
                _log.info(
                    "vacuumed and analysed %d table(s) with missing or stale statistics",
                    len(analysed),
                    extra={"tables": analysed},
                )
        if outcome.models:
            tables = counter.counts(sorted(set(outcome.models)))
            context.counts["tables"] = tables
            context.counts["rows"] = sum(tables.values())
            for table, rows in tables.items():
                context.metrics.add_rows("dbt", table, rows)
    finally:
        counter.close()
    if on_built is not None:
        on_built(context, outcome)
    raise_for_outcome(outcome)
    return outcome


def record_dbt_lineage(context: Any, project: DbtProject, outcome: DbtOutcome) -> None:
    """Each model built and its parents (dbt's manifest) into ops.lineage_edges; best effort: lineage
    that cannot be recorded is a warning, never a failed job."""
    from ._lineage import database_namespace, dbt_edges, record_lineage_edges

    if not outcome.models:
        return
    try:
        edges = dbt_edges(
            project.target_path / "manifest.json", outcome.models, database_namespace(context.db.url)
        )
        record_lineage_edges(
            context.db,
            job_id=context.audit.job_id,
            run_id=context.settings.run_id,
            zone=context.audit.zone,
            edges=edges,
        )
    except Exception as exc:
        _log.warning("the lineage of the dbt models was not recorded: %s", exc)


def _database_now(db: Any) -> str:
    """The database's clock, as the time the job began its build (loaded_this_run's lower bound)."""
    with db.connect(autocommit=True) as conn:
        row = conn.execute("select now()").fetchone()
    return str(row[0].isoformat())
