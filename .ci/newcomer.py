"""The README's main command as a newcomer types it: `make run`, twice, on this clone, with no
``ETL_*`` variable in the environment and no data folder left from before.

Fails (exit 1, saying why) unless both runs exit 0 and print the summary, ``etl status --check`` exits
0 after each, and every conformed and semantic table holds as many rows after the second run as after
the first. Run by ``.ci/run`` with the project's virtual environment, after ``make test``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

from etl_shared import EmbeddedPostgres, start_embedded

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / ".etl"  # the documented default, ETL_DATA_DIR unset
#: Tables whose row count changes by design from run to run: not compared.
GROWING = {"conformed.consumed_pulls": "one row per staging pull a run consumed"}
#: ... and by prefix: the validated models hold only the records of the pulls a run read
#: (docs/data-model.md), none on a second run without new source data.
PER_RUN_PREFIXES = ("conformed.validated_",)
SUMMARY_LINE = re.compile(r"^  (staging|conformed|semantic) +(\w+) +(\d+) rows +[\d.]+s", re.MULTILINE)


def newcomer_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("ETL_")}


def shell(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``command`` as typed at a shell prompt in the clone; its output is shown as it was captured."""
    started = time.monotonic()
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True)
    sys.stdout.write(result.stdout[-20000:])
    sys.stdout.write(result.stderr[-20000:])
    print(f"== {command}: exit {result.returncode} after {time.monotonic() - started:.1f}s", flush=True)
    return result


def table_counts() -> dict[str, int]:
    url = start_embedded(DATA_DIR).url()
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "select table_schema, table_name from information_schema.tables"
            " where table_schema in ('conformed', 'semantic') and table_type = 'BASE TABLE'"
            " order by 1, 2"
        ).fetchall()
        counts = {}
        for schema, table in tables:
            query = sql.SQL("select count(*) from {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            row = conn.execute(query).fetchone()
            counts[f"{schema}.{table}"] = row[0] if row else 0
    return counts


def one_run(env: dict[str, str], label: str) -> tuple[list[str], dict[str, int]]:
    problems = []
    run = shell("make run", env)
    if run.returncode != 0:
        problems.append(f"{label} `make run` exited {run.returncode}")
    zones = {m.group(1): (m.group(2), int(m.group(3))) for m in SUMMARY_LINE.finditer(run.stdout)}
    if "\nRun " not in "\n" + run.stdout or set(zones) != {"staging", "conformed", "semantic"}:
        problems.append(f"{label} `make run` printed no summary of the three zones (found {sorted(zones)})")
    failed = {zone: status for zone, (status, _) in zones.items() if status != "succeeded"}
    if failed:
        problems.append(f"{label} run: zones not succeeded: {failed}")
    check = shell(".venv/bin/etl status --check", env)
    if check.returncode != 0:
        problems.append(f"{label} `etl status --check` exited {check.returncode}")
    counts = table_counts() if DATA_DIR.joinpath("postgres").is_dir() else {}
    if not counts:
        problems.append(
            f"{label} run: no conformed or semantic table in the embedded database under {DATA_DIR}"
        )
    return problems, counts


def main() -> int:
    if DATA_DIR.exists():
        print(f"{DATA_DIR} exists before the first `make run`: not a newcomer's clone (did a test write it?)")
        return 1
    env = newcomer_environment()
    try:
        problems, first = one_run(env, "first")
        more, second = one_run(env, "second")
        problems += more
    finally:
        if DATA_DIR.joinpath("postgres").is_dir():
            EmbeddedPostgres(DATA_DIR / "postgres").stop()
    for table in sorted(set(first) | set(second)):
        if table in GROWING or table.startswith(PER_RUN_PREFIXES):
            continue
        if first.get(table) != second.get(table):
            problems.append(
                f"{table}: {first.get(table)} rows after the first run, {second.get(table)} after"
            )
    print(f"== {len(first)} conformed and semantic tables compared between the two runs")
    for table, rows in sorted(second.items()):
        print(f"   {table:<45} {rows:>10}")
    if problems:
        print("== the README's `make run` failed for a newcomer:\n  " + "\n  ".join(problems))
        return 1
    print("== `make run` twice as a newcomer: both exit 0, status healthy, the same row counts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
