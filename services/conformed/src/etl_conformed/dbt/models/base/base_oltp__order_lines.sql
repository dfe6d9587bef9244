-- One row per record of the newest committed pull of oltp.order_lines, typed; no joins, no rules.

with
{{ latest_pull_records('oltp', 'order_lines') }},

renamed as (
    select
        {{ field('order_id') }}::bigint as order_id,
        {{ field('line_number') }}::integer as line_number,
        {{ field('product_id') }}::bigint as product_id,
        {{ field('quantity') }}::integer as quantity,
        {{ field('unit_price') }}::numeric(12, 2) as unit_price,
        {{ field('discount_pct') }}::numeric(5, 2) as discount_pct,
        {{ field('updated_at') }}::timestamptz as updated_at,
        {{ lineage_columns() }}
    from pull_records
)

select * from renamed
