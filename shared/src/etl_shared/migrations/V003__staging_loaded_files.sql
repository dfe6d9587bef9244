-- Files loaded by committed pulls, by checksum: a drop folder's file already loaded is skipped.
-- Rows are written in the transaction that commits the pull, so a failed pull marks nothing loaded.

create table if not exists staging.loaded_files (
    source text not null,
    entity text not null,
    checksum text not null,
    path text not null,
    byte_count bigint not null,
    pull_id uuid not null,
    loaded_at timestamptz not null,
    primary key (source, entity, checksum)
);
