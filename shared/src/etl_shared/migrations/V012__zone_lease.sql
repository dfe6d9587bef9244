-- Liveness of the zone jobs (docs/runbook.md, "A second run waits for the first" and "A job was killed"):
--   lease_expires_at  renewed by the running job every quarter of ETL_LEASE_S; a 'running' row whose
--                     lease expired, or whose process is gone on this host, is a dead job: the next job
--                     of its zone or `etl status` marks it 'abandoned'
--   status            adds 'cancelled' (stopped by SIGTERM or SIGINT, exit 143) and 'abandoned' (its
--                     process died without closing the row: SIGKILL, out of memory, a lost node)
-- The check constraint is replaced under a name of its own: PostgreSQL named the inline one
-- job_runs_status_check, CockroachDB check_status.

alter table ops.job_runs add column if not exists lease_expires_at timestamptz;

alter table ops.job_runs drop constraint if exists job_runs_status_check;

alter table ops.job_runs drop constraint if exists check_status;

alter table ops.job_runs drop constraint if exists job_runs_status_known;

alter table ops.job_runs add constraint job_runs_status_known check (
    status in ('running', 'succeeded', 'failed', 'cancelled', 'abandoned')
);
