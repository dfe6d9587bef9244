-- Product dimension (current state; deleted products kept, flagged), plus the unknown member.
{{ config(materialized='table') }}

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
    select
        {{ etl_platform.unknown_key() }} as product_key,
        -1::bigint as product_id,
        null::text as product_sku,
        'Unknown product' as product_name,
        'Unknown' as product_category,
        null::numeric(12, 2) as product_unit_price,
        null::text as product_currency_code,
        false as product_is_active,
        false as product_is_deleted
)

select * from known
union all
select * from unknown
