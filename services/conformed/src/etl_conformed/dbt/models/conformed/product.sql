-- Product from the OLTP system, one row per product_id (the latest update wins).

with products as (
    select * from {{ ref('base_oltp__products') }}
),

ranked as (
    select
        products.*,
        row_number() over (partition by product_id order by updated_at desc nulls last) as recency
    from products
)

select
    product_id,
    trim(sku) as sku,
    trim(name) as product_name,
    trim(category) as category,
    unit_price,
    upper(trim(currency)) as currency_code,
    coalesce(is_active, true) as is_active,
    updated_at,
    pull_id,
    run_id
from ranked
where recency = 1
