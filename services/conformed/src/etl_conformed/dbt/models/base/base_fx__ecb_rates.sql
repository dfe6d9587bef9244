-- The ECB history arrives wide (Date, USD, JPY, ...: units of a currency per euro); one row per
-- date and currency here. Empty cells and "N/A" (currencies not quoted on a date) are dropped.

with
{{ latest_pull_records('fx', 'ecb_rates') }},

unpivoted as (
    select
        {{ field('Date') }}::date as rate_date,
        upper(trim(quotes.currency_code)) as currency_code,
        nullif(nullif(trim(pull_records.record ->> (quotes.position - 1)::integer), ''), 'N/A') as rate_text,
        {{ lineage_columns() }}
    from pull_records
    cross join lateral unnest(pull_records.column_names) with ordinality as quotes (currency_code, position)
    where quotes.currency_code <> 'Date' and trim(quotes.currency_code) <> ''
)

select
    rate_date,
    currency_code,
    rate_text::numeric(18, 6) as units_per_eur,
    pull_id,
    run_id
from unpivoted
where rate_text is not null
