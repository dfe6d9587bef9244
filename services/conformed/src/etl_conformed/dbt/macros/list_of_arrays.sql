{#-
  Staging stores each pull as batches of JSON list-of-arrays: {"columns": [...], "rows": [[...]]}.
  These macros turn the newest committed pull of one source entity into typed columns. A column is
  found by name in its batch's column list, so batches with different column sets (a CSV and a JSON
  Lines drop of the same entity) flatten into one relation; an absent column reads as null.
-#}

{% macro latest_pull_records(source_name, entity) -%}
latest_pull as (
    select pulls.pull_id
    from {{ source('staging', 'pulls') }} as pulls
    where
        pulls.source = '{{ source_name }}'
        and pulls.entity = '{{ entity }}'
        and pulls.status = 'committed'
    order by pulls.committed_at desc, pulls.pull_id desc
    limit 1
),

{#- MATERIALIZED: the column list is decoded once per batch. Inlined, the planner would repeat the
    decoding (and the detoasting of the whole batch) for every field of every record. -#}
pull_batches as materialized (
    select
        batches.pull_id,
        batches.batch_no,
        array(select jsonb_array_elements_text(batches.data -> 'columns')) as column_names,
        batches.data -> 'rows' as batch_rows
    from {{ source('staging', 'pull_batches') }} as batches
    inner join latest_pull on batches.pull_id = latest_pull.pull_id
),

pull_records as (
    select
        pull_batches.pull_id,
        pull_batches.batch_no,
        record_rows.row_no,
        pull_batches.column_names,
        record_rows.record
    from pull_batches
    cross join lateral jsonb_array_elements(pull_batches.batch_rows) with ordinality as record_rows (record, row_no)
)
{%- endmacro %}

{#- The text of column `name` in the current record (null when empty or absent). -#}
{% macro field(name) -%}
nullif(trim(pull_records.record ->> (array_position(pull_records.column_names, '{{ name }}') - 1)), '')
{%- endmacro %}

{#- The columns every conformed row carries back to its origin. -#}
{% macro lineage_columns() -%}
pull_records.pull_id as pull_id,
    '{{ var("run_id") }}' as run_id
{%- endmacro %}
