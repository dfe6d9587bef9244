-- The batches of an incremental export (the semantic zone's Watershed upload, docs/data-model.md
-- "Watershed upload"): one row per export and run that wrote statement files, in the order they must be
-- uploaded (sequence_no, assigned by the export under the zone's lease: the next after the export's
-- highest), with the files of the batch (name, kind, rows, bytes, sha256). The export writes the rows
-- changed by the runs not listed here, and its manifest lists every batch so far; a rerun of a run
-- listed here writes the same batch again (the key makes recording it again harmless).

create table if not exists ops.export_batches (
    export_name text not null,
    run_id text not null,
    sequence_no bigint not null,
    zone text not null,
    job_id uuid not null,
    statements bigint not null,
    voided bigint not null,
    files jsonb not null,
    exported_at timestamptz not null,
    primary key (export_name, run_id)
);

create unique index if not exists export_batches_sequence_idx on ops.export_batches (export_name, sequence_no);
