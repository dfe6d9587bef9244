-- Sales at order-line grain. Every customer_key and product_key resolves to a dimension row
-- (the unknown member when the conformed row has no match). Amounts are in the order currency.

with order_lines as (
    select * from {{ source('conformed', 'sales_order_line') }}
    where not is_deleted  -- conformed keeps deleted rows, flagged
),

orders as (
    select * from {{ source('conformed', 'sales_order') }}
    where not is_deleted  -- conformed keeps deleted rows, flagged
),

customers as (
    select
        customer_key,
        customer_id
    from {{ ref('dim_customer') }}
),

products as (
    select
        product_key,
        product_id
    from {{ ref('dim_product') }}
),

joined as (
    select
        {{ surrogate_key(['order_lines.order_id', 'order_lines.line_number']) }} as sales_key,
        coalesce(customers.customer_key, {{ unknown_key() }}) as customer_key,
        coalesce(products.product_key, {{ unknown_key() }}) as product_key,
        order_lines.order_id as sales_order_id,
        order_lines.line_number as sales_line_number,
        orders.order_date as sales_order_date,
        orders.order_status as sales_order_status,
        orders.currency_code as sales_currency_code,
        order_lines.quantity as sales_quantity,
        order_lines.unit_price as sales_unit_price,
        order_lines.net_amount as sales_net_amount,
        '{{ var("run_id") }}' as sales_run_id
    from order_lines
    inner join orders on order_lines.order_id = orders.order_id
    left join customers on orders.customer_id = customers.customer_id
    left join products on order_lines.product_id = products.product_id
)

select * from joined
