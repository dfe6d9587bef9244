-- Sales order header, one row per order_id (the latest update wins). Status values are checked
-- against the lifecycle in schema.yml.

with orders as (
    select * from {{ ref('base_oltp__orders') }}
),

ranked as (
    select
        orders.*,
        row_number() over (partition by order_id order by updated_at desc nulls last) as recency
    from orders
)

select
    order_id,
    customer_id,
    order_date,
    ordered_at,
    lower(trim(status)) as order_status,
    upper(trim(currency)) as currency_code,
    updated_at,
    pull_id,
    run_id
from ranked
where recency = 1
