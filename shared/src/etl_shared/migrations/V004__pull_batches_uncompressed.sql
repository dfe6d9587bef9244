-- dialect: postgres
-- PostgreSQL compresses large values (pglz) before it stores them; for the staging batches and the
-- payloads as fetched that costs more server time than the load itself, for data kept only for the
-- last 3 pulls. Store them uncompressed (out of line). CockroachDB compresses at the storage layer
-- instead and has no such setting, so this migration only runs on PostgreSQL.

alter table staging.pull_batches alter column data set storage external;
alter table staging.pull_payloads alter column body set storage external;
