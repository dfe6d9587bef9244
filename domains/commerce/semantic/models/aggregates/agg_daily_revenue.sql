-- Daily revenue by product category and customer country (the country of the customer version valid
-- at the order), in the reporting currency: for the dashboards. Incremental by day
-- (etl_platform.replace_periods): a run rebuilds only the days a delta touched (touched_order_dates:
-- every date of the orders changed since the newest daily_source_loaded_at here, their old dates
-- included, and the days with sales of products whose category changed).
{%- set since = etl_platform.newest_value(this, 'daily_source_loaded_at') %}
{{ config(
    materialized='incremental',
    incremental_strategy='upsert',
    unique_key=['daily_date', 'daily_product_category', 'daily_country_code'],
    on_schema_change='fail',
    pre_hook="{{ etl_platform.replace_periods('daily_date', touched_order_dates(etl_platform.newest_value(this, 'daily_source_loaded_at'))) }}",
) }}

with
{% if is_incremental() %}
    touched as (
        {{ touched_order_dates(since) }}
    ),
{% endif %}

sales as (
    select *
    from {{ ref('fct_sales') }}
    where
        sales_order_status not in ('cancelled')
        {% if is_incremental() %}and sales_order_date in (select touched.touched_date from touched){% endif %}
)

select
    sales.sales_order_date as daily_date,
    products.product_category as daily_product_category,
    geographies.geography_country_code as daily_country_code,
    count(distinct sales.sales_order_id) as daily_orders,
    count(*) as daily_lines,
    sum(sales.sales_quantity) as daily_quantity,
    sum(sales.sales_net_amount_reporting) as daily_revenue,
    count(*) - count(sales.sales_net_amount_reporting) as daily_lines_without_rate,
    max(sales.sales_reporting_currency) as daily_reporting_currency,
    max(sales.sales_source_loaded_at) as daily_source_loaded_at
from sales
inner join {{ ref('dim_product') }} as products on sales.product_key = products.product_key
inner join {{ ref('dim_geography') }} as geographies on sales.geography_key = geographies.geography_key
group by sales.sales_order_date, products.product_category, geographies.geography_country_code
