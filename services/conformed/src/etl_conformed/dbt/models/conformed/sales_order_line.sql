-- Sales order line, one row per (order_id, line_number). Net amount in the order's currency:
-- quantity x unit price less the line discount (a percentage).

with order_lines as (
    select * from {{ ref('base_oltp__order_lines') }}
),

ranked as (
    select
        order_lines.*,
        row_number() over (
            partition by order_id, line_number order by updated_at desc nulls last
        ) as recency
    from order_lines
)

select
    order_id,
    line_number,
    product_id,
    quantity,
    unit_price,
    coalesce(discount_pct, 0) as discount_pct,
    round(
        quantity * unit_price * (1 - coalesce(discount_pct, 0)::numeric / 100::numeric), 2
    ) as net_amount,
    updated_at,
    pull_id,
    run_id
from ranked
where recency = 1
