"""Replay one semantic run from a state that ``bench/semantic/run.py --keep-state`` kept: the
server's and the job's folders copied to a scratch folder, the server started there, ``etl-semantic
run`` timed, the slowest dbt nodes printed. ``--explain`` loads auto_explain into every session
(EXPLAIN ANALYZE, BUFFERS of each statement slower than ``--explain-ms``, in the server log), to see
the plans of a run as dbt sends them.

Usage (from the repository root)::

    .venv/bin/python bench/semantic/replay.py bench/work/semantic/before-incremental --work /tmp/replay
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN = Path(sys.executable).parent

_spec = importlib.util.spec_from_file_location("bench_conformed", REPO / "bench" / "conformed" / "run.py")
assert _spec and _spec.loader
conformed_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conformed_bench)


#: the server settings --explain sets (and a run without it resets)
EXPLAIN_SETTINGS = (
    "session_preload_libraries",
    "auto_explain.log_min_duration",
    "auto_explain.log_analyze",
    "auto_explain.log_buffers",
    "auto_explain.log_nested_statements",
    "log_min_duration_statement",
)

#: the tables compared with a full build (--compare-full); watershed_statements is a change ledger,
#: whose ids and voided rows depend on the history of runs
COMPARED = (
    "fct_sales",
    "fct_orders",
    "dim_customer",
    "agg_daily_revenue",
    "monthly_kpis",
    "customer_360",
)


def table_digests(url: str) -> dict[str, tuple[int, str]]:
    """(rows, md5 of the rows' text in order) of each table of COMPARED."""
    return {
        table: conformed_bench.query(
            url,
            f"select count(*), md5(coalesce(string_agg(md5(t::text), '' order by md5(t::text)), ''))"
            f" from semantic.{table} as t",
        )[0]
        for table in COMPARED
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "state", type=Path, help="a folder run.py --keep-state wrote (before-full, before-incremental)"
    )
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (replaced)")
    parser.add_argument("--run-id", default="bench-semantic-replay")
    parser.add_argument(
        "--explain", action="store_true", help="auto_explain (analyze, buffers) in the server log"
    )
    parser.add_argument("--explain-ms", type=int, default=500)
    parser.add_argument(
        "--compare-full",
        action="store_true",
        help="then rebuild with --full-refresh and compare the tables (COMPARED) row for row",
    )
    parser.add_argument("--keep-server", action="store_true", help="leave the server running (for psql)")
    args = parser.parse_args()
    from etl_shared import start_embedded

    bench = args.state.resolve().parent  # the benchmark's work folder: sources file, FX file
    if (args.work / "postgres" / "postmaster.pid").exists():
        start_embedded(args.work).stop()
    shutil.rmtree(args.work, ignore_errors=True)
    conformed_bench.copy_state(args.state, args.work)
    subprocess.run(["sync"], check=True)
    server = start_embedded(args.work)
    warehouse = server.url("wh")
    settings: dict[str, str] = {}  # none: what a previous --explain set is reset
    if args.explain:
        settings = {
            "session_preload_libraries": "auto_explain",
            "auto_explain.log_min_duration": f"{args.explain_ms}ms",
            "auto_explain.log_analyze": "on",
            "auto_explain.log_buffers": "on",
            "auto_explain.log_nested_statements": "on",
            "log_min_duration_statement": f"{args.explain_ms}ms",  # ANALYZE and the other utility statements
        }
    with psycopg.connect(warehouse, autocommit=True) as conn:
        for name in EXPLAIN_SETTINGS:
            if name in settings:
                conn.execute(f"alter system set {name} = '{settings[name]}'")
            else:
                conn.execute(f"alter system reset {name}")
        conn.execute("select pg_reload_conf()")
    env = {
        "ETL_DATABASE_URL": warehouse,
        "ETL_SOURCES_FILE": str(bench / "sources.yml"),
        "ETL_DATA_DIR": str(args.work / "data"),
        "ETL_FILE_ROOTS": str(bench),
        "ETL_PII_KEY": "bench-key",
        "ETL_RUN_ID": args.run_id,
    }
    before = os.getloadavg()[0]
    wall, rss, rc = conformed_bench.timed(
        [str(BIN / "etl-semantic"), "run"], env, args.work / f"{args.run_id}.log"
    )
    after = os.getloadavg()[0]
    print(
        f"etl-semantic run: {wall:.1f} s, rc {rc}, peak RSS {rss or 0:.0f} MB, load {before:.2f} / {after:.2f}"
    )
    for node, seconds in conformed_bench.node_times(warehouse, args.run_id, top=12):
        print(f"- {node}: {seconds:.1f} s")
    if args.compare_full and rc == 0:
        after_run = table_digests(warehouse)
        wall, _, rc = conformed_bench.timed(
            [str(BIN / "etl-semantic"), "run", "--full-refresh"],
            {**env, "ETL_RUN_ID": f"{args.run_id}-full"},
            args.work / f"{args.run_id}-full.log",
        )
        print(f"etl-semantic run --full-refresh: {wall:.1f} s, rc {rc}")
        rebuilt = table_digests(warehouse)
        for table in COMPARED:
            same = "same" if after_run[table] == rebuilt[table] else "DIFFERENT"
            print(f"- {table}: {after_run[table][0]:,} rows, {same} after a full build")
            rc = rc or (after_run[table] != rebuilt[table])
    if args.keep_server:
        print(f"server left running: {warehouse}")
    else:
        server.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())
