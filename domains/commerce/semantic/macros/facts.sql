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
