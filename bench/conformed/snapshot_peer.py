"""Side by side: the conformed history of orders and order lines against a plain dbt snapshot of the
same source rows, full and after a 1% delta with inserts and deletes.

What a team would use instead of the platform's history: ``dbt snapshot`` (dbt-core 1.11, the check
strategy on the columns our history tracks, ``hard_deletes: new_record``) over the OLTP tables. A
snapshot reads its source whole every run (it must, to see deletes), so it runs where the source is:
in the OLTP database of the same embedded server. Ours reads staging's pulls (incremental by
``updated_at``, deletes through the key listings).

Measured per phase: our conformed job (wall, and the dbt time of the order and line models that make the
two histories: validated and history), the dbt snapshot command (wall; both snapshots), and the rows each
wrote. Then the answers are compared key by key: the number of versions of every key, and its current
values (a deleted key: deleted in both).

Usage (from the repository root)::

    .venv/bin/python bench/conformed/snapshot_peer.py --orders 1000000

Results go to bench/conformed/results-snapshot-peer.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN = Path(sys.executable).parent


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


conformed_bench = _load("bench_conformed", HERE / "run.py")
pipeline_bench = _load("bench_pipeline", REPO / "bench" / "pipeline" / "run.py")
log, timed, query = conformed_bench.log, conformed_bench.timed, conformed_bench.query

#: entity: (our history table, its key, the source table, its tracked columns in ours / in the source)
ENTITIES = {
    "orders": (
        "conformed.sales_order_history",
        ["order_id"],
        "oltp.orders",
        ["customer_id", "order_date", "ordered_at", "order_status", "currency_code"],
        ["customer_id", "order_date", "ordered_at", "status", "currency"],
    ),
    "order_lines": (
        "conformed.sales_order_line_history",
        ["order_id", "line_number"],
        "oltp.order_lines",
        ["product_id", "quantity", "unit_price", "discount_pct"],
        ["product_id", "quantity", "unit_price", "discount_pct"],
    ),
}
#: the dbt nodes that make our two histories (validated models and histories)
OUR_NODES = (
    "validated_sales_order",
    "sales_order_history",
    "validated_sales_order_line",
    "sales_order_line_history",
)


def snapshot_project(folder: Path, oltp_url: str) -> None:
    """A dbt project with one snapshot per entity, and its profile (the OLTP database)."""
    parts = urlsplit(oltp_url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
    (folder / "snapshots").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(exist_ok=True)
    (folder / "dbt_project.yml").write_text(
        "name: snapshot_peer\nversion: '1.0'\nconfig-version: 2\nprofile: snapshot_peer\n"
        "snapshot-paths: [snapshots]\nmodel-paths: [models]\n"
    )
    (folder / "profiles.yml").write_text(
        "snapshot_peer:\n  target: bench\n  outputs:\n    bench:\n      type: postgres\n"
        f"      host: '{host}'\n      port: {parts.port or 5432}\n      user: {parts.username or 'postgres'}\n"
        f"      password: '{parts.password or ''}'\n      dbname: {parts.path.lstrip('/')}\n"
        "      schema: bench_snapshot\n      threads: 2\n"
    )
    (folder / "models" / "sources.yml").write_text(
        "sources:\n  - name: oltp\n    schema: oltp\n    tables:\n      - name: orders\n      - name: order_lines\n"
    )
    lines = ["snapshots:"]
    for entity, (_, key, _, _, source_columns) in ENTITIES.items():
        unique_key = key[0] if len(key) == 1 else "[" + ", ".join(key) + "]"
        lines += [
            f"  - name: {entity}_snapshot",
            f"    relation: source('oltp', '{entity}')",
            "    config:",  # the schema: the profile's, bench_snapshot
            f"      unique_key: {unique_key}",
            "      strategy: check",
            f"      check_cols: [{', '.join(source_columns)}]",
            "      hard_deletes: new_record",
        ]
    (folder / "snapshots" / "snapshots.yml").write_text("\n".join(lines) + "\n")


def run_snapshot(folder: Path, work: Path, tag: str) -> tuple[float, float]:
    """(the dbt snapshot command's wall s, its snapshots' own execution time, from run_results.json)."""
    wall, _rss, rc = timed(
        [str(BIN / "dbt"), "snapshot", "--project-dir", str(folder), "--profiles-dir", str(folder)],
        {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        work / f"snapshot-{tag}.log",
    )
    assert rc == 0, f"dbt snapshot failed, see {work / f'snapshot-{tag}.log'}"
    results = json.loads((folder / "target" / "run_results.json").read_text())["results"]
    return wall, sum(float(r.get("execution_time") or 0) for r in results)


def our_run(env: dict[str, str], warehouse: str, work: Path, run_id: str) -> tuple[float, float]:
    """(the conformed job's wall s, the dbt seconds of the order and line history models)."""
    wall, _rss, rc = timed(
        [str(BIN / "etl-conformed"), "run"], {**env, "ETL_RUN_ID": run_id}, work / f"{run_id}.log"
    )
    assert rc == 0, f"etl-conformed failed, see {work / f'{run_id}.log'}"
    names = ", ".join(f"'{n}'" for n in OUR_NODES)
    found = query(
        warehouse,
        "select coalesce(sum(execution_time_s), 0) from ops.dbt_node_results"
        f" where run_id = '{run_id}' and split_part(unique_id, '.', 3) in ({names})",
    )
    return wall, float(found[0][0])


def counts(warehouse: str, oltp: str) -> dict[str, tuple[int, int]]:
    """Rows of (our history, the snapshot) per entity."""
    out = {}
    for entity, (ours, _, _, _, _) in ENTITIES.items():
        mine = query(warehouse, f"select count(*) from {ours}")[0][0]
        theirs = query(oltp, f"select count(*) from bench_snapshot.{entity}_snapshot")[0][0]
        out[entity] = (int(mine), int(theirs))
    return out


def _stream(url: str, statement: str) -> Iterator[tuple[Any, ...]]:
    with psycopg.connect(url) as conn, conn.cursor(name="compare") as cursor:
        cursor.itersize = 20_000
        cursor.execute(statement)
        yield from cursor


def compare(warehouse: str, oltp: str) -> dict[str, dict[str, int]]:
    """Per entity: keys compared, keys whose version count differs, keys whose current values (or
    deletion) differ. Both sides are read in key order and merged, never held whole."""
    result = {}
    for entity, (ours, key, _source, tracked, source_columns) in ENTITIES.items():
        keys = ", ".join(key)
        # the current values as text, the same for both (order_status is the lower-cased status, the
        # currency its ISO code: identical to the source's values in this data)
        mine = _stream(
            warehouse,
            f"select {keys}, count(*),"
            f" max(case when valid_to is null then (case when change_type = 'delete' then '(deleted)' else"
            f" concat_ws('|', {', '.join(f'{c}::text' for c in tracked)}) end) end)"
            f" from {ours} group by {keys} order by {keys}",
        )
        theirs = _stream(
            oltp,
            f"select {keys}, count(*),"
            f" max(case when dbt_valid_to is null then (case when dbt_is_deleted = 'True' then '(deleted)' else"
            f" concat_ws('|', {', '.join(f'{c}::text' for c in source_columns)}) end) end)"
            f" from bench_snapshot.{entity}_snapshot group by {keys} order by {keys}",
        )
        width = len(key)
        stats = {"keys": 0, "only_ours": 0, "only_snapshot": 0, "versions_differ": 0, "current_differs": 0}
        a, b = next(mine, None), next(theirs, None)
        while a is not None or b is not None:
            ka = tuple(a[:width]) if a is not None else None
            kb = tuple(b[:width]) if b is not None else None
            if kb is None or (ka is not None and ka < kb):
                stats["only_ours"] += 1
                a = next(mine, None)
                continue
            if ka is None or kb < ka:
                stats["only_snapshot"] += 1
                b = next(theirs, None)
                continue
            stats["keys"] += 1
            assert a is not None and b is not None
            stats["versions_differ"] += a[width] != b[width]
            stats["current_differs"] += a[width + 1] != b[width + 1]
            a, b = next(mine, None), next(theirs, None)
        result[entity] = stats
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work" / "snapshot_peer")
    parser.add_argument("--output", type=Path, default=HERE / "results-snapshot-peer.md")
    parser.add_argument(
        "--keep-state",
        action="store_true",
        help="copy the server's and the job's folders to <work>/before-delta after the delta's staging"
        " run (to replay the delta from the same state: bench/conformed/replay.py)",
    )
    args = parser.parse_args()

    server, warehouse, oltp, rows, env = conformed_bench.prepare(args.work, args.orders)
    pipeline_bench.sources_file(Path(env["ETL_SOURCES_FILE"]), args.work / "eurofxref-hist.csv")
    project = args.work / "snapshot_project"
    snapshot_project(project, oltp)
    load = os.getloadavg()

    log("staging pull 1 (not measured)")
    _, _, rc = timed(
        [str(BIN / "etl-staging"), "run"], {**env, "ETL_RUN_ID": "peer-staging-1"}, args.work / "s1.log"
    )
    assert rc == 0
    phases = []
    log("full: ours")
    ours_full = our_run(env, warehouse, args.work, "peer-full")
    log("full: dbt snapshot")
    snap_full = run_snapshot(project, args.work, "full")
    phases.append(("full", ours_full, snap_full, counts(warehouse, oltp)))

    log("delta in the OLTP database: updates, inserts, deletes (not measured)")
    with psycopg.connect(oltp, autocommit=True) as conn:
        top = conn.execute("select max(order_id) from oltp.orders").fetchone()[0]
        statements = [
            *conformed_bench.DELTA,
            *(s.replace("{top}", str(top)) for s in pipeline_bench.INSERTS),
            *pipeline_bench.DELETES,
        ]
        changed = [conn.execute(s).rowcount for s in statements]
    _, _, rc = timed(
        [str(BIN / "etl-staging"), "run"], {**env, "ETL_RUN_ID": "peer-staging-2"}, args.work / "s2.log"
    )
    assert rc == 0
    if args.keep_state:
        from etl_shared import start_embedded

        log(f"state kept in {args.work / 'before-delta'}")
        server.stop()
        conformed_bench.copy_state(args.work, args.work / "before-delta")
        server = start_embedded(args.work)
    log("delta: ours")
    ours_delta = our_run(env, warehouse, args.work, "peer-delta")
    log("delta: dbt snapshot")
    snap_delta = run_snapshot(project, args.work, "delta")
    phases.append(("1% delta", ours_delta, snap_delta, counts(warehouse, oltp)))
    log("comparing the answers key by key")
    answers = compare(warehouse, oltp)

    dbt_version = subprocess.run([str(BIN / "dbt"), "--version"], capture_output=True, text=True).stdout
    core = next(
        (line.split(":")[-1].strip() for line in dbt_version.splitlines() if "installed" in line), "?"
    )
    lines = [
        f"## Conformed history against a plain dbt snapshot: {args.orders:,} orders",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}; load average at the start"
        f" {load[0]:.1f}",
        f"- machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}",
        f"- code: {conformed_bench.code_revision()}; dbt-core {core}",
        f"- source rows: {', '.join(f'{k} {v:,}' for k, v in rows.items())}; delta rows per statement {changed}",
        "",
        "| phase | ours: conformed job s | ours: the history models' dbt s | dbt snapshot: command s |"
        " its snapshots' dbt s | snapshot / ours (dbt s) | rows (ours / snapshot): orders | order lines |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, (job, models), (snapshot, snapshot_nodes), table_rows in phases:
        ratio = snapshot_nodes / models if models else float("nan")
        lines.append(
            f"| {name} | {job:.1f} | {models:.1f} | {snapshot:.1f} | {snapshot_nodes:.1f} | {ratio:.1f}x |"
            f" {table_rows['orders'][0]:,} / {table_rows['orders'][1]:,} |"
            f" {table_rows['order_lines'][0]:,} / {table_rows['order_lines'][1]:,} |"
        )
    lines += ["", "The same answers (keys compared after the delta):", ""]
    for entity, stats in answers.items():
        lines.append(f"- {entity}: " + ", ".join(f"{k} {v:,}" for k, v in stats.items()))
    lines += ["", f"Reproduce: `.venv/bin/python bench/conformed/snapshot_peer.py --orders {args.orders}`"]
    conformed_bench.write_report(args.output, lines)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
