-- Lineage and operator actions.
--   ops.lineage_edges     which datasets each job read to write which: a dbt model and each of its parents
--                         (sources, seeds, models; ephemeral models resolved to their own parents), a staging
--                         source entity and staging.pull_batches. Written by the jobs; read by `etl lineage`
--                         and for the OpenLineage events. Datasets are named as in OpenLineage: namespace
--                         (e.g. postgres://host:26257/etl) and name (schema.table, or a path or an API path).
--   ops.operator_actions  what an operator did outside the normal flow (etl-staging reset, backfill
--                         pulls): who, from which host, when, and what was affected.
--   staging.pulls.backfill_from / backfill_to   the cursor range a backfill pull re-extracted (from
--                         inclusive, to exclusive); null for a regular pull. A backfill pull never
--                         moves the stored watermark.

create table if not exists ops.lineage_edges (
    job_id uuid not null,
    run_id text not null,
    zone text not null,
    input_namespace text not null,
    input_name text not null,
    output_namespace text not null,
    output_name text not null,
    recorded_at timestamptz not null,
    primary key (job_id, input_namespace, input_name, output_namespace, output_name)
);

create index if not exists lineage_edges_run_idx on ops.lineage_edges (run_id);

create table if not exists ops.operator_actions (
    action_id uuid primary key,
    action text not null,
    source text,
    entity text,
    actor text not null,
    host text,
    run_id text,
    performed_at timestamptz not null,
    details jsonb not null default '{}'::jsonb
);

create index if not exists operator_actions_entity_idx on ops.operator_actions (source, entity, performed_at);

alter table staging.pulls add column if not exists backfill_from timestamptz;
alter table staging.pulls add column if not exists backfill_to timestamptz;
