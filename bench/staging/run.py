"""Benchmark the staging job: generated order records from a file and a database source into staging.

One run measures, on a fresh embedded PostgreSQL and each in its own subprocess (peak RSS per run):

* the floor: ``psql \\copy`` of the JSON Lines file into a one-column jsonb table;
* the file source: ``etl-staging run`` (kind file, format jsonl, batch_size 5000), once with
  ``keep_payload: false`` and once with the default ``keep_payload: true``;
* the file source reading the same records from a Parquet file (format parquet, typed columns:
  timestamps, decimals, a struct; row groups of 100,000 rows; ``keep_payload: true``);
* the database source: ``etl-staging run`` (kind database) reading the same records from a table;
* the peer: dlt with its postgres destination (default settings) loading the same records.

Usage (from the repository root, in the project's venv; dlt is installed for the benchmark only)::

    .venv/bin/pip install "dlt[postgres]"          # the peer; not a project requirement
    .venv/bin/python bench/staging/run.py --records 1000000 [--skip-dlt] [--scale-check]

Results are printed as a markdown table and written to bench/staging/results.md. Peak RSS is the
maximum resident set size of the measured process (``/usr/bin/time -v``, else psutil polling);
the PostgreSQL server's own memory is not included for any run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SEED = 20261122
BATCH_SIZE = 5000
GNU_TIME = "/usr/bin/time"
#: ETL_VALUE_SIZES of the staging runs (--value-sizes); None: the warehouse's own (auto)
VALUE_SIZES: str | None = None

# ----------------------------------------------------------------------------- data generation

_STATUSES = ["placed", "paid", "packed", "shipped", "delivered", "returned", "cancelled"]
_CURRENCIES = ["EUR", "EUR", "EUR", "USD", "GBP", "CHF", "SEK"]
_CITIES = [
    ("DE", "Berlin", "10115"),
    ("DE", "München", "80331"),
    ("FR", "Paris", "75001"),
    ("FR", "Lyon", "69001"),
    ("NL", "Amsterdam", "1011"),
    ("CH", "Zürich", "8001"),
    ("ES", "Málaga", "29001"),
    ("IT", "Milano", "20121"),
    ("GB", "London", "EC1A"),
    ("SE", "Göteborg", "41101"),
    ("PL", "Kraków", "30-001"),
    ("US", "New York", "10001"),
]
_METHODS = ["standard", "express", "pickup", "economy"]
_WORDS = [
    "please",
    "leave",
    "at",
    "the",
    "front",
    "door",
    "ring",
    "twice",
    "gift",
    "wrap",
    "requested",
    "fragile",
    "handle",
    "with",
    "care",
    "deliver",
    "after",
    "six",
    "pm",
    "call",
    "on",
    "arrival",
    "use",
    "side",
    "entrance",
    "no",
    "signature",
    "needed",
    "neighbour",
    "may",
    "accept",
    "parcel",
    "box",
    "code",
    "invoice",
    "to",
    "company",
    "address",
    "reorder",
    "of",
    "previous",
    "order",
    "customer",
    "asked",
    "for",
    "eco",
    "packaging",
]
_EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _records(count: int, seed: int = SEED):  # type: ignore[no-untyped-def]
    """``count`` order-line records, deterministic for a seed (14 fields, one nested)."""
    rnd = random.Random(seed)  # noqa: S311  (deterministic test data)
    order_id = 10_000_000
    line = 0
    lines_in_order = 0
    ordered = _EPOCH
    customer = 0
    city = _CITIES[0]
    currency = "EUR"
    status = "placed"
    for _ in range(count):
        if line >= lines_in_order:
            order_id += 1
            line = 0
            lines_in_order = rnd.randint(1, 4)
            ordered = _EPOCH + dt.timedelta(seconds=rnd.randint(0, 700 * 86400))
            customer = rnd.randint(1, 250_000)
            city = rnd.choice(_CITIES)
            currency = rnd.choice(_CURRENCIES)
            status = rnd.choice(_STATUSES)
        line += 1
        quantity = rnd.randint(1, 9)
        price_cents = rnd.randint(199, 49_999)
        discount = rnd.choice((0, 0, 0, 5, 10, 15, 25))
        total_cents = quantity * price_cents * (100 - discount) // 100
        shipped = (
            (ordered + dt.timedelta(hours=rnd.randint(4, 120))).isoformat().replace("+00:00", "Z")
            if status in ("shipped", "delivered", "returned")
            else None
        )
        note = " ".join(rnd.choices(_WORDS, k=rnd.randint(1, 8)))
        yield {
            "order_id": order_id,
            "line_number": line,
            "customer_id": customer,
            "sku": f"SKU-{rnd.randint(1, 40_000):06d}",
            "ordered_at": ordered.isoformat().replace("+00:00", "Z"),
            "shipped_at": shipped,
            "status": status,
            "quantity": quantity,
            "unit_price": f"{price_cents // 100}.{price_cents % 100:02d}",
            "discount": f"{discount}.00",
            "line_total": f"{total_cents // 100}.{total_cents % 100:02d}",
            "currency": currency,
            "shipping": {
                "country": city[0],
                "city": city[1],
                "postcode": city[2],
                "method": rnd.choice(_METHODS),
                "express": rnd.random() < 0.2,
            },
            "note": note,
        }


def generate(path: Path, count: int) -> int:
    """Write ``count`` records as JSON Lines (streaming); return the file size in bytes."""
    tmp = path.with_suffix(".tmp")
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with tmp.open("w", encoding="utf-8", newline="\n") as out:
        buf: list[str] = []
        for record in _records(count):
            buf.append(dumps(record))
            if len(buf) >= 10_000:
                out.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            out.write("\n".join(buf) + "\n")
    tmp.replace(path)
    return path.stat().st_size


#: rows per Parquet row group (a writer's usual size; the reader streams within a group anyway)
PARQUET_ROW_GROUP = 100_000


def generate_parquet(path: Path, count: int) -> int:
    """Write the same ``count`` records as :func:`generate` as Parquet, typed as a Parquet writer would
    (timestamps, decimals, a struct), a row group at a time; return the file size in bytes."""
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    shipping = pa.struct(
        [
            ("country", pa.string()),
            ("city", pa.string()),
            ("postcode", pa.string()),
            ("method", pa.string()),
            ("express", pa.bool_()),
        ]
    )
    schema = pa.schema(
        [
            ("order_id", pa.int64()),
            ("line_number", pa.int32()),
            ("customer_id", pa.int64()),
            ("sku", pa.string()),
            ("ordered_at", pa.timestamp("us", tz="UTC")),
            ("shipped_at", pa.timestamp("us", tz="UTC")),
            ("status", pa.string()),
            ("quantity", pa.int32()),
            ("unit_price", pa.decimal128(12, 2)),
            ("discount", pa.decimal128(5, 2)),
            ("line_total", pa.decimal128(14, 2)),
            ("currency", pa.string()),
            ("shipping", shipping),
            ("note", pa.string()),
        ]
    )
    decimals = {"unit_price", "discount", "line_total"}
    stamps = {"ordered_at", "shipped_at"}

    def value(name: str, raw: object) -> object:
        if raw is None:
            return None
        if name in decimals:
            return Decimal(str(raw))
        if name in stamps:
            return dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        return raw

    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        chunk: list[dict[str, object]] = []
        for record in _records(count):
            chunk.append(record)
            if len(chunk) >= PARQUET_ROW_GROUP:
                writer.write_table(_parquet_table(chunk, schema, value))
                chunk = []
        if chunk:
            writer.write_table(_parquet_table(chunk, schema, value))
    tmp.replace(path)
    return path.stat().st_size


def _parquet_table(chunk, schema, value):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    columns = {name: [value(name, record[name]) for record in chunk] for name in schema.names}
    return pa.table(columns, schema=schema)


# ----------------------------------------------------------------------------- measurement


@dataclass
class Result:
    run: str
    records: int
    wall_s: float
    peak_rss_mb: float | None
    input_bytes: int
    verified: int | None = None
    cpu_s: float | None = None
    note: str = ""
    error: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.records / self.wall_s if self.wall_s else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.input_bytes / 1e6 / self.wall_s if self.wall_s else 0.0


def measure(
    cmd: list[str], *, env: dict[str, str], log: Path
) -> tuple[float, float | None, float | None, int]:
    """Run ``cmd``; return (wall seconds, peak RSS MB, CPU seconds, exit code)."""
    full_env = {**os.environ, **env}
    if Path(GNU_TIME).exists():
        stats = log.with_suffix(".time")
        started = time.monotonic()
        with log.open("wb") as out:
            rc = subprocess.call(
                [GNU_TIME, "-v", "-o", str(stats), *cmd], env=full_env, stdout=out, stderr=out
            )
        wall = time.monotonic() - started
        text = stats.read_text()
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
        user = re.search(r"User time \(seconds\): ([\d.]+)", text)
        system = re.search(r"System time \(seconds\): ([\d.]+)", text)
        cpu = float(user.group(1)) + float(system.group(1)) if user and system else None
        return wall, (int(rss.group(1)) / 1024 if rss else None), cpu, rc
    import psutil  # fallback: poll the child's (and its children's) RSS

    peak = 0
    started = time.monotonic()
    with log.open("wb") as out:
        proc = psutil.Popen(cmd, env=full_env, stdout=out, stderr=out)
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, proc.memory_info().rss, *(c.memory_info().rss for c in proc.children(True)))
            time.sleep(0.05)
        rc = proc.returncode
    wall = time.monotonic() - started
    return wall, peak / 1024 / 1024, None, rc


def psql_cmd(url: str, *args: str) -> list[str]:
    return [shutil.which("psql") or "/usr/bin/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, *args]


def sql_value(url: str, query: str) -> str:
    out = subprocess.run(psql_cmd(url, "-At", "-c", query), check=True, capture_output=True, text=True)
    return out.stdout.strip()


def checkpoint(url: str) -> None:
    """Flush dirty buffers of the previous run so that each run starts from a similar server state."""
    subprocess.run(psql_cmd(url, "-c", "checkpoint"), check=True)


# The CSV trick loads JSON Lines into jsonb without COPY text-format escape processing.
_JSONL_COPY_OPTIONS = "(format csv, quote e'\\x01', delimiter e'\\x02')"

_SOURCE_TABLE = """
drop table if exists bench.orders;
create schema if not exists bench;
create unlogged table bench.orders_raw (doc jsonb);
\\copy bench.orders_raw (doc) from '{path}' with {options}
create table bench.orders (
    order_id bigint not null,
    line_number integer not null,
    customer_id bigint not null,
    sku text not null,
    ordered_at timestamptz not null,
    shipped_at timestamptz,
    status text not null,
    quantity integer not null,
    unit_price numeric(12, 2) not null,
    discount numeric(5, 2) not null,
    line_total numeric(14, 2) not null,
    currency text not null,
    shipping jsonb not null,
    note text not null,
    primary key (order_id, line_number)
);
insert into bench.orders
select (jsonb_populate_record(null::bench.orders, doc)).* from bench.orders_raw;
drop table bench.orders_raw;
vacuum analyze bench.orders;
"""


def load_source_table(url: str, path: Path) -> None:
    script = _SOURCE_TABLE.format(path=path, options=_JSONL_COPY_OPTIONS)
    subprocess.run(psql_cmd(url), input=script, text=True, check=True)


def sources_yaml(path: Path, jsonl: Path, *, keep_payload: bool, parquet: Path | None = None) -> None:
    path.write_text(
        textwrap.dedent(
            f"""\
            sources:
              - name: bench_file
                kind: file
                batch_size: {BATCH_SIZE}
                entities:
                  - name: orders
                    keep_payload: {str(keep_payload).lower()}
                    files: [{{path: "{jsonl}", format: jsonl}}]
              - name: bench_parquet
                kind: file
                batch_size: {BATCH_SIZE}
                entities:
                  - name: orders
                    keep_payload: {str(keep_payload).lower()}
                    files: [{{path: "{parquet or jsonl.with_suffix(".parquet")}", format: parquet}}]
              - name: bench_db
                kind: database
                batch_size: {BATCH_SIZE}
                connection: {{url_env: BENCH_SOURCE_DATABASE_URL}}
                entities:
                  - {{name: orders, table: bench.orders, key: [order_id, line_number]}}
            """
        )
    )


_DLT_SCRIPT = """
import json, sys
import dlt

path, credentials, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])

@dlt.resource(name="orders")
def orders():
    page = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            page.append(json.loads(line))
            if len(page) >= batch:
                yield page
                page = []
    if page:
        yield page

pipeline = dlt.pipeline(
    pipeline_name="bench_staging",
    destination=dlt.destinations.postgres(credentials=credentials),
    dataset_name="bench_dlt",
)
info = pipeline.run(orders())
print(info)
"""


def dlt_credentials(url: str) -> str:
    # dlt insists on a host in the URL; libpq (psycopg2) lets the ``host`` query parameter (the Unix
    # socket directory of the embedded server, which listens on no TCP address) override it.
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rstrip("@").split("@")[0] + "@localhost:5432").geturl()


# ----------------------------------------------------------------------------- runs


@dataclass
class Code:
    root: Path
    description: str
    pythonpath: str | None = None


CODE = Code(REPO, "working tree")


def code_under_test(rev: str | None, work: Path) -> Code:
    """The staging code measured: the working tree, or a git revision extracted under the work dir."""

    def git(*a: str) -> str:
        return subprocess.run(
            ["git", *a], cwd=REPO, check=True, capture_output=True, text=True
        ).stdout.strip()

    if rev is None:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "shared", "services/staging")
        state = f"with uncommitted changes in {len(dirty.splitlines())} file(s)" if dirty else "clean"
        return Code(REPO, f"working tree at {head} ({state})")
    sha = git("rev-parse", "--short", rev)
    root = work / f"src_{sha}"
    if not root.exists():
        tmp = work / f"src_{sha}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", sha, "shared", "services/staging"], cwd=REPO, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        tmp.rename(root)
    paths = [str(root / "services" / "staging" / "src"), str(root / "shared" / "src")]
    return Code(
        root, f"git revision {sha} ({git('log', '-1', '--format=%s', sha)[:80]})", os.pathsep.join(paths)
    )


def staging_command() -> list[str]:
    return [sys.executable, "-m", "etl_staging"]


def staging_run(
    name: str,
    *,
    server,  # type: ignore[no-untyped-def]
    work: Path,
    jsonl: Path,
    records: int,
    input_bytes: int,
    source: str,
    keep_payload: bool,
    source_url: str | None,
    parquet: Path | None = None,
) -> Result:
    database = f"st_{name}".replace("-", "_")
    url = server.url(database)
    sources = work / f"sources_{database}.yml"
    sources_yaml(sources, jsonl, keep_payload=keep_payload, parquet=parquet)
    env = {
        "ETL_DATABASE_URL": url,
        "ETL_DATA_DIR": str(work),
        "ETL_SOURCES_FILE": str(sources),
        "ETL_LOG_LEVEL": "INFO",
        "ETL_SECRETS_DIR": str(work),  # no secrets folder lookups from the host
    }
    if VALUE_SIZES:
        env["ETL_VALUE_SIZES"] = VALUE_SIZES  # which warehouse's value-size limits (docs/cockroachdb.md)
    if source_url:
        env["BENCH_SOURCE_DATABASE_URL"] = source_url
    if CODE.pythonpath:
        env["PYTHONPATH"] = CODE.pythonpath
    # Apply the migrations first (not measured): the measured run is the pull itself.
    from etl_shared import Database, apply_migrations

    apply_migrations(Database(url))
    checkpoint(server.url("postgres"))
    cmd = [*staging_command(), "run", "--source", source]
    wall, rss, cpu, rc = measure(cmd, env=env, log=work / f"{database}.log")
    result = Result(name, records, wall, rss, input_bytes, cpu_s=cpu)
    if rc != 0:
        result.error = f"exit {rc}, see {work / f'{database}.log'}"
        return result
    result.verified = int(
        sql_value(
            url,
            "select coalesce(sum(b.record_count), 0) from staging.pull_batches b join staging.pulls p"
            " using (pull_id) where p.status = 'committed'",
        )
    )
    result.extra["stored_mb"] = round(
        int(
            sql_value(
                url,
                "select pg_total_relation_size('staging.pull_batches')"
                " + pg_total_relation_size('staging.pull_payloads')",
            )
        )
        / 1e6
    )
    # The stored values: how many batches, the largest batch (its jsonb as stored, and its JSON text
    # re-encoded compactly as staging sends it) and the largest payload chunk.
    batches, largest_jsonb, largest_payload = sql_value(
        url,
        "select (select count(*) from staging.pull_batches) || '|'"
        " || (select coalesce(max(pg_column_size(data)), 0) from staging.pull_batches) || '|'"
        " || (select coalesce(max(byte_count), 0) from staging.pull_payloads)",
    ).split("|")
    result.extra["values"] = (
        f"{int(batches):,} batches, the largest {int(largest_jsonb) / 1024:,.0f} KiB of jsonb;"
        f" payload chunks up to {int(largest_payload) / 1024:,.0f} KiB"
    )
    return result


def floor_run(*, server, work: Path, jsonl: Path, records: int, input_bytes: int) -> Result:  # type: ignore[no-untyped-def]
    url = server.url("floor")
    subprocess.run(
        psql_cmd(url, "-c", "drop table if exists floor; create table floor (doc jsonb)"), check=True
    )
    checkpoint(server.url("postgres"))
    cmd = psql_cmd(url, "-c", f"\\copy floor (doc) from '{jsonl}' with {_JSONL_COPY_OPTIONS}")
    wall, rss, cpu, rc = measure(cmd, env={}, log=work / "floor.log")
    result = Result("floor: psql \\copy into jsonb", records, wall, rss, input_bytes, cpu_s=cpu)
    if rc != 0:
        result.error = f"exit {rc}, see {work / 'floor.log'}"
        return result
    result.verified = int(sql_value(url, "select count(*) from floor"))
    result.extra["stored_mb"] = round(int(sql_value(url, "select pg_total_relation_size('floor')")) / 1e6)
    return result


def dlt_run(*, server, work: Path, jsonl: Path, records: int, input_bytes: int) -> Result:  # type: ignore[no-untyped-def]
    name = "peer: dlt (postgres destination, defaults)"
    try:
        import dlt

        version = dlt.__version__
    except ImportError as exc:
        return Result(name, records, 0.0, None, input_bytes, error=f"dlt is not installed: {exc}")
    url = server.url("dlt")
    script = work / "dlt_load.py"
    script.write_text(_DLT_SCRIPT)
    dlt_dir = work / "dlt_home"
    shutil.rmtree(dlt_dir, ignore_errors=True)
    env = {
        "DLT_DATA_DIR": str(dlt_dir / "data"),
        "DLT_PROJECT_DIR": str(dlt_dir / "project"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",  # no network calls from the benchmark; not a speed setting
    }
    checkpoint(server.url("postgres"))
    cmd = [sys.executable, str(script), str(jsonl), dlt_credentials(url), str(BATCH_SIZE)]
    wall, rss, cpu, rc = measure(cmd, env=env, log=work / "dlt.log")
    result = Result(name, records, wall, rss, input_bytes, cpu_s=cpu, note=f"dlt {version}")
    if rc != 0:
        tail = (work / "dlt.log").read_text(errors="replace")[-1500:]
        result.error = f"exit {rc}: {tail}"
        return result
    result.verified = int(sql_value(url, "select count(*) from bench_dlt.orders"))
    result.extra["stored_mb"] = round(
        int(sql_value(url, "select pg_total_relation_size('bench_dlt.orders')")) / 1e6
    )
    return result


# ----------------------------------------------------------------------------- report


def machine_info(server) -> list[str]:  # type: ignore[no-untyped-def]
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    pg = sql_value(server.url("postgres"), "select version()")
    settings = sql_value(
        server.url("postgres"),
        "select string_agg(name || '=' || setting || coalesce(unit, ''), ', ' order by name) from pg_settings"
        " where name in ('shared_buffers', 'max_wal_size', 'synchronous_commit', 'wal_level')",
    )
    try:
        import dlt

        dlt_version = dlt.__version__
    except ImportError:
        dlt_version = "not installed"
    return [
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.1f} GiB memory, {platform.platform()}",
        f"- Python {platform.python_version()}; dlt {dlt_version}",
        f"- staging code measured: {CODE.description}",
        f"- PostgreSQL: {pg.split(' on ')[0]} (embedded, default settings: {settings})",
    ]


def table(results: list[Result], floor_wall: float | None) -> list[str]:
    lines = [
        "| run | records | wall s | rows/s | MB/s | peak RSS MB | CPU s | ratio to floor | stored MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.error:
            last = ([line for line in r.error.splitlines() if line.strip()] or ["?"])[-1][:200]
            lines.append(f"| {r.run} | {r.records:,} | failed: {last} | | | | | | |")
            continue
        ratio = f"{r.wall_s / floor_wall:.2f}x" if floor_wall else ""
        rss = f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb is not None else "?"
        cpu = f"{r.cpu_s:.0f}" if r.cpu_s is not None else "?"
        lines.append(
            f"| {r.run} | {r.records:,} | {r.wall_s:.1f} | {r.rows_per_s:,.0f} | {r.mb_per_s:.1f} | {rss} | {cpu}"
            f" | {ratio} | {r.extra.get('stored_mb', '')} |"
        )
    return lines


def verdicts(results: dict[str, Result], floor: Result | None, scale: Result | None) -> list[str]:
    out: list[str] = []
    file_keys = ["file source, keep_payload: true (default)", "file source, keep_payload: false"]
    for key in file_keys:
        r = results.get(key)
        if r is None or r.error:
            continue
        if floor and not floor.error:
            ratio = r.wall_s / floor.wall_s
            out.append(
                f"- {key}: {ratio:.2f}x the floor's wall time (target <= 2x): {'met' if ratio <= 2 else 'MISSED'}"
            )
        peer = results.get("peer")
        if peer and not peer.error:
            speedup = peer.wall_s / r.wall_s
            out.append(
                f"- {key}: {speedup:.1f}x faster than dlt (target >= 10x): {'met' if speedup >= 10 else 'MISSED'}"
            )
        if r.peak_rss_mb is not None:
            out.append(
                f"- {key}: peak RSS {r.peak_rss_mb:.0f} MB (target < 250 MB):"
                f" {'met' if r.peak_rss_mb < 250 else 'MISSED'}"
            )
    parquet = results.get("parquet")
    if parquet and not parquet.error and parquet.peak_rss_mb is not None:
        out.append(
            f"- file source, parquet: peak RSS {parquet.peak_rss_mb:.0f} MB (target < 250 MB):"
            f" {'met' if parquet.peak_rss_mb < 250 else 'MISSED'}"
        )
    base = results.get("file source, keep_payload: true (default)")
    if scale and not scale.error and base and not base.error and base.peak_rss_mb and scale.peak_rss_mb:
        growth = scale.peak_rss_mb / base.peak_rss_mb
        out.append(
            f"- peak RSS at {scale.records:,} records {scale.peak_rss_mb:.0f} MB vs {base.peak_rss_mb:.0f} MB at"
            f" {base.records:,} ({growth:.2f}x; target: no higher, within 5% noise):"
            f" {'met' if growth <= 1.05 else 'MISSED'}"
        )
    return out


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work")
    parser.add_argument("--skip-dlt", action="store_true", help="do not run the dlt peer")
    parser.add_argument(
        "--scale-check",
        action="store_true",
        help="also run the file source at 10x records (peak RSS comparison)",
    )
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    parser.add_argument(
        "--value-sizes",
        choices=["auto", "cockroachdb", "postgresql"],
        help="the staging runs' ETL_VALUE_SIZES: cockroachdb measures CockroachDB's value-size limits"
        " (batches of at most 768 KiB of JSON, 1 MiB payload chunks) on the embedded PostgreSQL",
    )
    parser.add_argument(
        "--git-rev",
        help="measure the staging and shared code of this git revision (extracted with git archive)"
        " instead of the working tree",
    )
    args = parser.parse_args()

    global VALUE_SIZES
    VALUE_SIZES = args.value_sizes
    work: Path = args.work.resolve() / "staging"
    work.mkdir(parents=True, exist_ok=True)
    global CODE
    CODE = code_under_test(args.git_rev, work)
    sys.path.insert(0, str(CODE.root / "shared" / "src"))
    from etl_shared import EmbeddedPostgres

    pg_folder = work / "postgres"
    # A fresh server every run: nothing left from a previous benchmark.
    if pg_folder.exists():
        with contextlib.suppress(Exception):
            EmbeddedPostgres(pg_folder).stop()
        shutil.rmtree(pg_folder)

    def log(msg: str) -> None:
        sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
        sys.stderr.flush()

    jsonl = work / f"orders_{args.records}.jsonl"
    if not jsonl.exists():
        log(f"generating {args.records:,} records into {jsonl}")
        started = time.monotonic()
        generate(jsonl, args.records)
        log(f"generated in {time.monotonic() - started:.1f}s")
    size = jsonl.stat().st_size
    log(f"input: {size / 1e6:.1f} MB, {size / args.records:.0f} bytes/record")

    server = EmbeddedPostgres(pg_folder).start()
    try:
        source_url = server.url("source")
        log("loading the source table bench.orders (not measured)")
        load_source_table(source_url, jsonl)

        results: dict[str, Result] = {}
        log("floor: psql \\copy")
        results["floor"] = floor_run(
            server=server, work=work, jsonl=jsonl, records=args.records, input_bytes=size
        )
        common = dict(server=server, work=work, jsonl=jsonl, records=args.records, input_bytes=size)
        log("file source, keep_payload false")
        results["file source, keep_payload: false"] = staging_run(
            "file_nopayload", source="bench_file", keep_payload=False, source_url=None, **common
        )
        results["file source, keep_payload: false"].run = "staging: file source, keep_payload: false"
        log("file source, keep_payload true")
        results["file source, keep_payload: true (default)"] = staging_run(
            "file_payload", source="bench_file", keep_payload=True, source_url=None, **common
        )
        results[
            "file source, keep_payload: true (default)"
        ].run = "staging: file source, keep_payload: true (default)"
        log("database source")
        results["database source"] = staging_run(
            "database", source="bench_db", keep_payload=True, source_url=source_url, **common
        )
        results["database source"].run = "staging: database source (same records in a table)"
        parquet = work / f"orders_{args.records}.parquet"
        if not parquet.exists():
            log(f"generating the same records as Parquet into {parquet}")
            generate_parquet(parquet, args.records)
        log("file source, parquet")
        results["parquet"] = staging_run(
            "file_parquet",
            source="bench_parquet",
            keep_payload=True,
            source_url=None,
            parquet=parquet,
            **common,
        )
        results["parquet"].run = "staging: file source, parquet"
        parquet_mb = parquet.stat().st_size / 1e6
        if not args.skip_dlt:
            log("peer: dlt")
            results["peer"] = dlt_run(**common)
        scale: Result | None = None
        if args.scale_check:
            big = args.records * 10
            big_jsonl = work / f"orders_{big}.jsonl"
            if not big_jsonl.exists():
                log(f"generating {big:,} records for the scale check")
                generate(big_jsonl, big)
            big_size = big_jsonl.stat().st_size
            log("scale check: file source at 10x")
            scale = staging_run(
                "file_payload_10x",
                server=server,
                work=work,
                jsonl=big_jsonl,
                records=big,
                input_bytes=big_size,
                source="bench_file",
                keep_payload=True,
                source_url=None,
            )
            scale.run = "staging: file source, keep_payload: true, 10x records"
            results["scale"] = scale

        for key, r in results.items():
            if not r.error and r.verified is not None and r.verified != r.records:
                r.error = f"loaded {r.verified} records, expected {r.records}"
            log(f"{key}: {r.wall_s:.1f}s rss={r.peak_rss_mb} verified={r.verified} error={r.error}")

        floor = results.get("floor")
        floor_wall = floor.wall_s if floor and not floor.error else None
        report = [
            f"## Staging benchmark: {args.records:,} order records",
            "",
            f"Input: {size / 1e6:.1f} MB of JSON Lines ({size / args.records:.0f} bytes/record, 14 fields, one nested"
            f" object), batch_size {BATCH_SIZE}.",
            "",
            *machine_info(server),
            "",
            *table(list(results.values()), floor_wall),
            "",
            "Targets:",
            "",
            *verdicts(results, floor, scale),
            "",
            f"Stored values (value sizes: {VALUE_SIZES or 'auto'}):",
            "",
            *[f"- {r.run}: {r.extra['values']}" for r in results.values() if "values" in r.extra],
            "",
            "MB/s is the JSON Lines input size over the wall time (for the database source and the Parquet"
            f" file: the same records' JSON Lines size; the Parquet file is {parquet_mb:.1f} MB, row groups of"
            f" {PARQUET_ROW_GROUP:,} rows, keep_payload: true). Peak RSS is the measured process only (the"
            " PostgreSQL server is not counted); CPU s is that process's user + system time. Stored MB is the"
            " size of the target tables after the run.",
            "",
            f"Reproduce: `.venv/bin/python bench/staging/run.py --records {args.records}"
            f"{' --git-rev ' + args.git_rev if args.git_rev else ''}"
            f"{' --skip-dlt' if args.skip_dlt else ''}{' --scale-check' if args.scale_check else ''}"
            f"{' --value-sizes ' + args.value_sizes if args.value_sizes else ''}`",
        ]
        text = "\n".join(report) + "\n"
        sys.stdout.write(text)
        args.output.write_text(text)
        (work / f"results_{args.records}.json").write_text(
            json.dumps(
                {
                    k: {**r.__dict__, "rows_per_s": r.rows_per_s, "mb_per_s": r.mb_per_s}
                    for k, r in results.items()
                },
                indent=2,
                default=str,
            )
        )
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
