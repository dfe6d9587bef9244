-- Product dimension (current state; deleted products kept, flagged), plus the unknown member.
{{ config(materialized='table', unique_key='product_key') }}

with products as (
    select * from {{ source('conformed', 'product') }}
),

known as (
    select
        {{ etl_platform.surrogate_key(['product_id']) }} as product_key,
        product_id,
        sku as product_sku,
        product_name,
        coalesce(category, 'Unknown') as product_category,
        unit_price as product_unit_price,
        currency_code as product_currency_code,
        is_active as product_is_active,
        is_deleted as product_is_deleted
    from products
),

unknown as (
    {{ etl_platform.unknown_member('product_key', {
        'product_id': '-1::bigint',
        'product_sku': 'null::text',
        'product_name': "'Unknown product'",
        'product_category': "'Unknown'",
        'product_unit_price': 'null::numeric(12, 2)',
        'product_currency_code': 'null::text',
        'product_is_active': 'false',
        'product_is_deleted': 'false',
    }) | indent(4) }}
)

select * from known
union all
select * from unknown
