{#-
  An index a model gained after its table was first deployed (dbt creates a model's `indexes` only
  with the table): created by a post-hook on the first run after the upgrade, a no-op after that
  (CREATE INDEX IF NOT EXISTS, which CockroachDB supports too).
    - order_date on fct_orders: retention deletes the oldest orders first (fct_sales has it already).
-#}
{% macro ensure_index(columns) -%}
create index if not exists {{ this.identifier }}_{{ columns | join('_') }}_idx on {{ this }} ({{ columns | join(', ') }})
{%- endmacro %}
