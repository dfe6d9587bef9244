-- Monthly KPIs for the static reports: orders, customers (and new ones), revenue in the reporting
-- currency, average order value, cancellation and return shares, web sessions and conversion.
-- Incremental by month (etl_platform.replace_periods): a run rebuilds only the months a delta touched:
-- the months of touched_order_dates and of the web events loaded since the newest
-- kpi_source_loaded_at here, and the first-order months of the customers ordering in them (a
-- customer's new-customer month moves when their first order goes).
{{ config(
    materialized='incremental',
    incremental_strategy='upsert',
    unique_key='kpi_month',
    on_schema_change='fail',
    pre_hook="{{ etl_platform.replace_periods('kpi_month', touched_kpi_months(etl_platform.newest_value(this, 'kpi_source_loaded_at'))) }}",
) }}

with
{% if is_incremental() %}
    touched as (
        {{ touched_kpi_months(etl_platform.newest_value(this, 'kpi_source_loaded_at')) }}
    ),
{% endif %}

orders as (
    select
        date_trunc('month', facts.order_date)::date as month_start,
        facts.order_status,
        facts.order_net_amount_reporting,
        facts.order_source_loaded_at,
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
        count(*) filter (where orders.order_status = 'returned') as returned,
        max(orders.order_source_loaded_at) as source_loaded_at
    from orders
    inner join first_orders on orders.customer_id = first_orders.customer_id
    {%- if is_incremental() %}
        where orders.month_start in (select touched.touched_month from touched)
    {%- endif %}
    group by orders.month_start
),

monthly_web as (
    select
        date_trunc('month', occurred_at)::date as month_start,
        count(distinct session_id) as sessions,
        max(loaded_at) as source_loaded_at
    from {{ source('conformed', 'web_event') }}
    where
        not is_deleted
        {%- if is_incremental() %}
            and occurred_at >= (select min(touched.touched_month) from touched)
            and date_trunc('month', occurred_at)::date in (select touched.touched_month from touched)
        {%- endif %}
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
    round(monthly_orders.orders::numeric / nullif(monthly_web.sessions, 0)::numeric, 4) as kpi_conversion_rate,
    greatest(
        monthly_orders.source_loaded_at, coalesce(monthly_web.source_loaded_at, monthly_orders.source_loaded_at)
    ) as kpi_source_loaded_at
from monthly_orders
left join monthly_web on monthly_orders.month_start = monthly_web.month_start
