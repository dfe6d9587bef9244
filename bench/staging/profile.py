"""Profile one file-source staging run (the benchmark's input) with py-spy, and split its CPU time
between the staging process and the PostgreSQL server.

Usage (after ``bench/staging/run.py`` generated the input; py-spy installed for the benchmark only)::

    .venv/bin/pip install py-spy
    .venv/bin/python bench/staging/profile.py --records 1000000 [--keep-payload] [--git-rev REV]

Writes ``bench/work/staging/profile_*.txt`` (py-spy collapsed stacks, ``--idle`` so that waiting on
the server shows) and prints the top self/inclusive frames and the client/server CPU split.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run


def server_cpu(folder: Path) -> float:
    """User + system CPU seconds of every process of the embedded server (postmaster and backends)."""
    pid = int((folder / "postmaster.pid").read_text().split()[0])
    master = psutil.Process(pid)
    total = 0.0
    for proc in [master, *master.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    # Backends that already exited are counted in the postmaster's children times.
    times = master.cpu_times()
    return total + times.children_user + times.children_system


def summarize(raw: Path, top: int = 25) -> list[str]:
    self_count: collections.Counter[str] = collections.Counter()
    incl_count: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        self_count[frames[-1]] += count
        for frame in set(frames):
            incl_count[frame] += count
    out = [f"samples: {total}", "", "top self (leaf) frames:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in self_count.most_common(top)]
    out += ["", "top inclusive frames:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl_count.most_common(top)]
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=run.REPO / "bench" / "work")
    parser.add_argument("--keep-payload", action="store_true")
    parser.add_argument("--source", default="bench_file", choices=["bench_file", "bench_db"])
    parser.add_argument(
        "--toast-compression",
        choices=["pglz", "lz4"],
        help="set default_toast_compression on the target database (experiment; the embedded build has pglz only)",
    )
    parser.add_argument("--no-py-spy", action="store_true", help="only the timing and CPU split")
    parser.add_argument("--native", action="store_true", help="py-spy --native without --idle: CPU, C frames")
    parser.add_argument("--git-rev", help="profile this git revision's code instead of the working tree")
    args = parser.parse_args()

    work = args.work.resolve() / "staging"
    code = run.code_under_test(args.git_rev, work)
    sys.path.insert(0, str(code.root / "shared" / "src"))
    from etl_shared import Database, EmbeddedPostgres, apply_migrations

    print(f"code: {code.description}")
    jsonl = work / f"orders_{args.records}.jsonl"
    if not jsonl.exists():
        raise SystemExit(f"{jsonl} does not exist: run bench/staging/run.py --records {args.records} first")
    folder = work / "postgres"
    server = EmbeddedPostgres(folder).start()
    tag = f"{args.source}_{'payload' if args.keep_payload else 'nopayload'}_{args.toast_compression or 'default'}"
    database = f"prof_{tag}_{int(time.time())}"
    try:
        url = server.url(database)
        if args.toast_compression:
            subprocess.run(
                run.psql_cmd(
                    url,
                    "-c",
                    f"alter database {database} set default_toast_compression = '{args.toast_compression}'",
                ),
                check=True,
            )
        apply_migrations(Database(url))
        sources = work / f"sources_{database}.yml"
        run.sources_yaml(sources, jsonl, keep_payload=args.keep_payload)
        env = {
            **os.environ,
            "ETL_DATABASE_URL": url,
            "ETL_DATA_DIR": str(work),
            "ETL_SOURCES_FILE": str(sources),
            "ETL_SECRETS_DIR": str(work),
            "BENCH_SOURCE_DATABASE_URL": server.url("source"),
        }
        if code.pythonpath:
            env["PYTHONPATH"] = code.pythonpath
        run.checkpoint(server.url("postgres"))
        raw = work / f"profile_{tag}.txt"
        cmd = [*run.staging_command(), "run", "--source", args.source]
        if not args.no_py_spy:
            py_spy = str(Path(sys.executable).parent / "py-spy")
            mode = ["--native"] if args.native else ["--idle"]
            cmd = [py_spy, "record", *mode, "--rate", "200", "--format", "raw", "-o", str(raw), "--", *cmd]
        before = server_cpu(folder)
        started = time.monotonic()
        stderr = (work / f"profile_{tag}.log").open("wb")
        child = psutil.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        client_cpu = 0.0
        while child.poll() is None:
            try:
                kids = [child, *child.children(recursive=True)]
                client_cpu = max(client_cpu, sum(sum(k.cpu_times()[:2]) for k in kids))
            except psutil.Error:
                pass
            time.sleep(0.2)
        wall = time.monotonic() - started
        stderr.close()
        server_used = server_cpu(folder) - before
        print(
            f"{tag}: exit {child.returncode}, wall {wall:.1f}s, server CPU {server_used:.1f}s, "
            f"client CPU >= {client_cpu:.1f}s (sampled; includes py-spy when used)"
        )
        stored = run.sql_value(
            url,
            "select pg_total_relation_size('staging.pull_batches') + pg_total_relation_size('staging.pull_payloads')",
        )
        print(f"stored: {int(stored) / 1e6:.0f} MB")
        if not args.no_py_spy and raw.exists():
            print("\n".join(summarize(raw)))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
