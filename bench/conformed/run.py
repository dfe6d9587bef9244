"""Benchmark the conformed job: a full build over a 1,000,000-order history, then an incremental run
with a 1% delta.

Steps, on a fresh embedded PostgreSQL (the setup is timed but not part of the result):

1. the demo OLTP database with ``--orders`` orders (etl-samples' generator: customers, products,
   orders, order lines) and the ECB FX history as a CSV file;
2. ``etl-staging run``: customers and products pulled whole, orders and order lines incrementally by
   ``updated_at``, FX from the file;
3. **full build**: ``etl-conformed run`` on an empty conformed schema (every record validated, every
   history and current table written);
4. the delta in the OLTP database: 1% of orders change status (their lines change too) and 1% of
   customers and products change; then ``etl-staging run`` (incremental pulls of the changed orders and
   lines, full pulls of customers and products; the FX file is unchanged and skipped);
5. **incremental run**: ``etl-conformed run``, ``--repeat`` times (3) from the same state (the
   server's and the job's folders are copied before the first run and put back before each next
   one); the median is the result;
6. **no-op run**: ``etl-conformed run`` again, with no new pull.

Each conformed run is a subprocess under ``/usr/bin/time -v`` (wall time, peak RSS of the job and
dbt, not the server). The per-model times come from ``ops.dbt_node_results``.

Usage (from the repository root)::

    .venv/bin/python bench/conformed/run.py --orders 1000000

Results go to bench/conformed/results.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import psycopg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN = Path(sys.executable).parent
GNU_TIME = "/usr/bin/time"
SEED = 20261122


def log(message: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def timed(cmd: list[str], env: dict[str, str], out: Path) -> tuple[float, float | None, int]:
    """(wall seconds, peak RSS MB, exit code) of ``cmd``."""
    stats = out.with_suffix(".time")
    started = time.monotonic()
    with out.open("wb") as handle:
        prefix = [GNU_TIME, "-v", "-o", str(stats)] if Path(GNU_TIME).exists() else []
        rc = subprocess.call([*prefix, *cmd], env={**os.environ, **env}, stdout=handle, stderr=handle)
    wall = time.monotonic() - started
    rss = None
    if stats.exists():
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stats.read_text())
        rss = int(found.group(1)) / 1024 if found else None
    return wall, rss, rc


def sources_file(path: Path, fx_csv: Path) -> None:
    path.write_text(
        f"""sources:
  - name: oltp
    kind: database
    batch_size: 5000
    connection: {{url_env: ETL_OLTP_DATABASE_URL}}
    entities:
      - {{name: customers, table: oltp.customers, key: [customer_id]}}
      - {{name: products, table: oltp.products, key: [product_id]}}
      - {{name: orders, table: oltp.orders, key: [order_id], cursor: updated_at}}
      - {{name: order_lines, table: oltp.order_lines, key: [order_id, line_number], cursor: updated_at}}
  - name: fx
    kind: file
    batch_size: 10000
    entities:
      - name: ecb_rates
        skip_loaded_files: true
        files:
          - {{path: "{fx_csv}", format: csv}}
"""
    )


DELTA = (
    # 1% of orders move on in their lifecycle; their lines are corrected (quantity + 1).
    "update oltp.orders set status = case status when 'placed' then 'paid' when 'paid' then 'shipped'"
    " when 'shipped' then 'delivered' when 'delivered' then 'returned' else status end,"
    " updated_at = now() where order_id % 100 = 0",
    "update oltp.order_lines set quantity = quantity + 1, updated_at = now() where order_id % 100 = 0",
    "update oltp.customers set phone = coalesce(phone, '') || '0', updated_at = now() where customer_id % 100 = 0",
    "update oltp.products set unit_price = unit_price + 1, updated_at = now() where product_id % 100 = 0",
)


def code_revision(*, mark_dirty: bool = False) -> str:
    """The measured code's revision and subject (shared with bench/pipeline and snapshot_peer)."""
    rev = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    ).stdout.strip()
    if mark_dirty:
        status = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True
        )
        rev += " (with uncommitted changes)" if status.stdout.strip() else ""
    return rev


def write_report(path: Path, lines: list[str]) -> None:
    """Write a benchmark's markdown report and print it."""
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)


def query(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def node_times(url: str, run_id: str, top: int = 8) -> list[tuple[str, float]]:
    rows = query(
        url,
        "select unique_id, execution_time_s from ops.dbt_node_results"
        f" where run_id = '{run_id}' order by execution_time_s desc limit {top}",
    )
    return [(uid.split(".")[-1], float(t or 0)) for uid, t in rows]


class Repeat(NamedTuple):
    """One incremental run of the repeats, with what the report needs from the database (the next
    repeat starts from the copy, without this run's audit rows)."""

    wall: float
    rss: float | None
    run_id: str
    slowest: list[tuple[str, float]]
    built: list[tuple[str, int]]


def copy_state(source: Path, target: Path) -> None:
    """The embedded server's folder and the job's data folder, from ``source`` to ``target`` (what
    ``target`` had of them is replaced); the server must be stopped."""
    target.mkdir(parents=True, exist_ok=True)
    for folder in ("postgres", "data"):
        shutil.rmtree(target / folder, ignore_errors=True)
        subprocess.run(["cp", "-a", str(source / folder), str(target / folder)], check=True)


def built_summary(url: str, run_id: str) -> list[tuple[str, int]]:
    """What the conformed job ``run_id`` built (``dbt_project.built``) and its number of dbt nodes."""
    return query(
        url,
        "select counts -> 'dbt_project' ->> 'built', (select count(*) from ops.dbt_node_results as n"
        " where n.job_id = j.job_id) from ops.job_runs as j"
        f" where run_id = '{run_id}' and zone = 'conformed'",
    )


def prepare(work: Path, orders: int) -> tuple[Any, str, str, dict[str, int], dict[str, str]]:
    """A fresh embedded server under ``work`` with the demo OLTP database (``orders`` orders), the ECB
    FX history as a CSV file and a sources file for both; returns (server, warehouse URL, OLTP URL,
    row counts, the jobs' environment). Shared with bench/semantic."""
    from etl_samples._commerce import Commerce
    from etl_samples._files import ecb_history
    from etl_samples._oltp import load_oltp
    from etl_samples._scale import Scale
    from etl_shared import start_embedded

    if work.exists():
        if (work / "postgres" / "postmaster.pid").exists():
            start_embedded(work).stop()  # the server a previous run left behind
        shutil.rmtree(work)
    work.mkdir(parents=True)
    server = start_embedded(work)
    warehouse, oltp = server.url("wh"), server.url("oltp")
    log(f"loading the OLTP database with {orders:,} orders")
    counts = load_oltp(oltp, Commerce(SEED, Scale(orders)))
    fx_csv = work / "eurofxref-hist.csv"
    fx_csv.write_bytes(ecb_history())
    sources = work / "sources.yml"
    sources_file(sources, fx_csv)
    env = {
        "ETL_DATABASE_URL": warehouse,
        "ETL_OLTP_DATABASE_URL": oltp,
        "ETL_SOURCES_FILE": str(sources),
        "ETL_DATA_DIR": str(work / "data"),
        "ETL_FILE_ROOTS": str(work),  # the FX file is beside the data folder
    }
    return server, warehouse, oltp, counts, env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work" / "conformed")
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    parser.add_argument("--repeat", type=int, default=3, help="incremental runs from the same state (median)")
    args = parser.parse_args()
    from etl_shared import start_embedded

    started = time.monotonic()
    server, warehouse, oltp, counts, env = prepare(args.work, args.orders)
    log(f"staging pull 1 ({counts})")
    wall, _, rc = timed(
        [str(BIN / "etl-staging"), "run"],
        {**env, "ETL_RUN_ID": "bench-staging-1"},
        args.work / "staging1.log",
    )
    assert rc == 0, f"staging failed, see {args.work / 'staging1.log'}"
    setup_s = time.monotonic() - started

    results = []
    for name, run_id in (("full build", "bench-full"),):
        log(name)
        wall, rss, rc = timed(
            [str(BIN / "etl-conformed"), "run"], {**env, "ETL_RUN_ID": run_id}, args.work / f"{run_id}.log"
        )
        assert rc == 0, f"conformed failed, see {args.work / f'{run_id}.log'}"
        results.append((name, run_id, wall, rss))

    log("delta: 1% of orders, lines, customers and products change")
    with psycopg.connect(oltp, autocommit=True) as conn:
        changed = [conn.execute(statement).rowcount for statement in DELTA]
    wall_s2, _, rc = timed(
        [str(BIN / "etl-staging"), "run"],
        {**env, "ETL_RUN_ID": "bench-staging-2"},
        args.work / "staging2.log",
    )
    assert rc == 0, f"staging failed, see {args.work / 'staging2.log'}"
    pulled = query(
        warehouse,
        "select source || '.' || entity, record_count from staging.pulls where run_id = 'bench-staging-2'"
        " and status = 'committed' order by 1",
    )

    # The incremental run is repeated from the same state (the server's and the job's folders copied
    # before the first run, put back before each next one): on this shared 2-core machine, runs of
    # the same code differ by 2-4 s, and the median is the figure reported.
    before = args.work / "before-incremental"
    shutil.rmtree(before, ignore_errors=True)
    server.stop()
    copy_state(args.work, before)
    repeats: list[Repeat] = []
    for attempt in range(1, args.repeat + 1):
        if attempt > 1:
            server.stop()
            copy_state(before, args.work)
        subprocess.run(["sync"], check=True)
        server = start_embedded(args.work)
        run_id = f"bench-incremental-{attempt}"
        log(f"incremental run (1% delta), {attempt} of {args.repeat}")
        wall, rss, rc = timed(
            [str(BIN / "etl-conformed"), "run"], {**env, "ETL_RUN_ID": run_id}, args.work / f"{run_id}.log"
        )
        assert rc == 0, f"conformed failed, see {args.work / f'{run_id}.log'}"
        repeats.append(
            Repeat(wall, rss, run_id, node_times(warehouse, run_id), built_summary(warehouse, run_id))
        )
    shutil.rmtree(before)
    median = sorted(repeats, key=lambda r: r.wall)[len(repeats) // 2]
    walls = ", ".join(f"{r.wall:.1f}" for r in repeats)
    name = f"incremental run (1% delta), median of {len(repeats)}: {walls} s"
    results.append((name, median.run_id, median.wall, median.rss))
    # The no-op run follows the last incremental run.
    log("no-op run (no new pull)")
    wall, rss, rc = timed(
        [str(BIN / "etl-conformed"), "run"], {**env, "ETL_RUN_ID": "bench-noop"}, args.work / "bench-noop.log"
    )
    assert rc == 0, f"conformed failed, see {args.work / 'bench-noop.log'}"
    results.append(("no-op run (no new pull)", "bench-noop", wall, rss))

    history = query(
        warehouse,
        "select 'sales_order_history', count(*), count(*) filter (where change_type = 'update')"
        " from conformed.sales_order_history union all"
        " select 'sales_order_line_history', count(*), count(*) filter (where change_type = 'update')"
        " from conformed.sales_order_line_history union all"
        " select 'customer_history', count(*), count(*) filter (where change_type = 'update')"
        " from conformed.customer_history",
    )
    version = query(warehouse, "select version()")[0][0].split(" on ")[0]
    rev = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    ).stdout.strip()
    full = results[0][2]
    lines = [
        f"## Conformed benchmark: {args.orders:,} orders",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}",
        f"- code: {rev}",
        f"- database: {version} (embedded, with the settings of EmbeddedPostgres.SETTINGS)",
        f"- OLTP data: {', '.join(f'{k} {v:,}' for k, v in counts.items())}; setup (load + first staging pull)"
        f" {setup_s:.0f} s",
        f"- delta: rows changed in the OLTP database {changed} (orders, lines, customers, products);"
        f" staging pull 2 took {wall_s2:.0f} s and committed {', '.join(f'{e} {n:,}' for e, n in pulled)}",
        "",
        "| run | wall s | share of the full build | peak RSS MB |",
        "|---|---:|---:|---:|",
    ]
    for name, _run_id, wall, rss in results:
        lines.append(f"| {name} | {wall:.1f} | {wall / full:.1%} | {rss or 0:.0f} |")
    lines += ["", "History after the incremental run (rows, of which updates):", ""]
    lines += [f"- {table}: {rows:,} rows, {updates:,} updates" for table, rows, updates in history]
    lines += ["", "What each run built (the job's summary, `dbt_project.built`):", ""]
    for name, run_id, _wall, _rss in results:
        built = median.built if run_id == median.run_id else built_summary(warehouse, run_id)
        lines += [f"- {name}: {what} ({nodes} dbt nodes)" for what, nodes in built]
    for name, run_id, _wall, _rss in results:
        lines += ["", f"Slowest dbt nodes, {name}:", ""]
        slowest = median.slowest if run_id == median.run_id else node_times(warehouse, run_id)
        lines += [f"- {node}: {seconds:.1f} s" for node, seconds in slowest]
    incremental = results[1][2]
    lines += [
        "",
        f"Target: the incremental run under 10% of the full build: {incremental / full:.1%} (median);"
        f" runs {', '.join(f'{r.wall / full:.1%}' for r in repeats)}"
        f" ({'met' if incremental / full < 0.10 else 'MISSED'}).",
        "",
        f"Reproduce: `.venv/bin/python bench/conformed/run.py --orders {args.orders}`",
    ]
    text = "\n".join(lines) + "\n"
    args.output.write_text(text)
    print(text)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
