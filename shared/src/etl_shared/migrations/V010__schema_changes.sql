-- Schema contracts (docs/configuration.md, "Schema contracts"): what staging noticed about the columns
-- of each pull, one row per pull, kind and column. Written in the transaction that commits the pull
-- (action 'warned'), or, when a strict entity's pull breaks its contract, in a transaction of its own
-- before the pull is failed (action 'failed' for the change that stopped it). The key makes writing the
-- same findings again harmless (a commit whose result was unknown, retried).
--   kind            new_column (not in the previous committed pull of the entity, same mode; for a first
--                   pull: not declared), missing_column (a declared column absent, or a column of the
--                   previous pull gone), type_mismatch (a value of a declared column that does not cast)
--   failing_values  type_mismatch: how many values of the pull did not cast (a strict pull stops at 1)
--   detail          e.g. the first failing value and where it is (record, batch and row; file and line)

create table if not exists ops.schema_changes (
    pull_id uuid not null,
    kind text not null check (kind in ('new_column', 'missing_column', 'type_mismatch')),
    column_name text not null,
    job_id uuid,
    run_id text not null,
    source text not null,
    entity text not null,
    mode text not null,
    contract text not null check (contract in ('strict', 'loose')),
    action text not null check (action in ('warned', 'failed')),
    declared_type text,
    failing_values bigint,
    detail text,
    detected_at timestamptz not null,
    primary key (pull_id, kind, column_name)
);

create index if not exists schema_changes_entity_idx on ops.schema_changes (source, entity, detected_at);
