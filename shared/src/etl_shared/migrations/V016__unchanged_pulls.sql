-- Unchanged pulls (docs/data-model.md, "Unchanged pulls"): a full pull, or a key listing (mode 'keys'),
-- whose checksum and record count equal those of the newest committed pull of the same source entity
-- and mode ends as 'unchanged' instead of 'committed'. Its row records the check (committed_at: when
-- the source was found unchanged; metadata.same_as: the committed pull it equals); its batches and
-- payloads are removed, and nothing downstream reads it (readers only read 'committed' pulls).
-- The check constraint is replaced under a name of its own: PostgreSQL named the inline one
-- pulls_status_check, CockroachDB check_status.

alter table staging.pulls drop constraint if exists pulls_status_check;

alter table staging.pulls drop constraint if exists check_status;

alter table staging.pulls drop constraint if exists pulls_status_known;

alter table staging.pulls add constraint pulls_status_known check (
    status in ('running', 'committed', 'unchanged', 'failed')
);
