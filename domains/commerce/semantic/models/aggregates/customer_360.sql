-- One row per current customer, as in the brief: orders, revenue (reporting currency), first and
-- last order, web activity, CRM industry and open opportunities. customer_key is the key of the
-- customer's current version in dim_customer.
{{ config(materialized='table', unique_key='customer_key') }}

with customers as (
    select *
    from {{ ref('dim_customer') }}
    where customer_is_current and not customer_is_deleted and customer_id <> -1
),

orders as (
    select
        dim.customer_id,
        count(*) as orders,
        sum(facts.order_net_amount_reporting) as revenue,
        min(facts.order_date) as first_order_date,
        max(facts.order_date) as last_order_date
    from {{ ref('fct_orders') }} as facts
    inner join {{ ref('dim_customer') }} as dim on facts.customer_key = dim.customer_key
    where facts.order_status <> 'cancelled'
    group by dim.customer_id
),

web as (
    select
        customer_id,
        count(*) as events,
        count(distinct session_id) as sessions,
        max(occurred_at) as last_event_at
    from {{ source('conformed', 'web_event') }}
    where not is_deleted and customer_id is not null
    group by customer_id
),

opportunities as (
    select
        account_id,
        count(*) as open_opportunities
    from {{ source('conformed', 'crm_opportunity') }}
    where not is_deleted and stage not in ('closed_won', 'closed_lost')
    group by account_id
)

select
    customers.customer_key,
    customers.customer_id as c360_customer_id,
    customers.customer_country_code as c360_country_code,
    customers.customer_crm_industry as c360_crm_industry,
    coalesce(orders.orders, 0) as c360_orders,
    coalesce(orders.revenue, 0) as c360_revenue,
    orders.first_order_date as c360_first_order_date,
    orders.last_order_date as c360_last_order_date,
    coalesce(web.events, 0) as c360_web_events,
    coalesce(web.sessions, 0) as c360_web_sessions,
    web.last_event_at as c360_last_web_event_at,
    coalesce(opportunities.open_opportunities, 0) as c360_open_opportunities
from customers
left join orders on customers.customer_id = orders.customer_id
left join web on customers.customer_id = web.customer_id
left join opportunities on customers.customer_crm_account_id = opportunities.account_id
