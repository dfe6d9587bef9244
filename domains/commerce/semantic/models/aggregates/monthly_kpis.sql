-- Monthly KPIs for the static reports: orders, customers (and new ones), revenue in the reporting
-- currency, average order value, cancellation and return shares, web sessions and conversion.
{{ config(materialized='table', unique_key='kpi_month') }}

with orders as (
    select
        date_trunc('month', facts.order_date)::date as month_start,
        facts.order_status,
        facts.order_net_amount_reporting,
        dim.customer_id
    from {{ ref('fct_orders') }} as facts
    inner join {{ ref('dim_customer') }} as dim on facts.customer_key = dim.customer_key
),

first_orders as (
    select
        customer_id,
        min(month_start) as first_month
    from orders
    group by customer_id
),

monthly_orders as (
    select
        orders.month_start,
        count(*) as orders,
        count(distinct orders.customer_id) as customers,
        count(distinct case when first_orders.first_month = orders.month_start then orders.customer_id end)
            as new_customers,
        sum(case when orders.order_status <> 'cancelled' then orders.order_net_amount_reporting end) as revenue,
        count(*) filter (where orders.order_status = 'cancelled') as cancelled,
        count(*) filter (where orders.order_status = 'returned') as returned
    from orders
    inner join first_orders on orders.customer_id = first_orders.customer_id
    group by orders.month_start
),

monthly_web as (
    select
        date_trunc('month', occurred_at)::date as month_start,
        count(distinct session_id) as sessions
    from {{ source('conformed', 'web_event') }}
    where not is_deleted
    group by date_trunc('month', occurred_at)::date
)

select
    monthly_orders.month_start as kpi_month,
    monthly_orders.orders as kpi_orders,
    monthly_orders.customers as kpi_customers,
    monthly_orders.new_customers as kpi_new_customers,
    monthly_orders.revenue as kpi_revenue,
    round(monthly_orders.revenue / nullif(monthly_orders.orders - monthly_orders.cancelled, 0)::numeric, 2)
        as kpi_average_order_value,
    round(monthly_orders.cancelled::numeric / monthly_orders.orders::numeric, 4) as kpi_cancelled_share,
    round(monthly_orders.returned::numeric / monthly_orders.orders::numeric, 4) as kpi_returned_share,
    coalesce(monthly_web.sessions, 0) as kpi_web_sessions,
    round(monthly_orders.orders::numeric / nullif(monthly_web.sessions, 0)::numeric, 4) as kpi_conversion_rate
from monthly_orders
left join monthly_web on monthly_orders.month_start = monthly_web.month_start
