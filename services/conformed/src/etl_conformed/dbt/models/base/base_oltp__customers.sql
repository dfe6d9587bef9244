-- One row per record of the newest committed pull of oltp.customers, typed; no joins, no rules.

with
{{ latest_pull_records('oltp', 'customers') }},

renamed as (
    select
        {{ field('customer_id') }}::bigint as customer_id,
        {{ field('email') }} as email,
        {{ field('first_name') }} as first_name,
        {{ field('last_name') }} as last_name,
        {{ field('phone') }} as phone,
        {{ field('country') }} as country,
        {{ field('created_at') }}::timestamptz as created_at,
        {{ field('updated_at') }}::timestamptz as updated_at,
        {{ lineage_columns() }}
    from pull_records
)

select * from renamed
