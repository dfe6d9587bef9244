"""The life of one zone job, shared by the three entrypoints.

Read settings once, configure logging, find (or start) the database, apply migrations, open the
audit row, run the zone's work, close the audit row, push metrics in a ``finally`` block, and turn
whatever happened into the documented exit code.
"""

from __future__ import annotations

import atexit
import functools
import gc
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from ._audit import JobAudit
from ._db import Database, redact_url
from ._embedded import start_embedded
from ._errors import EXIT_OK, EtlError, exit_code_for
from ._lineage import OpenLineageEmitter
from ._liveness import Heartbeat, ZoneBusy, ZoneLeases, job_holder, mark_abandoned_jobs
from ._lockwatch import LockWatch
from ._logging import bind_context, configure_logging, redact
from ._metrics import JobMetrics
from ._migrations import apply_migrations
from ._settings import Settings
from ._signals import JobTerminated, finishing, stop_cause, stop_on_signals

_log = logging.getLogger(__name__)


@dataclass
class JobContext:
    settings: Settings
    db: Database
    audit: JobAudit
    metrics: JobMetrics
    counts: dict[str, Any] = field(default_factory=dict)


def resolve_database_url(settings: Settings, *, announce: bool = True) -> str:
    """The configured warehouse URL, or the embedded PostgreSQL's (started if needed)."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    server = start_embedded(settings.data_dir)
    url = server.url()
    if announce:
        _log.info("using the embedded PostgreSQL in %s", server.folder, extra={"psql": server.psql_command()})
        sys.stderr.write(f"embedded database: connect with  {server.psql_command()}\n")
    return url


def _count_table(conn: Any, table: str) -> int:
    schema, _, name = table.partition(".")
    row = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(schema, name))).fetchone()
    return int(row[0]) if row else 0


def count_rows(db: Database, tables: list[str], *, connections: int = 2) -> dict[str, int]:
    """Row counts of ``schema.table`` names (for the audit row and ``etl status``), counted over
    ``connections`` connections at once: after a conformed build these are the 1-2-million-row
    tables the build just wrote, and one connection counting them one after the other took 1.8 s of
    the benchmark's incremental run."""
    if not tables:
        return {}
    counts: dict[str, int] = {}
    pending = iter(tables)
    lock = threading.Lock()

    def count_some() -> None:
        with db.connect(autocommit=True) as conn:
            while True:
                with lock:
                    table = next(pending, None)
                if table is None:
                    return
                counts[table] = _count_table(conn, table)

    workers = max(1, min(connections, len(tables)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(count_some) for _ in range(workers)]:
            future.result()
    return {table: counts[table] for table in tables}


class RowCounter:
    """Counts the rows of tables while a build goes on: ``submit`` a table as soon as its model is
    built (build_zone passes it to dbt's event callback), and ``counts`` returns the counts of the
    tables asked for, counting those not submitted (or not counted yet) there and then.

    One worker thread with its own connection counts the submitted tables in order, so that a table
    submitted again (a model that ``dbt retry`` ran a second time) is counted again after. Counting
    after the build instead left about a second of every conformed run on the benchmark at the end,
    single-threaded: the 2.2-million-row history and order lines are built early enough that their
    counts overlap the nodes and tests that follow them.

    ``serial`` (PostgreSQL): the background counts run without parallel workers, so that a count
    takes one core beside dbt's threads rather than every core for a moment."""

    def __init__(self, db: Database, *, serial: bool = False) -> None:
        self._db = db
        self._serial = serial
        self._counted: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Any] = []

    def submit(self, table: str) -> None:
        """Count ``table`` (``schema.table``) in the background."""
        with self._lock:
            self._counted.pop(table, None)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="etl-count")
            self._pending.append(self._pool.submit(self._count, table))

    def _count(self, table: str) -> None:
        with self._db.connect(autocommit=True) as conn:
            if self._serial:
                conn.execute("set max_parallel_workers_per_gather = 0")
            rows = _count_table(conn, table)
        with self._lock:
            self._counted[table] = rows

    def counts(self, tables: list[str]) -> dict[str, int]:
        """The row counts of ``tables``: those counted in the background, the others counted now."""
        self.close()
        with self._lock:
            missing = [t for t in tables if t not in self._counted]
        counted = count_rows(self._db, missing) if missing else {}
        with self._lock:
            return {t: counted[t] if t in counted else self._counted[t] for t in tables}

    def close(self) -> None:
        """Wait for the background counts; a count that failed is left to ``counts`` to redo."""
        with self._lock:
            pool, pending = self._pool, self._pending
            self._pool, self._pending = None, []
        for future in pending:
            if future.exception() is not None:
                _log.warning("a background row count failed, counting again: %s", future.exception())
        if pool is not None:
            pool.shutdown(wait=True)


def refresh_statistics(db: Database, tables: list[str]) -> list[str]:
    """VACUUM (ANALYZE) those of ``schema.table`` names that a run changed much: never analysed, or more
    than a tenth of the rows changed since the last analysis; returns the tables done.

    For PostgreSQL only, after a build. Autovacuum gets to a new or much-changed table only some time
    later: the next run then either plans without statistics (guessing the row counts cost seconds on
    the 2-million-row tables of the benchmark) or runs while autovacuum works through those tables
    beside it. Done here, the job that wrote the rows pays for them, once. CockroachDB collects
    statistics and garbage on its own."""
    with db.connect(autocommit=True) as conn:
        stale = conn.execute(
            "select schemaname, relname from pg_stat_user_tables"
            " where schemaname || '.' || relname = any(%s)"
            " and (coalesce(last_analyze, last_autoanalyze) is null"
            " or n_mod_since_analyze > 0.1 * n_live_tup + 50)"
            " order by 1, 2",
            (tables,),
        ).fetchall()
        for schema, name in stale:
            conn.execute(sql.SQL("vacuum (analyze) {}").format(sql.Identifier(schema, name)))
    return [f"{schema}.{name}" for schema, name in stale]


@functools.cache
def _no_final_collection() -> None:
    """Have the process freeze every object left (``gc.freeze``) when it exits, once a job ran.

    Python's finalisation runs one last cyclic garbage collection over everything still alive: after
    a dbt zone's job, dbt's whole object graph. That took 0.7 s after the conformed job's last log
    line on the benchmark, for nothing: the process is ending, the job has closed its connections and
    files, and logging's own exit handler (registered earlier, so run later) still flushes the logs.
    Objects are still freed by reference counting; only garbage cycles are left to the OS."""
    atexit.register(gc.freeze)


#: allocations between two young-generation collections while a job runs (Python's default: 700)
JOB_GC_THRESHOLD = 50_000


@contextmanager
def _job_collection() -> Iterator[None]:
    """While the job runs: what was alive at its start (modules, settings) frozen out of the cyclic
    collector's reach, and young collections every ``JOB_GC_THRESHOLD`` allocations.

    A staging pull makes tens of millions of short-lived, acyclic objects (each record a dict, each
    row a list, reference counting frees them); with Python's defaults, every older-generation
    collection walked the whole heap of imported modules again, 30-40% of the file source's CPU
    (bench/README.md, staging: py-spy showed ``gc_collect_main`` at 14% of the samples; the extraction
    alone took 9.6 s of CPU with the defaults, 7.5 s frozen with this threshold). Garbage cycles are
    still collected, only less often. Restored afterwards (tests run many jobs in one process)."""
    before = gc.get_threshold()
    gc.collect()  # garbage left before the job is not frozen with the live objects
    gc.freeze()
    gc.set_threshold(JOB_GC_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def job_applications(zone: str) -> list[str]:
    """The application names of one job's connections: its own (``etl-<zone>:<pid>``) and dbt's
    (``etl-<zone>-dbt``); the lock watch finds the job's sessions by them. dbt's name has no pid: it is
    in dbt's profile, and a profile that changes from run to run costs a full parse of the project
    every run. One job of a zone and domain runs at a time (the zone lease); a job of the same zone
    for other domains running at the same moment would have its dbt's lock waits logged by both."""
    return [f"etl-{zone}:{os.getpid()}", f"etl-{zone}-dbt"]


def job_database(url: str, zone: str, settings: Settings) -> Database:
    """The job's database: every connection with the lock and statement timeouts of the settings
    (ETL_LOCK_TIMEOUT_S, ETL_STATEMENT_TIMEOUT_S) and the job's application name."""
    return Database(
        url,
        application_name=job_applications(zone)[0],
        attempts=settings.transaction_attempts,
        lock_timeout_s=settings.lock_timeout_s,
        statement_timeout_s=settings.statement_timeout_s,
    )


def run_job(
    zone: str,
    job_name: str,
    settings: Settings,
    work: Callable[[JobContext], None],
    *,
    leases: Sequence[str] = (),
) -> int:
    """Run ``work`` as the job ``job_name`` of ``zone`` and return the exit code.

    ``leases`` (ops.locks names, see _liveness.zone_lease_names) are taken before the job writes
    anything, its row included: a job that cannot get them within ETL_LEASE_WAIT_S exits 5 having
    written nothing. SIGTERM and SIGINT stop the job with exit 143, its row marked cancelled."""
    with stop_on_signals(), _job_collection():
        return _run_job(zone, job_name, settings, work, leases)


def _run_job(
    zone: str, job_name: str, settings: Settings, work: Callable[[JobContext], None], leases: Sequence[str]
) -> int:
    _no_final_collection()
    configure_logging(settings.log_level)
    bind_context(run_id=settings.run_id, zone=zone)
    metrics = JobMetrics(zone, job_name, duration_sla_s=settings.duration_sla_s)
    metrics.start(settings.pushgateway_url)
    audit: JobAudit | None = None
    db: Database | None = None
    watch: LockWatch | None = None
    held: ZoneLeases | None = None
    heartbeat: Heartbeat | None = None
    lineage = OpenLineageEmitter.from_settings(settings, zone=zone, job_name=job_name)
    exit_code = 1
    not_started = False
    try:
        url = resolve_database_url(settings)
        db = job_database(url, zone, settings)
        watch = LockWatch(db, applications=job_applications(zone), after_s=settings.lock_wait_log_s)
        watch.start()
        _log.info("job %s starting on %s", job_name, redact_url(url))
        apply_migrations(db)
        pending = JobAudit(db, run_id=settings.run_id, zone=zone, job_name=job_name)
        if leases:
            held = ZoneLeases(
                db,
                leases,
                holder=job_holder(pending.job_id, settings.run_id),
                lease_s=settings.lease_s,
                wait_s=settings.lease_wait_s,
            )
            held.acquire()
        mark_abandoned_jobs(db, zone=zone, exclude=pending.job_id)
        pending.start(lease_s=settings.lease_s)
        audit = pending
        heartbeat = Heartbeat(db, audit.job_id, held, lease_s=settings.lease_s)
        heartbeat.start()
        lineage.start(audit.job_id)
        context = JobContext(settings=settings, db=db, audit=audit, metrics=metrics)
        work(context)
        finishing()  # a SIGTERM from here on would make exit 143 of a job its row says succeeded
        audit.finish(status="succeeded", exit_code=EXIT_OK, counts=context.counts)
        exit_code = EXIT_OK
        _log.info("job %s succeeded", job_name, extra={"counts": context.counts})
        lineage.finish(db, failed=False)
    except BaseException as raised:
        finishing()
        exc = stop_cause(raised)
        exit_code = exit_code_for(exc)
        message = redact(f"{type(exc).__name__}: {exc}")
        not_started = isinstance(exc, ZoneBusy) and audit is None
        if not_started:
            _log.error("job %s did not start (exit %d): %s", job_name, exit_code, message)
        elif isinstance(exc, JobTerminated):
            _log.error("job %s cancelled (exit %d): %s", job_name, exit_code, message)
        elif isinstance(exc, EtlError):
            where = {name: value for name in ("source", "entity") if (value := getattr(exc, name))}
            _log.error("job %s failed (exit %d): %s", job_name, exit_code, message, extra=where)
        elif isinstance(exc, KeyboardInterrupt):
            _log.error("job %s failed (exit %d): %s", job_name, exit_code, message)
        else:
            _log.exception("job %s failed unexpectedly (exit %d)", job_name, exit_code)
        if heartbeat is not None:
            heartbeat.stop()
        if audit is not None:
            status = "cancelled" if isinstance(exc, JobTerminated) else "failed"
            try:
                audit.finish(status=status, exit_code=exit_code, error=message[:4000])
            except Exception as audit_exc:
                _log.error("could not record the failure in ops.job_runs: %s", redact(str(audit_exc)))
            lineage.finish(db, failed=True, error=message, exit_code=exit_code)
    finally:
        if watch is not None:
            watch.stop()
        if heartbeat is not None:
            heartbeat.stop()
        if held is not None:
            held.release()
        if not_started:
            # the zone's other job, which holds the lease, owns the zone's metrics: a push of this
            # exit 5 would show the zone failed while it runs
            _log.info("metrics not pushed: this job did not start")
        else:
            metrics.finish(exit_code)
            metrics.push(settings.pushgateway_url)
    return exit_code
