-- ECB reference rates, one row per date and currency (units of the currency per euro). The newest
-- pull comes either from the FX API (long: date, currency, rate) or, when the API failed, from the
-- ECB CSV fallback (wide: Date, USD, JPY, ...); both shapes are read. Empty and "N/A" quotes are dropped.

with
{{ latest_pull_records('fx', 'ecb_rates') }},

wide_quotes as (
    select
        {{ field('Date') }}::date as rate_date,
        upper(trim(quotes.currency_code)) as currency_code,
        nullif(nullif(trim(pull_records.record ->> (quotes.position - 1)::integer), ''), 'N/A') as rate_text,
        {{ lineage_columns() }}
    from pull_records
    cross join lateral unnest(pull_records.column_names) with ordinality as quotes (currency_code, position)
    where
        array_position(pull_records.column_names, 'Date') is not null
        and quotes.currency_code <> 'Date'
        and trim(quotes.currency_code) <> ''
),

long_quotes as (
    select
        {{ field('date') }}::date as rate_date,
        upper({{ field('currency') }}) as currency_code,
        nullif({{ field('rate') }}, 'N/A') as rate_text,
        {{ lineage_columns() }}
    from pull_records
    where array_position(pull_records.column_names, 'rate') is not null
),

quotes as (
    select * from wide_quotes
    union all
    select * from long_quotes
)

select
    rate_date,
    currency_code,
    rate_text::numeric(18, 6) as units_per_eur,
    pull_id,
    run_id
from quotes
where rate_text is not null
