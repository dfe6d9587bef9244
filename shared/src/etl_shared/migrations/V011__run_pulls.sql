-- Consumption by identity (docs/cockroachdb.md, "Consumption by identity"):
--   conformed.run_pulls  the committed staging pulls a conformed job saw when it started, one row per job
--                        and pull, written before dbt runs. The job's models read only these pulls, and
--                        its history post-hooks mark only these consumed: a pull that commits while the
--                        job runs waits for the next job, whatever its committed_at says (now() is a
--                        transaction's start time, not its commit order). Keyed by the job (ops.job_runs),
--                        not the run id, which a rerun and the per-domain jobs of one run share. A job
--                        deletes its rows when its build ends; retention removes those of a killed job.

create table if not exists conformed.run_pulls (
    job_id uuid not null,
    pull_id uuid not null,
    run_id text not null,
    taken_at timestamptz not null,
    primary key (job_id, pull_id)
);

create index if not exists run_pulls_taken_idx on conformed.run_pulls (taken_at);
