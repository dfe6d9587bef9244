-- Key listings: a pull of mode 'keys' holds the key set of an incremental source entity (reconcile_keys
-- in the sources file), from which the conformed history records the deletes an incremental pull
-- cannot show. The check on staging.pulls.mode admits it. The constraint created with the table has
-- the name PostgreSQL gives it (pulls_mode_check) or CockroachDB's (check_mode); both are dropped if
-- present, then the new one is added under a name of our own (dropped first, so that a rerun of this
-- file after an interruption does no harm).

alter table staging.pulls drop constraint if exists pulls_mode_check;
alter table staging.pulls drop constraint if exists check_mode;
alter table staging.pulls drop constraint if exists pulls_mode_known;
alter table staging.pulls add constraint pulls_mode_known check (mode in ('full', 'incremental', 'keys'));
