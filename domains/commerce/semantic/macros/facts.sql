{#- The customer versions of dim_customer, for the platform's as-of-version joins
    (etl_platform.versions_cte / version_joins / version_as_of, docs/macros.md): an order takes the
    customer version valid when it was placed. -#}
{% macro customer_versions() -%}
{{ return({
    'relation': ref('dim_customer'),
    'key': 'customer_id',
    'valid_from': 'customer_valid_from',
    'valid_to': 'customer_valid_to',
    'version': 'customer_version',
}) }}
{%- endmacro %}

{#- Orders touched since the fact table `fact` was last built: orders or lines loaded into conformed
    after the newest `loaded_at_column` it holds (deleted ones included: their rows must go). -#}
{% macro touched_orders(fact, loaded_at_column='order_source_loaded_at') -%}
select changed_orders.order_id
from {{ source('conformed', 'sales_order') }} as changed_orders
where changed_orders.loaded_at > (select coalesce(max(facts.{{ loaded_at_column }}), '1900-01-01'::timestamptz) from {{ fact }} as facts)
union
select changed_lines.order_id
from {{ source('conformed', 'sales_order_line') }} as changed_lines
where changed_lines.loaded_at > (select coalesce(max(facts.{{ loaded_at_column }}), '1900-01-01'::timestamptz) from {{ fact }} as facts)
{%- endmacro %}

{#- The ids of the orders touched_orders(fact, loaded_at_column) returns, read when dbt compiles the
    model (or renders its hook), in order; none while dbt parses, on a full build, or when more than
    `listed_up_to` orders were touched. Sorted here: an `order by` in the query made the planner read
    the orders in key order, the whole primary key (0.4 s at 1,000,000 orders, against 0.02 s). -#}
{% macro touched_order_ids(fact, loaded_at_column, listed_up_to) -%}
{%- if not (execute and is_incremental()) -%}
    {{ return(none) }}
{%- endif -%}
{%- set found = run_query(
    'select touched.order_id from (' ~ touched_orders(fact, loaded_at_column) ~ ') as touched'
    ~ ' limit ' ~ (listed_up_to + 1)
) -%}
{%- set ids = found.columns[0].values() | map('int') | sort | list -%}
{{ return(ids if ids | length <= listed_up_to else none) }}
{%- endmacro %}

{#- The condition "`column` is an order touched since `fact` was last built" of an incremental fact
    (its query and its pre-hook): the touched order ids written out (touched_order_ids), so that the
    planner knows how many there are; `false` when there are none; the subquery touched_orders when
    there are more than `listed_up_to` (a statement of bounded size).
    Why not the subquery always: nothing tells the planner how many rows are newer than the fact's
    newest loaded_at. With `loaded_at > (select max(...))` it assumes a third of each table, reads
    every order and line and joins them whole (bench/semantic: 215,221 orders estimated for 2,000 at
    200,000 orders); with that watermark as a literal it estimates from statistics that predate the
    delta (every row of a load shares one loaded_at, so they hold a single value) and finds 1 row,
    and the nested loops it then chooses over the customer versions and the order lines cost more than
    a full build at 1,000,000 orders. A list of ids gives it the number exactly. -#}
{% macro touched_orders_filter(column, fact, loaded_at_column='order_source_loaded_at', listed_up_to=20000) -%}
{%- set ids = touched_order_ids(fact, loaded_at_column, listed_up_to) -%}
{%- if ids is none -%}
{{ column }} in (select touched.order_id from ({{ touched_orders(fact, loaded_at_column) }}) as touched)
{%- elif ids -%}
{{ column }} in ({{ ids | join(', ') }})
{%- else -%}
false
{%- endif -%}
{%- endmacro %}

{#- The orders changed after `since` (column order_id): a version of the order or of one of its lines
    loaded into the conformed history after it (deletes included). -#}
{% macro changed_order_ids(since) -%}
select changed_orders.order_id
from {{ source('conformed', 'sales_order_history') }} as changed_orders
where changed_orders.loaded_at > {{ since }}
union
select changed_lines.order_id
from {{ source('conformed', 'sales_order_line_history') }} as changed_lines
where changed_lines.loaded_at > {{ since }}
{%- endmacro %}

{#- The order dates a delta touched (column touched_date), for the aggregates rebuilt by day or month
    (etl_platform.replace_periods, docs/macros.md): every date of every version (conformed history:
    the old date of an order that moved or was deleted too) of the orders changed after `since`, and
    the dates with sales of the products whose category changed after `since` (the aggregates group
    by the current category). -#}
{% macro touched_order_dates(since) -%}
select versions.order_date as touched_date
from {{ source('conformed', 'sales_order_history') }} as versions
where versions.order_id in ({{ changed_order_ids(since) }})
union
select recategorised_sales.sales_order_date as touched_date
from {{ ref('fct_sales') }} as recategorised_sales
inner join {{ ref('dim_product') }} as recategorised on recategorised_sales.product_key = recategorised.product_key
where recategorised.product_id in (
    select changed_products.product_id
    from {{ source('conformed', 'product_history') }} as changed_products
    inner join {{ source('conformed', 'product_history') }} as other_versions
        on changed_products.product_id = other_versions.product_id
    where
        changed_products.loaded_at > {{ since }}
        and changed_products.category is distinct from other_versions.category
)
{%- endmacro %}

{#- The months monthly_kpis rebuilds (column touched_month): those of touched_order_dates(since) and
    of the web events loaded after `since`, and the first-order month now of every customer of a
    changed order (a customer's new-customer month moves when their first order goes or moves). -#}
{% macro touched_kpi_months(since) -%}
select date_trunc('month', touched_dates.touched_date)::date as touched_month
from ({{ touched_order_dates(since) }}) as touched_dates
union
select date_trunc('month', changed_events.occurred_at)::date as touched_month
from {{ source('conformed', 'web_event') }} as changed_events
where changed_events.loaded_at > {{ since }} and changed_events.occurred_at is not null
union
select min(date_trunc('month', customer_orders.order_date)::date) as touched_month
from {{ ref('fct_orders') }} as customer_orders
inner join {{ ref('dim_customer') }} as customer_versions on customer_orders.customer_key = customer_versions.customer_key
where customer_versions.customer_id in (
    select changed_versions.customer_id
    from {{ source('conformed', 'sales_order_history') }} as changed_versions
    where changed_versions.order_id in ({{ changed_order_ids(since) }})
)
group by customer_versions.customer_id
{%- endmacro %}
