-- The conformed zone's bookkeeping, written by post-hooks of its dbt models:
--   conformed.quarantine      records that failed a record-level data-quality rule;
--   conformed.consumed_pulls  which staging pulls each history model has processed (or skipped);
--   ops.dq_results.checked / threshold   per-rule counts of the record-level rules.

create table if not exists conformed.quarantine (
    run_id text not null,
    rule_id text not null,
    severity text not null check (severity in ('error', 'warn')),
    entity text not null,
    pull_id uuid not null,
    batch_no integer not null,
    row_no bigint not null,
    record jsonb not null,
    reason text not null,
    job_id uuid,
    quarantined_at timestamptz not null,
    primary key (run_id, rule_id, pull_id, batch_no, row_no)
);

create index if not exists quarantine_entity_idx on conformed.quarantine (entity, quarantined_at);
create index if not exists quarantine_time_idx on conformed.quarantine (quarantined_at);

create table if not exists conformed.consumed_pulls (
    consumer text not null,
    pull_id uuid not null,
    source text not null,
    entity text not null,
    disposition text not null check (disposition in ('processed', 'superseded', 'skipped')),
    run_id text not null,
    note text,
    consumed_at timestamptz not null,
    primary key (consumer, pull_id)
);

alter table ops.dq_results add column if not exists checked bigint;
alter table ops.dq_results add column if not exists threshold double precision;
