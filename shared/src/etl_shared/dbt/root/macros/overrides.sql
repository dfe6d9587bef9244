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

{#- The incremental strategy of the history models (incremental_strategy='history'): an upsert on
    the version's identity, the keys, valid_from and pull_id (unique_key, the unique constraint
    <table>_version_key). The versions this run closes are already in the table: they are updated
    in place (valid_to, is_current, loaded_at); the new versions are inserted. A new version cannot
    exist yet: its valid_from is later than that of every version of its key (scd2_history).
    One statement, so a single transaction on PostgreSQL and CockroachDB (which has no MERGE but
    supports INSERT ... ON CONFLICT, DESIGN.md section 3). dbt's delete+insert looked every closed
    version up twice, once to delete it and once to insert it again: on the benchmark's order lines
    the delete alone took a quarter of the model's time. -#}
{% macro get_incremental_history_sql(arg_dict) -%}
{{ etl_platform.upsert_sql(arg_dict["target_relation"], arg_dict["temp_relation"], arg_dict["dest_columns"], arg_dict["unique_key"]) }}
{%- endmacro %}

{#- The incremental strategy of the current-state models (incremental_strategy='upsert'): every
    row of the run replaces the row of its key, or is inserted. Rows are never removed from these
    tables (a deleted entity stays, is_deleted true), so an upsert does what delete+insert did with
    one index lookup per row instead of two. Needs the unique index on the key (current_config). -#}
{% macro get_incremental_upsert_sql(arg_dict) -%}
{%- set keys = arg_dict["unique_key"] if arg_dict["unique_key"] is not string else [arg_dict["unique_key"]] -%}
{{ etl_platform.upsert_sql(arg_dict["target_relation"], arg_dict["temp_relation"], arg_dict["dest_columns"], keys) }}
{%- endmacro %}

{#-
  A test's `where` config is rendered when dbt parses the YAML, before any run value is known: there
  it writes the placeholder {loaded_this_run}, replaced here, when the test runs, by
  loaded_this_run(), and {run_id}, replaced by this run's id as a string literal (the rows a change
  ledger wrote this run: `ws_run_id = {run_id}`). This is dbt's own get_where_subquery with those
  replacements.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- set where = where | replace('{loaded_this_run}', etl_platform.loaded_this_run()) | replace('{run_id}', etl_platform.run_id_literal()) -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
