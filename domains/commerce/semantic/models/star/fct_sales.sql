-- Sales at order-line grain, the fact of the Qlik app. Every key resolves to a dimension row (the
-- unknown member when there is no match); the customer key is the customer version valid when the
-- order was placed, the geography that version's country. Amounts: net in the order currency and in
-- the reporting currency (conformed.sales_order_line). Deleted orders and lines are left out.
--
-- Incremental, an upsert on sales_key by order window: a run replaces the lines of every order touched since
-- the last run (the order or one of its lines loaded into conformed after the newest
-- sales_source_loaded_at the fact holds), whatever their order date. The pre-hook removes those
-- orders' lines first, so a deleted order or line disappears and an order whose date moved leaves
-- nothing behind on its old day. The touched orders are written into the query and the pre-hook as
-- ids (touched_orders_filter, macros/facts.sql: the planner then knows how many there are), and the
-- run reads only their orders, lines and customers' versions: 4.3 s for this model after a 1% delta
-- at 1,000,000 orders (bench/semantic/replay.py), where reading every line and every customer
-- version, or the nested loops a wrong estimate of the touched orders gave, took 9-97 s, up to twice
-- a full build of it.
-- It used to be a window of order dates: a 1% delta of changes spread
-- over two years of order dates touched every day, so each run rewrote the whole table (118 s against
-- 36 s for a full build at 1,000,000 orders, bench/semantic), and an order moved to another day kept
-- its old lines.
-- The post-hook refreshes the statistics after a full build (the table is new, or rebuilt): without
-- them the planner chose a nested loop for a relationship test, which ran for minutes at 1,000,000
-- orders. An incremental run replaces the touched orders' rows only, and leaves the statistics to
-- autovacuum (its analyze cost 0.4-1.8 s per fact at 1,000,000 orders).
-- Retention (meta etl_retention, ETL_RETENTION_DAYS) by business date: the facts of older orders go.
{{ config(
    materialized='incremental',
    incremental_strategy='upsert',
    unique_key='sales_key',
    on_schema_change='fail',
    meta={
        'etl_retention': {'column': 'sales_order_date', 'keys': ['sales_key']},
        'etl_qlik_app': 'semantic_star',
    },
    indexes=[{'columns': ['sales_order_id']}, {'columns': ['sales_order_date']}, {'columns': ['sales_source_loaded_at']}],
    post_hook="{% if not is_incremental() %}analyze {{ this }}{% endif %}",
    pre_hook="{% if is_incremental() %}delete from {{ this }} where {{ touched_orders_filter('sales_order_id', this, 'sales_source_loaded_at') }}{% endif %}",
) }}

with orders as (
    select *
    from {{ source('conformed', 'sales_order') }}
    where
        not is_deleted
        {% if is_incremental() %}and {{ touched_orders_filter('order_id', this, 'sales_source_loaded_at') }}{% endif %}
),

lines as (
    select *
    from {{ source('conformed', 'sales_order_line') }}
    where
        not is_deleted
        {% if is_incremental() %}and {{ touched_orders_filter('order_id', this, 'sales_source_loaded_at') }}{% endif %}
),

{{ etl_platform.versions_cte(
    'customer_versions', customer_versions(), ['customer_key', 'customer_country_code'],
    where='customer_id <> -1' ~ (' and customer_id in (select orders.customer_id from orders)' if is_incremental() else '')
) }},

products as (
    select
        product_key,
        product_id
    from {{ ref('dim_product') }}
),

joined as (
    select
        {{ etl_platform.surrogate_key(['lines.order_id', 'lines.line_number']) }} as sales_key,
        coalesce(dates.date_key, {{ etl_platform.unknown_key() }}) as date_key,
        coalesce({{ etl_platform.version_as_of('customer_versions', customer_versions(), 'customer_key', 'orders.ordered_at') }}, {{ etl_platform.unknown_key() }}) as customer_key,
        coalesce(products.product_key, {{ etl_platform.unknown_key() }}) as product_key,
        coalesce(currencies.currency_key, {{ etl_platform.unknown_key() }}) as currency_key,
        coalesce(geographies.geography_key, {{ etl_platform.unknown_key() }}) as geography_key,
        lines.order_id as sales_order_id,
        lines.line_number as sales_line_number,
        orders.order_date as sales_order_date,
        orders.ordered_at as sales_ordered_at,
        orders.order_status as sales_order_status,
        lines.quantity as sales_quantity,
        lines.unit_price as sales_unit_price,
        lines.net_amount as sales_net_amount,
        lines.net_amount_reporting as sales_net_amount_reporting,
        lines.reporting_currency as sales_reporting_currency,
        greatest(orders.loaded_at, lines.loaded_at) as sales_source_loaded_at
    from lines
    inner join orders on lines.order_id = orders.order_id
    {{ etl_platform.version_joins('customer_versions', customer_versions(), 'orders.customer_id', 'orders.ordered_at') }}
    left join products on lines.product_id = products.product_id
    left join {{ ref('dim_date') }} as dates on orders.order_date = dates.date_value
    left join {{ ref('dim_currency') }} as currencies on orders.currency_code = currencies.currency_code
    left join {{ ref('dim_geography') }} as geographies
        on {{ etl_platform.version_as_of('customer_versions', customer_versions(), 'customer_country_code', 'orders.ordered_at') }} = geographies.geography_country_code
)

select * from joined
