{#-
  An index a model gained after its table was first deployed. dbt creates a model's `indexes` only
  with the table, and history tables are never rebuilt (full_refresh=false), so an index added in a
  later release goes in a post-hook instead: created on the first run after the upgrade, a no-op on
  every run after (CREATE INDEX IF NOT EXISTS, which CockroachDB supports too).
    - valid_to on every history table: retention finds closed versions by it (oldest first);
    - order_date on sales_order_history: fx_rate starts its calendar at the first order. (Releases
      before 2026-11-22 put it on sales_order, where nothing reads it any more: drop
      conformed.sales_order_order_date_idx, docs/runbook.md.)
-#}
{% macro ensure_index(columns) -%}
create index if not exists {{ this.identifier }}_{{ columns | join('_') }}_idx on {{ this }} ({{ columns | join(', ') }})
{%- endmacro %}

{#- The unique index an upsert's ON CONFLICT needs, under a fixed name, so that creating it again is a
    no-op. For a model that was a table in earlier releases (customer): the index must exist before
    the first incremental run writes, hence a pre-hook on incremental runs as well as the post-hook
    that creates it with the table. -#}
{% macro ensure_unique_key(columns) -%}
create unique index if not exists {{ this.identifier }}_key on {{ this }} ({{ columns | join(', ') }})
{%- endmacro %}
