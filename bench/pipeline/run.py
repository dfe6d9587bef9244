"""Benchmark the daily cycle end to end: the first build of a 1,000,000-order history through the three
zones, then a daily run after a 1% delta (updates, inserts and deletes), then a run with nothing new.

One fresh embedded server (the set-up of bench/conformed: the demo OLTP database and the ECB FX
history as a file; orders and order lines list their keys after every pull, so deletes are seen).
Every zone job is a subprocess under ``/usr/bin/time -v``: wall time per zone and in total, peak RSS
per job, rows per second (rows the zone's job wrote, from its ``ops.job_runs`` counts). Exports
(Watershed files, the Qlik load script) are part of the semantic job and so of its time.

Targets on this machine (issue 22): the daily 1% delta end to end under 60 s, the no-op run under
20 s, the first build under 5 minutes.

Usage (from the repository root)::

    .venv/bin/python bench/pipeline/run.py --orders 1000000

Results go to bench/pipeline/results.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN = Path(sys.executable).parent
ZONES = ("staging", "conformed", "semantic")
TARGETS = {"first build": 300.0, "daily run (1% delta)": 60.0, "no-op run": 20.0}

_spec = importlib.util.spec_from_file_location("bench_conformed", REPO / "bench" / "conformed" / "run.py")
assert _spec and _spec.loader
conformed_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conformed_bench)
log, timed, query = conformed_bench.log, conformed_bench.timed, conformed_bench.query

#: The daily delta: 1% of orders and their lines change (conformed_bench.DELTA: status, quantities,
#: 1% of customers and products too), 0.5% new orders with their lines, 0.1% of orders deleted with
#: their lines (seen through the key listings).
INSERTS = (
    "insert into oltp.orders (order_id, customer_id, order_date, ordered_at, status, currency, updated_at)"
    " select order_id + {top}, customer_id, current_date, now(), 'placed', currency, now()"
    " from oltp.orders where order_id % 200 = 7",
    "insert into oltp.order_lines (order_id, line_number, product_id, quantity, unit_price, discount_pct,"
    " updated_at)"
    " select order_id + {top}, line_number, product_id, quantity, unit_price, discount_pct, now()"
    " from oltp.order_lines where order_id % 200 = 7 and order_id <= {top}",
)
DELETES = (
    "delete from oltp.order_lines where order_id % 1000 = 3",
    "delete from oltp.orders where order_id % 1000 = 3",
)


@dataclass
class ZoneRun:
    zone: str
    wall: float
    rss: float | None
    rows: int


@dataclass
class Cycle:
    name: str
    runs: list[ZoneRun]

    @property
    def wall(self) -> float:
        return sum(run.wall for run in self.runs)


def sources_file(path: Path, fx_csv: Path) -> None:
    """bench/conformed's sources, with key listings for orders and lines (deletes are seen)."""
    conformed_bench.sources_file(path, fx_csv)
    text = path.read_text()
    for table, key in (("orders", "[order_id]"), ("order_lines", "[order_id, line_number]")):
        old = f"{{name: {table}, table: oltp.{table}, key: {key}, cursor: updated_at}}"
        assert old in text, old
        text = text.replace(old, old[:-1] + ", reconcile_keys: {every_days: 0}}")
    path.write_text(text)


def zone_rows(url: str, run_id: str, zone: str) -> int:
    """Rows the zone's job wrote: staging the records it pulled (its job row's counts), a dbt zone the
    rows its models' statements affected (ops.dbt_node_results, models only: tests read)."""
    if zone == "staging":
        rows = query(url, f"select counts from ops.job_runs where run_id = '{run_id}' and zone = 'staging'")
        counts = rows[0][0] if rows and rows[0][0] else {}
        return int(counts.get("rows") or 0)
    found = query(
        url,
        "select coalesce(sum(rows_affected), 0) from ops.dbt_node_results"
        f" where run_id = '{run_id}' and zone = '{zone}' and resource_type in ('model', 'snapshot', 'seed')"
        " and rows_affected > 0",
    )
    return int(found[0][0])


def run_cycle(name: str, env: dict[str, str], warehouse: str, work: Path, tag: str) -> Cycle:
    runs = []
    for zone in ZONES:
        run_id = f"bench-pipeline-{tag}"
        log(f"{name}: {zone}")
        wall, rss, rc = timed(
            [str(BIN / f"etl-{zone}"), "run"], {**env, "ETL_RUN_ID": run_id}, work / f"{tag}-{zone}.log"
        )
        assert rc == 0, f"etl-{zone} failed (exit {rc}), see {work / f'{tag}-{zone}.log'}"
        runs.append(ZoneRun(zone, wall, rss, zone_rows(warehouse, run_id, zone)))
    return Cycle(name, runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work" / "pipeline")
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    args = parser.parse_args()

    started = time.monotonic()
    server, warehouse, oltp, counts, env = conformed_bench.prepare(args.work, args.orders)
    sources_file(Path(env["ETL_SOURCES_FILE"]), args.work / "eurofxref-hist.csv")
    env["ETL_PII_KEY"] = "bench-key"
    load_s = time.monotonic() - started

    cycles = [run_cycle("first build", env, warehouse, args.work, "first")]
    log("delta: updates, inserts and deletes in the OLTP database (not measured)")
    changed = {}
    with psycopg.connect(oltp, autocommit=True) as conn:
        top = conn.execute("select max(order_id) from oltp.orders").fetchone()[0]  # new ids above it
        inserts = [statement.replace("{top}", str(top)) for statement in INSERTS]
        for number, statement in enumerate((*conformed_bench.DELTA, *inserts, *DELETES)):
            changed[number] = conn.execute(statement).rowcount
    cycles.append(run_cycle("daily run (1% delta)", env, warehouse, args.work, "daily"))
    cycles.append(run_cycle("no-op run", env, warehouse, args.work, "noop"))

    version = query(warehouse, "select version()")[0][0].split(" on ")[0]
    lines = [
        f"## Pipeline benchmark: the daily cycle on {args.orders:,} orders",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}",
        f"- code: {conformed_bench.code_revision(mark_dirty=True)}",
        f"- database: {version} (embedded, default settings), one server for the sources and the warehouse",
        f"- OLTP data: {', '.join(f'{k} {v:,}' for k, v in counts.items())}; loaded in {load_s:.0f} s (not"
        " measured)",
        f"- delta rows per statement: {json.dumps(changed)} (1% of orders, lines, customers and products"
        " updated; 0.5% new orders with their lines; 0.1% of orders deleted with their lines)",
        "",
        "| cycle | staging s | conformed s | semantic s | total s | target | peak RSS MB (st / co / se) |"
        " rows written (st / co / se) |",
        "|---|---:|---:|---:|---:|---|---|---|",
    ]
    for cycle in cycles:
        by_zone = {run.zone: run for run in cycle.runs}
        target = TARGETS[cycle.name]
        verdict = "met" if cycle.wall < target else "MISSED"
        lines.append(
            f"| {cycle.name} | "
            + " | ".join(f"{by_zone[z].wall:.1f}" for z in ZONES)
            + f" | {cycle.wall:.1f} | < {target:.0f} s: {verdict} | "
            + " / ".join(f"{by_zone[z].rss or 0:.0f}" for z in ZONES)
            + " | "
            + " / ".join(f"{by_zone[z].rows:,}" for z in ZONES)
            + " |"
        )
    lines += ["", "Rows per second of each zone's job (rows written over its wall time):", ""]
    for cycle in cycles:
        rates = ", ".join(f"{run.zone} {run.rows / run.wall:,.0f}" for run in cycle.runs if run.wall > 0)
        lines.append(f"- {cycle.name}: {rates}")
    lines += ["", f"Reproduce: `.venv/bin/python bench/pipeline/run.py --orders {args.orders}`"]
    conformed_bench.write_report(args.output, lines)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
