"""Replay the delta of ``bench/conformed/snapshot_peer.py --keep-state``: the state kept after the
delta's staging run copied to a scratch folder, the server started there, ``etl-conformed run`` timed
(and ``--snapshot``: the dbt snapshot too), the slowest dbt nodes printed. ``--explain`` loads
auto_explain into every session (EXPLAIN ANALYZE, BUFFERS of each statement slower than
``--explain-ms``, in the server log ``<work>/postgres/log``), to see the plans as dbt sends them.

Usage (from the repository root)::

    .venv/bin/python bench/conformed/replay.py bench/work/snapshot_peer/before-delta --work /tmp/replay

(``--in-place``: in the kept folder itself, without a copy; the kept state is then used up.)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


peer = _load("bench_snapshot_peer", HERE / "snapshot_peer.py")
conformed_bench = peer.conformed_bench

#: the server settings --explain sets (and a run without it resets)
EXPLAIN_SETTINGS = (
    "session_preload_libraries",
    "auto_explain.log_min_duration",
    "auto_explain.log_analyze",
    "auto_explain.log_buffers",
    "auto_explain.log_nested_statements",
    "log_min_duration_statement",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "state", type=Path, help="the folder snapshot_peer.py --keep-state wrote (before-delta)"
    )
    parser.add_argument("--work", type=Path, help="scratch folder (replaced)")
    parser.add_argument(
        "--in-place",
        action="store_true",
        help="run in the state folder itself (no copy; the state is used up)",
    )
    parser.add_argument("--run-id", default="peer-replay")
    parser.add_argument(
        "--explain", action="store_true", help="auto_explain (analyze, buffers) in the server log"
    )
    parser.add_argument("--explain-ms", type=int, default=300)
    parser.add_argument(
        "--snapshot", action="store_true", help="then the dbt snapshot, and compare the answers"
    )
    parser.add_argument("--keep-server", action="store_true", help="leave the server running (for psql)")
    args = parser.parse_args()
    from etl_shared import start_embedded

    bench = args.state.resolve().parent  # the benchmark's work folder: sources file, FX file, dbt project
    if args.in_place:
        args.work = args.state
    elif args.work is None:
        parser.error("--work or --in-place")
    if (args.work / "postgres" / "postmaster.pid").exists():
        start_embedded(args.work).stop()
    if not args.in_place:
        shutil.rmtree(args.work, ignore_errors=True)
        conformed_bench.copy_state(args.state, args.work)
    subprocess.run(["sync"], check=True)
    server = start_embedded(args.work)
    warehouse, oltp = server.url("wh"), server.url("oltp")
    settings: dict[str, str] = {}
    if args.explain:
        settings = {
            "session_preload_libraries": "auto_explain",
            "auto_explain.log_min_duration": f"{args.explain_ms}ms",
            "auto_explain.log_analyze": "on",
            "auto_explain.log_buffers": "on",
            "auto_explain.log_nested_statements": "on",
            "log_min_duration_statement": f"{args.explain_ms}ms",
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
        "ETL_OLTP_DATABASE_URL": oltp,
        "ETL_SOURCES_FILE": str(bench / "sources.yml"),
        "ETL_DATA_DIR": str(args.work / "data"),
        "ETL_FILE_ROOTS": str(bench),
    }
    before = os.getloadavg()[0]
    wall, models = peer.our_run(env, warehouse, args.work, args.run_id)
    load = f"load {before:.2f} / {os.getloadavg()[0]:.2f}"
    print(f"etl-conformed run: {wall:.1f} s, history models {models:.1f} s of dbt, {load}")
    for node, seconds in conformed_bench.node_times(warehouse, args.run_id, top=12):
        print(f"- {node}: {seconds:.1f} s")
    rc = 0
    if args.snapshot:
        project = args.work / "snapshot_project"
        peer.snapshot_project(project, oltp)
        before = os.getloadavg()[0]
        wall, nodes = peer.run_snapshot(project, args.work, "replay")
        load = f"load {before:.2f} / {os.getloadavg()[0]:.2f}"
        print(f"dbt snapshot: {wall:.1f} s, snapshots {nodes:.1f} s of dbt, {load}")
        for entity, stats in peer.compare(warehouse, oltp).items():
            print(f"- {entity}: " + ", ".join(f"{k} {v:,}" for k, v in stats.items()))
            rc = rc or any(
                stats[k] for k in ("only_ours", "only_snapshot", "versions_differ", "current_differs")
            )
    if args.keep_server:
        print(f"server left running: {warehouse}")
    else:
        server.stop()
    return 1 if rc else 0


if __name__ == "__main__":
    sys.exit(main())
