-- The key of the keyed hash that masks personal data in the semantic zone. The semantic job writes it
-- from the secret ETL_PII_KEY (or generates one on first use when none is configured); the semantic
-- models read it here, so that it never appears in compiled SQL. Readable by the jobs' roles only.

create table if not exists ops.pii_keys (
    key_name text primary key,
    key_value text not null,
    updated_at timestamptz not null
);
