"""``etl-staging``: the staging zone's entrypoint (``run``, ``list``, ``validate``, ``reset``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field

from etl_shared import (
    EXIT_CONFIGURATION,
    ConfigurationError,
    Database,
    JobContext,
    Settings,
    absolute_path,
    configured_domains,
    installed_domains,
    load_settings,
    run_job,
)

from ._config import SourcesFile, load_sources, merge_sources
from ._roots import FileRoots
from ._runner import StagingJob
from ._sizes import ValueSizes, resolve_value_sizes


class StagingSettings(Settings):
    sources_file: Path | None = Field(
        default=None,
        description="One sources YAML in place of the domains' (ETL_DOMAINS); unset: the sources.yml of"
        " every domain",
    )
    parallelism: int = Field(default=4, ge=1, le=64, description="Source entities pulled at once")
    value_sizes: Literal["auto", "cockroachdb", "postgresql"] = Field(
        default="auto",
        description="Which warehouse's value-size limits apply (docs/cockroachdb.md, Value sizes); auto: the"
        " warehouse's own, from select version()",
    )
    batch_bytes: int | None = Field(
        default=None,
        ge=1024,
        le=256 * 1024 * 1024,
        description="Byte budget of one stored batch's JSON (a batch closes at batch_size records or at"
        " this, whichever comes first); unset: the value sizes' (docs/configuration.md)",
    )
    payload_chunk_bytes: int | None = Field(
        default=None,
        ge=1024,
        le=256 * 1024 * 1024,
        description="Largest stored chunk of the bytes as fetched; unset: the value sizes'",
    )
    record_max_bytes: int | None = Field(
        default=None,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="A single record whose JSON is larger fails its pull; unset: the value sizes'",
    )

    def resolve_value_sizes(self, db: Database) -> ValueSizes:
        """The value sizes of this job: the profile's (the warehouse's for auto), with each limit set here."""
        return resolve_value_sizes(
            db,
            self.value_sizes,
            batch_bytes=self.batch_bytes,
            payload_chunk_bytes=self.payload_chunk_bytes,
            record_max_bytes=self.record_max_bytes,
        )


#: The OAuth client of the sample CRM API (`etl-samples serve` accepts it unless told otherwise). With the
#: bundled demo sources, and only there, these are the defaults of the variables the demo file names, so
#: that `etl-staging run` works on the demo with nothing set; a team's own sources file gets no default.
DEMO_ENVIRONMENT = {
    "ETL_SAMPLE_CLIENT_ID": "demo-client",
    "ETL_SAMPLE_CLIENT_SECRET": "demo-secret",
}


#: The installed domain whose sources are the demo's (domains/commerce).
DEMO_DOMAIN = "commerce"


def bundled_sources_file() -> Path:
    """The demo domain's sources file, as installed (domains/commerce/sources.yml)."""
    for domain in installed_domains():
        if domain.name == DEMO_DOMAIN and domain.sources_file is not None:
            return domain.sources_file
    raise ConfigurationError(
        f"the demo domain {DEMO_DOMAIN} is not installed (pip install domains/{DEMO_DOMAIN})"
    )


def apply_demo_defaults(sources_files: Sequence[Path]) -> None:
    """Set the unset variables of :data:`DEMO_ENVIRONMENT` when the demo's sources file is read."""
    demo = [d.sources_file for d in installed_domains() if d.name == DEMO_DOMAIN]
    if any(path in demo for path in sources_files):
        for name, value in DEMO_ENVIRONMENT.items():
            if not os.environ.get(name):
                os.environ[name] = value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etl-staging", description="Staging zone: extract sources into raw pulls."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="pull the configured sources")
    run.add_argument("--source", help="only this source (one Control-M job per source)")
    run.add_argument("--entity", help="only this entity of the source")
    run.add_argument("--sources-file", type=Path, help="sources YAML (default: ETL_SOURCES_FILE or the demo)")
    run.add_argument(
        "--backfill-from",
        metavar="DATE",
        help="backfill: re-extract the records whose cursor is on or after DATE (YYYY-MM-DD or an ISO"
        " timestamp) without moving the stored watermark; needs --source and --backfill-to",
    )
    run.add_argument(
        "--backfill-to",
        metavar="DATE",
        help="end of the backfill: a date is included whole, a timestamp is excluded",
    )
    reset = sub.add_parser(
        "reset",
        help="clear a source entity's watermark and pulls (its next pull starts from scratch)",
        description="Delete the watermark, the pulls and the loaded-file records of a source entity in one"
        " transaction, recorded in ops.operator_actions. Asks for confirmation; --yes when not interactive.",
    )
    reset.add_argument("--source", required=True, help="the source to reset")
    reset.add_argument("--entity", help="only this entity (default: every entity of the source)")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.add_argument(
        "--sources-file", type=Path, help="sources YAML (default: ETL_SOURCES_FILE or the demo)"
    )
    for name, text in (("list", "list sources and entities"), ("validate", "validate the sources file")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--sources-file", type=Path)
        if name == "list":
            cmd.add_argument("--json", action="store_true")
    return parser


def configured_sources(settings: Settings, override: Path | None = None) -> tuple[list[Path], SourcesFile]:
    """The sources of this installation, and the files they come from: ``override`` (--sources-file)
    or ETL_SOURCES_FILE when set, else the sources.yml of every domain (ETL_DOMAINS, or the installed
    ones), as one list: a source name declared by two domains is an error naming both files."""
    single = override if override is not None else getattr(settings, "sources_file", None)
    roots = FileRoots.from_settings(settings)
    if single is not None:
        path = absolute_path(single)
        return [path], load_sources(path, roots=roots)
    paths = [d.sources_file for d in configured_domains(settings.domains) if d.sources_file is not None]
    if not paths:
        raise ConfigurationError("no domain has a sources.yml (ETL_DOMAINS, docs/domains.md)")
    return paths, merge_sources([(path, load_sources(path, roots=roots)) for path in paths])


def _moment(text: str, *, end: bool) -> datetime:
    """A date (the start of that day in UTC; for the end, the start of the next day) or an ISO timestamp
    (naive ones in UTC)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(f"{text!r} is not a date (YYYY-MM-DD) or an ISO 8601 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def backfill_window(args: argparse.Namespace) -> tuple[datetime, datetime] | None:
    """[from, to) of ``--backfill-from``/``--backfill-to``, or None without them."""
    if args.backfill_from is None and args.backfill_to is None:
        return None
    if args.backfill_from is None or args.backfill_to is None:
        raise ConfigurationError("a backfill needs both --backfill-from and --backfill-to")
    if not args.source:
        raise ConfigurationError("a backfill needs --source (and optionally --entity)")
    window = (_moment(args.backfill_from, end=False), _moment(args.backfill_to, end=True))
    if window[0] >= window[1]:
        raise ConfigurationError(
            f"--backfill-from {args.backfill_from} is not before --backfill-to {args.backfill_to}"
        )
    return window


def reset_command(
    settings: StagingSettings, sources: SourcesFile, source: str, entity: str | None, *, yes: bool
) -> int:
    """``etl-staging reset``: exit 0 done, 2 refused or unknown names, 5 database failure."""
    from etl_shared import EXIT_DATABASE, EXIT_OK, Database, EtlError, apply_migrations, resolve_database_url

    from ._reset import known_entities, preview_reset, reset_entity

    try:
        db = Database(
            resolve_database_url(settings, announce=False),
            application_name="etl-staging-reset",
            lock_timeout_s=settings.lock_timeout_s,
            statement_timeout_s=settings.statement_timeout_s,
        )
        apply_migrations(db)
        configured = [e.name for s in sources.sources if s.name == source for e in s.entities]
        stored = known_entities(db, source)
        candidates = sorted(set(configured) | set(stored))
        if not candidates:
            raise ConfigurationError(f"no source named {source!r} in the sources file or in staging")
        if entity is not None and entity not in candidates:
            raise ConfigurationError(
                f"no entity {entity!r} of source {source!r}; known: {', '.join(candidates)}"
            )
        entities = [entity] if entity else candidates
        previews = [preview_reset(db, source, name) for name in entities]
        sys.stderr.write("etl-staging reset will delete:\n")
        for preview in previews:
            sys.stderr.write(f"  {preview.describe()}\n")
        if not yes:
            if not (sys.stdin is not None and sys.stdin.isatty()):
                raise ConfigurationError(
                    "refusing to reset without --yes: not an interactive terminal (nothing was changed)"
                )
            answer = input(f"Type the source name ({source}) to confirm: ").strip()
            if answer != source:
                raise ConfigurationError("reset not confirmed: nothing was changed")
        for name in entities:
            counts = reset_entity(db, source, name, run_id=settings.run_id)
            sys.stdout.write(f"reset {counts.describe()}\n")
    except ConfigurationError as exc:
        sys.stderr.write(f"etl-staging reset: {exc}\n")
        return EXIT_CONFIGURATION
    except EtlError as exc:
        sys.stderr.write(f"etl-staging reset: {exc}\n")
        return exc.exit_code
    except Exception as exc:
        import psycopg

        if isinstance(exc, psycopg.Error):
            sys.stderr.write(f"etl-staging reset: database failure: {exc}\n")
            return EXIT_DATABASE
        raise
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(StagingSettings)
        paths, sources = configured_sources(settings, args.sources_file)
        apply_demo_defaults(paths)
    except ConfigurationError as exc:
        sys.stderr.write(f"etl-staging: configuration error: {exc}\n")
        return EXIT_CONFIGURATION
    if args.command == "reset":
        return reset_command(settings, sources, args.source, args.entity, yes=args.yes)
    try:
        backfill = backfill_window(args) if args.command == "run" else None
        if args.command == "run":
            # before anything connects: an unknown name is a usage error, with no job row written
            list(sources.select(args.source, args.entity))
    except ConfigurationError as exc:
        sys.stderr.write(f"etl-staging: usage error: {exc}\n")
        return EXIT_CONFIGURATION
    if args.command == "validate":
        count = sum(len(s.entities) for s in sources.sources)
        sys.stdout.write(
            f"{', '.join(map(str, paths))}: OK ({len(sources.sources)} sources, {count} entities)\n"
        )
        return 0
    if args.command == "list":
        rows = [
            {"source": s.name, "kind": s.kind, "entity": e.name} for s in sources.sources for e in s.entities
        ]
        if args.json:
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        else:
            for row in rows:
                sys.stdout.write(f"{row['source']:<20} {row['kind']:<10} {row['entity']}\n")
        return 0

    def work(context: JobContext) -> None:
        job = StagingJob(
            context,
            sources,
            data_dir=settings.data_dir,
            parallelism=settings.parallelism,
            backfill=backfill,
            sizes=settings.resolve_value_sizes(context.db),
            file_roots=FileRoots.from_settings(settings),
        )
        job.run(args.source, args.entity)

    job_name = (
        "staging"
        + (f":{args.source}" if args.source else "")
        + (f":{args.entity}" if args.entity else "")
        + (":backfill" if backfill else "")
    )
    return run_job("staging", job_name, settings, work)
