-- Files a zone job exported (e.g. the semantic zone's Watershed upload): one row per file and job,
-- with its size and SHA-256, so an operator can tell which run produced the file that was uploaded.
-- Written by JobAudit.record_exports; the key makes recording the same file again harmless.

create table if not exists ops.exports (
    job_id uuid not null,
    run_id text not null,
    zone text not null,
    kind text not null,
    path text not null,
    row_count bigint not null,
    byte_count bigint not null,
    sha256 text not null,
    exported_at timestamptz not null,
    primary key (job_id, kind, path)
);

create index if not exists exports_run_idx on ops.exports (run_id);
