"""Benchmark the semantic job: a full build over a 1,000,000-order history, then an incremental run
after a 1% delta, then a run with nothing new.

The same set-up as bench/conformed (the demo OLTP database, staging pulls, the same 1% delta), with the
conformed runs as untimed steps: staging -> conformed -> **semantic full build** (empty semantic
schema) -> delta -> staging -> conformed -> **semantic incremental run** -> **semantic no-op run**.
Each semantic run is a subprocess under ``/usr/bin/time -v`` and includes the exports (Watershed
files, Qlik load script).

Usage (from the repository root)::

    .venv/bin/python bench/semantic/run.py --orders 1000000

Results go to bench/semantic/results.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN = Path(sys.executable).parent
SEED = 20261122

_spec = importlib.util.spec_from_file_location("bench_conformed", REPO / "bench" / "conformed" / "run.py")
assert _spec and _spec.loader
conformed_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conformed_bench)
log, timed, query, node_times = (
    conformed_bench.log,
    conformed_bench.timed,
    conformed_bench.query,
    conformed_bench.node_times,
)


LOADS: dict[str, tuple[float, float]] = {}
"""The 1-minute load average before and after each step (the machine is shared)."""


def step(command: str, env: dict[str, str], run_id: str, work: Path) -> tuple[float, float | None]:
    before = os.getloadavg()[0]
    wall, rss, rc = timed([str(BIN / command), "run"], {**env, "ETL_RUN_ID": run_id}, work / f"{run_id}.log")
    LOADS[run_id] = (before, os.getloadavg()[0])
    assert rc == 0, f"{command} failed, see {work / f'{run_id}.log'}"
    return wall, rss


def keep_state(server: Any, work: Path, name: str, start_embedded: Any) -> Any:
    """The state now copied to ``work/name`` (the server stopped for the copy, started again)."""
    log(f"state kept in {work / name}")
    server.stop()
    conformed_bench.copy_state(work, work / name)
    return start_embedded(work)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work" / "semantic")
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    parser.add_argument(
        "--keep-state",
        action="store_true",
        help="copy the server's and the job's folders to <work>/before-full and <work>/before-incremental"
        " (to replay a semantic run from the same state: bench/conformed/run.py copy_state)",
    )
    args = parser.parse_args()
    from etl_shared import start_embedded

    started = time.monotonic()
    server, warehouse, oltp, counts, env = conformed_bench.prepare(args.work, args.orders)
    env["ETL_PII_KEY"] = "bench-key"
    log("staging and conformed (not measured)")
    step("etl-staging", env, "bench-staging-1", args.work)
    step("etl-conformed", env, "bench-conformed-1", args.work)
    setup_s = time.monotonic() - started

    if args.keep_state:
        server = keep_state(server, args.work, "before-full", start_embedded)
    results = []
    log("semantic full build")
    results.append(
        ("full build", "bench-semantic-full", *step("etl-semantic", env, "bench-semantic-full", args.work))
    )

    log("delta: 1% of orders, lines, customers and products change; staging and conformed (not measured)")
    with psycopg.connect(oltp, autocommit=True) as conn:
        changed = [conn.execute(statement).rowcount for statement in conformed_bench.DELTA]
    step("etl-staging", env, "bench-staging-2", args.work)
    step("etl-conformed", env, "bench-conformed-2", args.work)
    if args.keep_state:
        server = keep_state(server, args.work, "before-incremental", start_embedded)

    for name, run_id in (
        ("incremental run (1% delta)", "bench-semantic-incremental"),
        ("no-op run (nothing new)", "bench-semantic-noop"),
    ):
        log(name)
        results.append((name, run_id, *step("etl-semantic", env, run_id, args.work)))

    tables = query(
        warehouse,
        "select 'fct_sales', count(*) from semantic.fct_sales union all"
        " select 'fct_orders', count(*) from semantic.fct_orders union all"
        " select 'dim_customer', count(*) from semantic.dim_customer union all"
        " select 'watershed_statements', count(*) from semantic.watershed_statements",
    )
    exports = query(
        warehouse,
        "select run_id, kind, row_count, sha256 from ops.exports where run_id like 'bench-semantic-%'"
        " order by run_id, kind",
    )
    version = query(warehouse, "select version()")[0][0].split(" on ")[0]
    rev = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    ).stdout.strip()
    full = results[0][2]
    lines = [
        f"## Semantic benchmark: {args.orders:,} orders",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}",
        f"- code: {rev}",
        f"- database: {version} (embedded, default settings)",
        f"- OLTP data: {', '.join(f'{k} {v:,}' for k, v in counts.items())}; set-up (load, staging and"
        f" conformed) {setup_s:.0f} s; delta rows {changed} (orders, lines, customers, products)",
        "",
        "| run | wall s | share of the full build | peak RSS MB | load average before / after |",
        "|---|---:|---:|---:|---|",
    ]
    for name, run_id, wall, rss in results:
        load = LOADS.get(run_id, (0.0, 0.0))
        lines.append(
            f"| {name} | {wall:.1f} | {wall / full:.1%} | {rss or 0:.0f} | {load[0]:.2f} / {load[1]:.2f} |"
        )
    lines += ["", "Rows after the incremental run:", ""]
    lines += [f"- {table}: {rows:,}" for table, rows in tables]
    lines += ["", "Exports (rows, sha256 prefix) per run:", ""]
    lines += [f"- {run_id} {kind}: {rows:,} rows, {sha[:12]}" for run_id, kind, rows, sha in exports]
    for name, run_id, _wall, _rss in results:
        lines += ["", f"Slowest dbt nodes, {name}:", ""]
        lines += [f"- {node}: {seconds:.1f} s" for node, seconds in node_times(warehouse, run_id)]
    lines += ["", f"Reproduce: `.venv/bin/python bench/semantic/run.py --orders {args.orders}`"]
    text = "\n".join(lines) + "\n"
    args.output.write_text(text)
    print(text)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
