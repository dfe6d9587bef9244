"""``etl-samples generate``: write the sample sources and the OLTP database; ``etl-samples serve``: the
sample CRM and FX REST APIs over them.

Exit codes follow the platform's: 0 ok, 2 usage or configuration error, 5 database failure, 1 other.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from etl_shared._errors import EXIT_UNEXPECTED, ConfigurationError, exit_code_for
from etl_shared._settings import absolute_path

from ._api import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, SampleApiServer
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
    # absolute once, here: the API server and the generator must name the folder the jobs read
    data_dir = absolute_path(args.data_dir or os.environ.get("ETL_DATA_DIR") or ".etl")
    if args.command == "serve":
        return _serve(args, data_dir)
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

    serve_parser = commands.add_parser(
        "serve",
        help="serve the sample CRM and FX REST APIs until SIGTERM or SIGINT",
        description="Serve <data-dir>/sources/crm and <data-dir>/sources/fx as REST APIs. The first line "
        "on stdout is the URL (useful with --port 0).",
    )
    serve_parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve_parser.add_argument(
        "--port", type=_port, default=8765, help="port, 0 for any free one (default 8765)"
    )
    serve_parser.add_argument(
        "--data-dir", type=Path, default=None, help="data folder (default: $ETL_DATA_DIR, else .etl)"
    )
    serve_parser.add_argument(
        "--client-id", default=DEMO_CLIENT_ID, help=f"OAuth client id (default {DEMO_CLIENT_ID})"
    )
    serve_parser.add_argument(
        "--client-secret-env",
        default="ETL_SAMPLE_CLIENT_SECRET",
        metavar="NAME",
        help="environment variable holding the OAuth client secret (default ETL_SAMPLE_CLIENT_SECRET; "
        f"unset: the demo secret {DEMO_CLIENT_SECRET!r})",
    )
    serve_parser.add_argument(
        "--fx-api-key-env",
        default=None,
        metavar="NAME",
        help="environment variable holding an API key the FX endpoint requires as X-Api-Key (default: none)",
    )
    serve_parser.add_argument(
        "--rate-limit",
        type=_non_negative_float,
        default=20.0,
        metavar="N",
        help="requests per sliding second before 429, 0 for no limit (default 20)",
    )
    serve_parser.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), type=str.upper
    )
    return parser


def _serve(args: argparse.Namespace, data_dir: Path) -> int:
    client_secret = os.environ.get(args.client_secret_env)
    if not client_secret:
        client_secret = DEMO_CLIENT_SECRET
        _log.warning(
            "$%s is not set: using the demo client secret %r", args.client_secret_env, DEMO_CLIENT_SECRET
        )
    api_key = None
    if args.fx_api_key_env:
        api_key = os.environ.get(args.fx_api_key_env)
        if not api_key:
            _log.error("--fx-api-key-env names $%s, which is not set", args.fx_api_key_env)
            return 2
    server = SampleApiServer(
        data_dir,
        host=args.host,
        port=args.port,
        client_id=args.client_id,
        client_secret=client_secret,
        rate_limit_per_s=args.rate_limit or None,
        api_key=api_key,
    )
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        try:
            server.start()
        except OSError as exc:
            _log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
            return 2
        sys.stdout.write(server.url + "\n")
        sys.stdout.flush()
        _log.info(
            "serving the sample APIs at %s from %s (client id %s)", server.url, data_dir, args.client_id
        )
        while not stop.wait(0.5):
            pass
        _log.info("stopping the sample API server")
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, not {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
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
