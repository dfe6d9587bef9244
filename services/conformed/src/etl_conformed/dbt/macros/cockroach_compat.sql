{#- CockroachDB compatibility overrides (see docs/cockroachdb.md). -#}

{#- CockroachDB adds a hidden rowid column to tables without a primary key; dbt must not see it.
    The runner sets var is_cockroachdb from select version(); PostgreSQL has no is_hidden column. -#}
{% macro postgres__get_columns_in_relation(relation) -%}
  {% call statement('get_columns_in_relation', fetch_result=True) %}
      select
          column_name,
          {#- information_schema says only 'ARRAY' for an array column; name its element type
              (udt_name '_text' -> 'text[]') so that dbt can cast to it (unit-test fixtures). #}
          case when data_type = 'ARRAY' then substring(udt_name from 2) || '[]' else data_type end as data_type,
          character_maximum_length,
          numeric_precision,
          numeric_scale
      from {{ relation.information_schema('columns') }}
      where table_name = '{{ relation.identifier }}'
        {% if relation.schema %}
        and table_schema = '{{ relation.schema }}'
        {% endif %}
        {% if var('is_cockroachdb', false) %}
        and is_hidden = 'NO'
        {% endif %}
      order by ordinal_position
  {% endcall %}
  {% set table = load_result('get_columns_in_relation').table %}
  {{ return(sql_convert_columns_in_relation(table)) }}
{% endmacro %}

{#- CockroachDB has no MERGE: refuse the strategies that need it at compile time. -#}
{% macro get_incremental_merge_sql(arg_dict) -%}
  {{ exceptions.raise_compiler_error("incremental_strategy 'merge' is not allowed: CockroachDB has no MERGE; use 'delete+insert' or 'append'") }}
{%- endmacro %}

{% macro get_incremental_microbatch_sql(arg_dict) -%}
  {{ exceptions.raise_compiler_error("incremental_strategy 'microbatch' is not allowed on CockroachDB; use 'delete+insert'") }}
{%- endmacro %}

{#- Custom schema names are used as they are (no target-schema prefix). -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
  {{ custom_schema_name if custom_schema_name else target.schema }}
{%- endmacro %}
