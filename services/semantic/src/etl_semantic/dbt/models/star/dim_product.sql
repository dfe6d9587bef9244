-- Product dimension for Qlik; product_key is the only field shared with facts.

with products as (
    select * from {{ source('conformed', 'product') }}
    where not is_deleted  -- conformed keeps deleted rows, flagged
),

known as (
    select
        {{ surrogate_key(['product_id']) }} as product_key,
        product_id,
        sku as product_sku,
        product_name,
        category as product_category,
        unit_price as product_list_price,
        currency_code as product_currency_code,
        is_active as product_is_active
    from products
),

unknown as (
    select
        {{ unknown_key() }} as product_key,
        -1::bigint as product_id,
        null::text as product_sku,
        'Unknown product' as product_name,
        'Unknown' as product_category,
        null::numeric(12, 2) as product_list_price,
        null::text as product_currency_code,
        false as product_is_active
)

select * from known
union all
select * from unknown
