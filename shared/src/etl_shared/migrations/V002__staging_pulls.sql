-- Staging raw storage: a pull is one extraction of one source entity. Its rows live in
-- pull_batches as JSON list-of-arrays ({"columns": [...], "rows": [[...], ...]}), the bytes as
-- fetched in pull_payloads. Readers only ever look at pulls whose status is 'committed'.

create table if not exists staging.pulls (
    pull_id uuid primary key,
    run_id text not null,
    job_id uuid,
    source text not null,
    entity text not null,
    status text not null check (status in ('running', 'committed', 'failed')),
    mode text not null default 'full' check (mode in ('full', 'incremental')),
    started_at timestamptz not null,
    heartbeat_at timestamptz not null,
    committed_at timestamptz,
    record_count bigint not null default 0,
    byte_count bigint not null default 0,
    batch_count integer not null default 0,
    payload_count integer not null default 0,
    checksum text,
    watermark_before text,
    watermark_after text,
    error text,
    metadata jsonb not null default '{}'::jsonb
);

create index if not exists pulls_source_entity_idx on staging.pulls (source, entity, status, committed_at desc);

create table if not exists staging.pull_batches (
    pull_id uuid not null,
    batch_no integer not null,
    record_count integer not null,
    data jsonb not null,
    primary key (pull_id, batch_no)
);

create table if not exists staging.pull_payloads (
    pull_id uuid not null,
    seq integer not null,
    name text not null,
    content_type text not null,
    byte_count bigint not null,
    checksum text not null,
    body bytea not null,
    primary key (pull_id, seq)
);

create table if not exists staging.watermarks (
    source text not null,
    entity text not null,
    value text,
    pull_id uuid,
    updated_at timestamptz not null,
    primary key (source, entity)
);
