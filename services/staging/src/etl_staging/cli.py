"""``etl-staging``: the staging zone's entrypoint (``run``, ``list``, ``validate``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from pydantic import Field

from etl_shared import EXIT_CONFIGURATION, ConfigurationError, JobContext, Settings, load_settings, run_job

from ._config import SourcesFile, load_sources
from ._runner import StagingJob


class StagingSettings(Settings):
    sources_file: Path | None = Field(
        default=None, description="Sources YAML; unset: the bundled demo sources (sources.demo.yml)"
    )
    parallelism: int = Field(default=4, ge=1, le=64, description="Source entities pulled at once")


def bundled_sources_file() -> Path:
    return Path(str(resources.files("etl_staging") / "sources.demo.yml"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etl-staging", description="Staging zone: extract sources into raw pulls."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="pull the configured sources")
    run.add_argument("--source", help="only this source (one Control-M job per source)")
    run.add_argument("--entity", help="only this entity of the source")
    run.add_argument("--sources-file", type=Path, help="sources YAML (default: ETL_SOURCES_FILE or the demo)")
    for name, text in (("list", "list sources and entities"), ("validate", "validate the sources file")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--sources-file", type=Path)
        if name == "list":
            cmd.add_argument("--json", action="store_true")
    return parser


def _sources(settings: StagingSettings, override: Path | None) -> tuple[Path, SourcesFile]:
    path = override or settings.sources_file or bundled_sources_file()
    return path, load_sources(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(StagingSettings)
        path, sources = _sources(settings, args.sources_file)
    except ConfigurationError as exc:
        sys.stderr.write(f"etl-staging: configuration error: {exc}\n")
        return EXIT_CONFIGURATION
    if args.command == "validate":
        count = sum(len(s.entities) for s in sources.sources)
        sys.stdout.write(f"{path}: OK ({len(sources.sources)} sources, {count} entities)\n")
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
        job = StagingJob(context, sources, data_dir=settings.data_dir, parallelism=settings.parallelism)
        job.run(args.source, args.entity)

    job_name = (
        "staging" + (f":{args.source}" if args.source else "") + (f":{args.entity}" if args.entity else "")
    )
    return run_job("staging", job_name, settings, work)
