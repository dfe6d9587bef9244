{#- The customer version valid when an order was placed: the version whose [valid_from, valid_to)
    holds ordered_at; an order placed before the first known version takes the first, one placed
    after the customer was deleted takes the last; an unknown customer the unknown member.
    Use: the CTE customer_versions_cte(), the joins customer_version_joins('orders'), then
    matched_customer('customer_key', 'orders'). -#}
{% macro customer_versions_cte() -%}
customer_versions as (
    select
        customer_key,
        customer_id,
        customer_country_code,
        customer_valid_from,
        customer_valid_to,
        customer_version,
        max(customer_version) over (partition by customer_id) as customer_versions
    from {{ ref('dim_customer') }}
    where customer_id <> -1
)
{%- endmacro %}

{% macro customer_version_joins(orders_alias) -%}
left join customer_versions as valid_version
    on
        {{ orders_alias }}.customer_id = valid_version.customer_id
        and {{ orders_alias }}.ordered_at >= valid_version.customer_valid_from
        and ({{ orders_alias }}.ordered_at < valid_version.customer_valid_to or valid_version.customer_valid_to is null)
left join customer_versions as first_version
    on {{ orders_alias }}.customer_id = first_version.customer_id and first_version.customer_version = 1
left join customer_versions as last_version
    on
        {{ orders_alias }}.customer_id = last_version.customer_id
        and last_version.customer_version = last_version.customer_versions
{%- endmacro %}

{% macro matched_customer(column, orders_alias) -%}
coalesce(
    valid_version.{{ column }},
    case when {{ orders_alias }}.ordered_at < first_version.customer_valid_from then first_version.{{ column }} end,
    last_version.{{ column }}
)
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
