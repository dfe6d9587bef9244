-- One row per record of the newest committed pull of crm.accounts, typed; no joins, no rules.

with
{{ latest_pull_records('crm', 'accounts') }},

renamed as (
    select
        {{ field('account_id') }} as account_id,
        {{ field('name') }} as name,
        {{ field('industry') }} as industry,
        {{ field('country') }} as country,
        {{ field('website') }} as website,
        {{ field('customer_email') }} as customer_email,
        {{ field('created_at') }}::timestamptz as created_at,
        {{ field('updated_at') }}::timestamptz as updated_at,
        {{ lineage_columns() }}
    from pull_records
)

select * from renamed
