"""``etl-samples generate``: write the sample sources and the OLTP database.

Exit codes follow the platform's: 0 ok, 2 usage or configuration error, 5 database failure, 1 other.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from etl_shared._errors import EXIT_UNEXPECTED, ConfigurationError, exit_code_for

from ._generate import GenerationSummary, generate

_log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on a usage error, 0 for --help
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    data_dir = args.data_dir or Path(os.environ.get("ETL_DATA_DIR") or ".etl")
    try:
        summary = generate(data_dir, _oltp_url(args.oltp_url, data_dir), orders=args.orders, seed=args.seed)
    except Exception as exc:
        code = exit_code_for(exc)
        _log.error("sample generation failed: %s", exc, exc_info=code == EXIT_UNEXPECTED)  # traceback: a bug
        return code
    sys.stdout.write(_summary_text(summary))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etl-samples", description="Deterministic demo and benchmark data for the zone ETL platform."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    generate_parser = commands.add_parser(
        "generate",
        help="write the sample sources and the OLTP database",
        description="Rewrite <data-dir>/sources/{crm,web_events,fx} and schema oltp of the OLTP database.",
    )
    generate_parser.add_argument(
        "--orders", type=_positive_int, default=2000, help="number of orders, the scale (default 2000)"
    )
    generate_parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    generate_parser.add_argument(
        "--data-dir", type=Path, default=None, help="data folder (default: $ETL_DATA_DIR, else .etl)"
    )
    generate_parser.add_argument(
        "--oltp-url",
        default=None,
        help="database for schema oltp (default: $ETL_OLTP_DATABASE_URL, else the embedded PostgreSQL)",
    )
    generate_parser.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), type=str.upper
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _oltp_url(option: str | None, data_dir: Path) -> str:
    url = option or os.environ.get("ETL_OLTP_DATABASE_URL")
    if url:
        return url
    if os.environ.get("ETL_DATABASE_URL"):
        raise ConfigurationError(
            "ETL_OLTP_DATABASE_URL (or --oltp-url) is required when ETL_DATABASE_URL names an external "
            "warehouse: the sample OLTP database is only created automatically on the embedded PostgreSQL"
        )
    from etl_shared._embedded import start_embedded  # starts a server: only when needed

    return start_embedded(data_dir).url("oltp")


def _summary_text(summary: GenerationSummary) -> str:
    counts = summary.counts
    by_format = ", ".join(f"{count} {fmt}" for fmt, count in summary.web_event_files_by_format.items())
    lines = [
        f"Generated the sample sources for seed {summary.seed} ({counts['orders']} orders).",
        "OLTP database, schema oltp:",
        *(
            f"  {table:<20} {counts[table]:>10,}"
            for table in ("customers", "products", "orders", "order_lines")
        ),
        f"CRM: {summary.crm_dir}",
        *(
            f"  {name + '.jsonl':<20} {counts['crm_' + name]:>10,}"
            for name in ("accounts", "contacts", "opportunities")
        ),
        f"Web events: {summary.web_events_dir}",
        f"  {counts['web_events']:,} events in {counts['web_event_files']} daily files ({by_format})",
        f"FX rates: {summary.fx_file}",
        f"  fallback copy: {summary.fx_fallback_file}",
    ]
    return "\n".join(lines) + "\n"
