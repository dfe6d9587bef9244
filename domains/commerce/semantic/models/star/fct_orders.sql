-- Orders at order grain (for reports; the Qlik app loads fct_sales): line count, quantity and amounts
-- summed from the order's lines, the customer version valid when it was placed. Deleted orders are
-- left out. Incremental: orders changed, or with a changed line, since the last run; the pre-hook
-- removes them first so that a deleted order disappears (by the index on order_id, ensure_index). The
-- touched orders are written into the query as ids (touched_orders_filter, macros/facts.sql), and the
-- run reads only their orders, lines and customers' versions.
-- The post-hook refreshes the statistics after a full build (the table is new, or rebuilt): without
-- them the planner chose a nested loop for a relationship test, which ran for minutes at 1,000,000
-- orders. An incremental run replaces the touched orders' rows only, and leaves the statistics to
-- autovacuum (its analyze cost 0.4-1.8 s per fact at 1,000,000 orders).
-- Retention (meta etl_retention, ETL_RETENTION_DAYS) by business date: the facts of older orders go.
{{ config(
    materialized='incremental',
    incremental_strategy='upsert',
    unique_key='order_key',
    on_schema_change='fail',
    meta={'etl_retention': {'column': 'order_date', 'keys': ['order_key']}},
    indexes=[{'columns': ['order_source_loaded_at']}],
    post_hook=[
        "{% if not is_incremental() %}analyze {{ this }}{% endif %}",
        "{{ etl_platform.ensure_index(['order_date']) }}",
        "{{ etl_platform.ensure_index(['order_id']) }}",
    ],
    pre_hook="{% if is_incremental() %}delete from {{ this }} where {{ touched_orders_filter('order_id', this) }}{% endif %}",
) }}

with orders as (
    select *
    from {{ source('conformed', 'sales_order') }}
    where
        not is_deleted
        {% if is_incremental() %}and {{ touched_orders_filter('order_id', this) }}{% endif %}
),

line_totals as (
    select
        lines.order_id,
        count(*) as line_count,
        sum(lines.quantity) as quantity,
        sum(lines.net_amount) as net_amount,
        sum(lines.net_amount_reporting) as net_amount_reporting,
        count(*) - count(lines.net_amount_reporting) as lines_without_rate,
        max(lines.reporting_currency) as reporting_currency,
        max(lines.loaded_at) as loaded_at
    from {{ source('conformed', 'sales_order_line') }} as lines
    inner join orders on lines.order_id = orders.order_id
    where
        not lines.is_deleted
        {% if is_incremental() %}and {{ touched_orders_filter('lines.order_id', this) }}{% endif %}
    group by lines.order_id
),

{{ etl_platform.versions_cte(
    'customer_versions', customer_versions(), ['customer_key', 'customer_country_code'],
    where='customer_id <> -1' ~ (' and customer_id in (select orders.customer_id from orders)' if is_incremental() else '')
) }}

select
    {{ etl_platform.surrogate_key(['orders.order_id']) }} as order_key,
    coalesce(dates.date_key, {{ etl_platform.unknown_key() }}) as date_key,
    coalesce({{ etl_platform.version_as_of('customer_versions', customer_versions(), 'customer_key', 'orders.ordered_at') }}, {{ etl_platform.unknown_key() }}) as customer_key,
    coalesce(currencies.currency_key, {{ etl_platform.unknown_key() }}) as currency_key,
    coalesce(geographies.geography_key, {{ etl_platform.unknown_key() }}) as geography_key,
    orders.order_id,
    orders.order_date,
    orders.ordered_at as order_ordered_at,
    orders.order_status,
    coalesce(line_totals.line_count, 0) as order_line_count,
    coalesce(line_totals.quantity, 0) as order_quantity,
    coalesce(line_totals.net_amount, 0) as order_net_amount,
    case when coalesce(line_totals.lines_without_rate, 0) = 0 then coalesce(line_totals.net_amount_reporting, 0) end
        as order_net_amount_reporting,
    coalesce(line_totals.reporting_currency, '{{ var("reporting_currency", "USD") }}') as order_reporting_currency,
    greatest(orders.loaded_at, coalesce(line_totals.loaded_at, orders.loaded_at)) as order_source_loaded_at
from orders
left join line_totals on orders.order_id = line_totals.order_id
{{ etl_platform.version_joins('customer_versions', customer_versions(), 'orders.customer_id', 'orders.ordered_at') }}
left join {{ ref('dim_date') }} as dates on orders.order_date = dates.date_value
left join {{ ref('dim_currency') }} as currencies on orders.currency_code = currencies.currency_code
left join {{ ref('dim_geography') }} as geographies
    on {{ etl_platform.version_as_of('customer_versions', customer_versions(), 'customer_country_code', 'orders.ordered_at') }} = geographies.geography_country_code
