-- Daily revenue by product category and customer country (the country of the customer version valid
-- at the order), in the reporting currency: for the dashboards. Rebuilt from fct_sales every run.
{{ config(materialized='table', unique_key=['daily_date', 'daily_product_category', 'daily_country_code']) }}

select
    sales.sales_order_date as daily_date,
    products.product_category as daily_product_category,
    geographies.geography_country_code as daily_country_code,
    count(distinct sales.sales_order_id) as daily_orders,
    count(*) as daily_lines,
    sum(sales.sales_quantity) as daily_quantity,
    sum(sales.sales_net_amount_reporting) as daily_revenue,
    count(*) - count(sales.sales_net_amount_reporting) as daily_lines_without_rate,
    max(sales.sales_reporting_currency) as daily_reporting_currency
from {{ ref('fct_sales') }} as sales
inner join {{ ref('dim_product') }} as products on sales.product_key = products.product_key
inner join {{ ref('dim_geography') }} as geographies on sales.geography_key = geographies.geography_key
where sales.sales_order_status not in ('cancelled')
group by sales.sales_order_date, products.product_category, geographies.geography_country_code
