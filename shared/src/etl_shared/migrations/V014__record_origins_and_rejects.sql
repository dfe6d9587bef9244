-- Staging keeps where every record came from, and the records it could not read.
--   staging.pull_batches.origin  the file a batch's records were read from: the path, or
--                                `archive.zip!member` for a member of a zip archive; null for sources that
--                                are not files (REST, databases) and for batches written before this
--                                migration. A batch never holds records of two files.
--   staging.rejected_records     the lines or records of a pull that an entity with
--                                `on_bad_record: quarantine` set aside (docs/configuration.md): the file,
--                                the line (or record) number, why, and the text as read (NUL written as
--                                the six characters \u0000, bytes that are not UTF-8 as \xNN; at most
--                                16 KiB, `truncated` says when cut). Kept and deleted with the pull.

alter table staging.pull_batches add column if not exists origin text;

create table if not exists staging.rejected_records (
    pull_id uuid not null,
    seq integer not null,
    origin text not null,
    unit text not null check (unit in ('line', 'record', 'row')),
    position bigint not null,
    reason text not null,
    content text,
    truncated boolean not null default false,
    primary key (pull_id, seq)
);
