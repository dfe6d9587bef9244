"""Which jobs are alive: one run of a dbt zone per domain at a time, and dead jobs seen as such.

- **Zone leases.** A conformed or semantic job holds the lease ``zone:<zone>:<domain package>`` of
  every domain it builds (rows of ``ops.locks``, taken in name order) before it writes anything, even
  its job row. A second job waits up to ``ETL_LEASE_WAIT_S``, logging who holds the lease and since
  when, then gives up with :class:`ZoneBusy` (exit 5) having written nothing. A lease whose holder
  is gone (a process no longer alive on this host, or a lease not renewed for ``ETL_LEASE_S``) is
  taken over at once.
- **Heartbeat.** Every job (staging too) renews its job row's ``lease_expires_at`` and its zone
  leases every quarter of ``ETL_LEASE_S`` from a thread of its own; a lease found taken over stops the
  job (exit 5), since another job now runs the zone.
- **Abandoned jobs.** :func:`mark_abandoned_jobs` marks ``abandoned`` the ``running`` rows whose lease
  expired or whose process is gone from this host: the next job of the zone and ``etl status`` call it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from ._db import Database
from ._errors import DatabaseError, EtlError
from ._locks import LeaseBusy, LeaseLock, LeaseLost, process_token
from ._signals import request_stop

_log = logging.getLogger(__name__)


class ZoneBusy(DatabaseError):
    """Another job of the zone holds a lease this job needs: it wrote nothing; rerun later (exit 5)."""


def zone_lease_names(zone: str, domains: Sequence[str]) -> list[str]:
    """The leases a job of ``zone`` building ``domains`` (its domain packages) holds, in taking order."""
    return sorted(f"zone:{zone}:{domain}" for domain in domains) or [f"zone:{zone}"]


def job_holder(job_id: Any, run_id: str) -> str:
    """The holder id of a job's leases: host and pid first (LeaseLock recognises a dead local
    holder by them), then what an operator needs to find the job."""
    return f"{socket.gethostname()}:{os.getpid()}:{process_token()} job {job_id} run {run_id}"


class ZoneLeases:
    """The zone leases of one job: :meth:`acquire` them all or none, :meth:`renew`, :meth:`release`."""

    def __init__(
        self, db: Database, names: Sequence[str], *, holder: str, lease_s: int, wait_s: float
    ) -> None:
        self.locks = [LeaseLock(db, name, lease_s=lease_s, wait_s=wait_s, holder=holder) for name in names]
        self._held: list[LeaseLock] = []

    def acquire(self) -> None:
        try:
            for lock in self.locks:
                lock.acquire()
                self._held.append(lock)
                if lock.took_over:
                    _log.warning(
                        "lease %s taken over from %s: its process is gone or its lease expired",
                        lock.name,
                        lock.took_over,
                        extra={"lock": lock.name, "previous_holder": lock.took_over},
                    )
        except LeaseBusy as exc:
            self.release()
            raise ZoneBusy(
                f"another job holds the lease {lock.name}: {exc.holder}, since {exc.since}; gave up after"
                f" {lock.wait_s:.0f}s (ETL_LEASE_WAIT_S). This job wrote nothing: rerun it once that job has"
                " ended (docs/runbook.md, 'A second run waits for the first')"
            ) from None
        except BaseException:
            self.release()
            raise

    def renew(self) -> None:
        for lock in self._held:
            lock.renew()

    def release(self) -> None:
        held, self._held = self._held, []
        for lock in reversed(held):
            try:
                lock.release()
            except Exception as exc:
                _log.warning("could not release the lease %s (it expires on its own): %s", lock.name, exc)


class Heartbeat:
    """A thread renewing the job row's ``lease_expires_at`` and the job's zone leases every quarter of
    ``lease_s``. A failed renewal is retried at the next beat; a zone lease found taken over stops the
    job with exit 5 (:func:`request_stop`)."""

    def __init__(self, db: Database, job_id: Any, leases: ZoneLeases | None, *, lease_s: int) -> None:
        self.db = db
        self.job_id = job_id
        self.leases = leases
        self.lease_s = lease_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="etl-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                self.beat()
            except LeaseLost as exc:
                request_stop(DatabaseError(f"{exc}: another job now runs the zone; this one stops"))
                return
            except (EtlError, psycopg.Error, OSError) as exc:
                _log.warning("could not renew the job's lease (retried at the next beat): %s", exc)

    def beat(self) -> None:
        self.db.transaction(
            lambda conn: conn.execute(
                "update ops.job_runs set lease_expires_at = now() + %s * interval '1 second'"
                " where job_id = %s and status = 'running'",
                (self.lease_s, self.job_id),
            ),
            name="renew the job's lease",
        )
        if self.leases is not None:
            self.leases.renew()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


@dataclass(frozen=True)
class AbandonedJob:
    job_id: Any
    run_id: str
    zone: str
    host: str | None
    pid: int | None
    reason: str


def _process_gone(host: str | None, pid: int | None) -> bool:
    """The job's process is not alive on this host (only a process on this host can be checked)."""
    if host != socket.gethostname() or pid is None:
        return False
    if pid == os.getpid():
        return True  # a row of an earlier process with this pid (the caller excludes its own row)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _find_and_mark(conn: psycopg.Connection[Any], zone: str | None, exclude: Any) -> list[AbandonedJob]:
    query = (
        "select job_id, run_id, zone, host, pid, lease_expires_at < now(), lease_expires_at"
        " from ops.job_runs where status = 'running'"
    )
    params: list[Any] = []
    if zone is not None:
        query += " and zone = %s"
        params.append(zone)
    found: list[AbandonedJob] = []
    for job_id, run_id, job_zone, host, pid, expired, expires_at in conn.execute(
        query + " for update", params
    ):
        if job_id == exclude:
            continue
        if _process_gone(host, pid):
            reason = f"its process (pid {pid} on {host}) is gone"
        elif expired:
            reason = f"its lease expired at {expires_at} (not renewed: the process or its host died)"
        else:
            continue
        found.append(AbandonedJob(job_id, run_id, job_zone, host, pid, reason))
    for job in found:
        conn.execute(
            "update ops.job_runs set status = 'abandoned', ended_at = now(), error = %s"
            " where job_id = %s and status = 'running'",
            (f"abandoned: {job.reason}; seen by {socket.gethostname()}:{os.getpid()}", job.job_id),
        )
    return found


def mark_abandoned_jobs(db: Database, *, zone: str | None = None, exclude: Any = None) -> list[AbandonedJob]:
    """Mark ``abandoned`` the ``running`` job rows (of ``zone``, or all) whose process is gone from this
    host or whose lease expired; ``exclude`` is the caller's own job. Returns them (each logged). Best
    effort: a role that may not update the rows, or a database that fails, leaves them to the next
    look (a warning)."""
    try:
        found: list[AbandonedJob] = db.transaction(
            lambda conn: _find_and_mark(conn, zone, exclude), name="mark abandoned jobs"
        )
    except (EtlError, psycopg.Error) as exc:
        _log.warning("could not mark dead jobs abandoned (left for the next look): %s", exc)
        return []
    for job in found:
        _log.warning(
            "the %s job %s of run %s is marked abandoned: %s",
            job.zone,
            job.job_id,
            job.run_id,
            job.reason,
            extra={"job_id": str(job.job_id), "abandoned_run_id": job.run_id, "abandoned_zone": job.zone},
        )
    return found
