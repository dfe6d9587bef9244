-- One row per record of the newest committed pull of crm.opportunities, typed; no joins, no rules.

with
{{ latest_pull_records('crm', 'opportunities') }},

renamed as (
    select
        {{ field('opportunity_id') }} as opportunity_id,
        {{ field('account_id') }} as account_id,
        {{ field('name') }} as name,
        {{ field('stage') }} as stage,
        {{ field('amount') }}::numeric(14, 2) as amount,
        {{ field('currency') }} as currency,
        {{ field('close_date') }}::date as close_date,
        {{ field('updated_at') }}::timestamptz as updated_at,
        {{ lineage_columns() }}
    from pull_records
)

select * from renamed
