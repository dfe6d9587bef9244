-- One row per record of the newest committed pull of oltp.orders, typed; no joins, no rules.

with
{{ latest_pull_records('oltp', 'orders') }},

renamed as (
    select
        {{ field('order_id') }}::bigint as order_id,
        {{ field('customer_id') }}::bigint as customer_id,
        {{ field('order_date') }}::date as order_date,
        {{ field('ordered_at') }}::timestamptz as ordered_at,
        {{ field('status') }} as status,
        {{ field('currency') }} as currency,
        {{ field('updated_at') }}::timestamptz as updated_at,
        {{ lineage_columns() }}
    from pull_records
)

select * from renamed
