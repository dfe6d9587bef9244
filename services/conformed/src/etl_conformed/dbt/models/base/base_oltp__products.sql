-- One row per record of the newest committed pull of oltp.products, typed; no joins, no rules.

with
{{ latest_pull_records('oltp', 'products') }},

renamed as (
    select
        {{ field('product_id') }}::bigint as product_id,
        {{ field('sku') }} as sku,
        {{ field('name') }} as name,
        {{ field('category') }} as category,
        {{ field('unit_price') }}::numeric(12, 2) as unit_price,
        {{ field('currency') }} as currency,
        {{ field('is_active') }}::boolean as is_active,
        {{ field('updated_at') }}::timestamptz as updated_at,
        {{ lineage_columns() }}
    from pull_records
)

select * from renamed
