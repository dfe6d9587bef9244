-- ECB reference rates (fx.ecb_rates, full pulls) of this run's pull: one row per date and currency
-- (units of the currency per euro). The pull comes either from the FX API (long: date, currency,
-- rate) or, when the API failed, from the ECB CSV fallback (wide: Date, USD, JPY, ...); both are
-- read. Empty and "N/A" quotes (a currency not quoted that day) are not records.
{{ etl_platform.validated_config('fx_rate') }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }} (the post-hooks write the results the
-- threshold test reads: with both as parents, a failing test stops the entity's history)

with
{{ etl_platform.pull_records('fx', 'ecb_rates', 'fx_rate_history', snapshot=true) }},

{{ etl_platform.lookup_ctes() }},

wide_quotes as (
    select
        {{ etl_platform.field('Date') }} as rate_date_raw,
        upper(trim(quotes.currency_name)) as currency_raw,
        nullif(nullif(trim(pull_records.record ->> (quotes.position - 1)::integer), ''), 'N/A') as rate_raw,
        pull_records.pull_id,
        pull_records.pull_committed_at,
        pull_records.batch_no,
        pull_records.row_no * 1000 + quotes.position as row_no,
        pull_records.column_names,
        pull_records.record
    from pull_records
    cross join lateral unnest(pull_records.column_names) with ordinality as quotes (currency_name, position)
    where
        array_position(pull_records.column_names, 'Date') is not null
        and quotes.currency_name <> 'Date'
        and trim(quotes.currency_name) <> ''
),

long_quotes as (
    select
        {{ etl_platform.field('date') }} as rate_date_raw,
        upper({{ etl_platform.field('currency') }}) as currency_raw,
        nullif({{ etl_platform.field('rate') }}, 'N/A') as rate_raw,
        pull_records.pull_id,
        pull_records.pull_committed_at,
        pull_records.batch_no,
        pull_records.row_no,
        pull_records.column_names,
        pull_records.record
    from pull_records
    where array_position(pull_records.column_names, 'rate') is not null
),

quotes as (
    select * from wide_quotes
    union all
    select * from long_quotes
),

-- MATERIALIZED: each typed value is computed once per record; inlined, every rule and output column
-- repeating it would parse the record again (2.7x slower, bench/README.md).
typed as materialized (
    select
        {{ etl_platform.try_cast('rate_date_raw', 'date') }} as rate_date,
        currency_lookup.currency_code,
        {{ etl_platform.try_cast('rate_raw', 'numeric(18, 6)') }} as units_per_eur,
        false as is_deleted,
        quotes.*
    from quotes
    left join currency_lookup on quotes.currency_raw = currency_lookup.lookup_key
    where quotes.rate_raw is not null
),

checked as (
    select
        typed.*,
        {{ etl_platform.dq_failures([
            ('fx_rate.rate_date_valid', 'rate_date is not null'),
            ('fx_rate.currency_iso4217', 'currency_code is not null'),
            ('fx_rate.rate_positive', 'units_per_eur > 0'),
        ]) }} as dq_failed
    from typed
)

select
    rate_date,
    currency_code,
    units_per_eur,
    is_deleted,
    {{ etl_platform.dq_columns('checked') }}
from checked
