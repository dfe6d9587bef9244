{#-
  Which staging pulls a run reads, and their records as rows.

  Staging stores each pull as batches of JSON list-of-arrays: {"columns": [...], "rows": [[...]]}.
  A run reads the pulls of its snapshot (conformed.run_pulls, see run_pulls_filter) that the consuming
  history model has not consumed yet (conformed.consumed_pulls):
    - snapshot entities (every pull is a full extract): only the newest pull of the snapshot; older
      unconsumed pulls are superseded by it;
    - incremental entities: every such pull, in commit order.
  After the history model has processed them, its post-hook records them as consumed
  (mark_pulls_consumed), so processing the same pull twice is avoided, and harmless when it happens.

  Consumption is by identity, never by clock: the conformed job lists the committed pulls by id
  before dbt runs, and every macro here reads that list. A pull that commits while the job runs is
  not in it, whatever its committed_at (now() is the committing transaction's start time, not its
  commit order): this run neither reads nor marks it, the next run does. "Newest" and "commit order"
  compare committed_at only among pulls of one source entity already known to be committed: staging
  commits an entity's pulls one at a time, under the entity's lock, so their committed_at follow
  their commit order.
-#}

{#- A condition on a pull id column: the pull is in this job's snapshot (conformed.run_pulls, by the
    run value job_id). Without a job id (a dbt build by hand) every committed pull counts. The source
    is referenced either way, so that dbt knows it as a parent of every model that reads pulls. -#}
{% macro run_pulls_filter(pull_id) -%}
{%- set run_pulls = source('conformed_ops', 'run_pulls') -%}
{%- if etl_platform.run_value('job_id', '') -%}
{{ pull_id }} in (
        select run_pulls.pull_id
        from {{ run_pulls }} as run_pulls
        where run_pulls.job_id = {{ etl_platform.job_id_value() }}
    )
{%- else -%}
true
{%- endif -%}
{%- endmacro %}

{% macro unconsumed_pulls(source_name, entity, consumer) -%}
select
    pulls.pull_id,
    pulls.source,
    pulls.entity,
    pulls.committed_at,
    pulls.mode
from {{ source('staging', 'pulls') }} as pulls
where
    pulls.source = '{{ source_name }}'
    and pulls.entity = '{{ entity }}'
    and pulls.status = 'committed'
    and {{ etl_platform.run_pulls_filter('pulls.pull_id') }}
    and not exists (
        select 1
        from {{ source('conformed_ops', 'consumed_pulls') }} as consumed
        where consumed.consumer = '{{ consumer }}' and consumed.pull_id = pulls.pull_id
    )
{%- endmacro %}

{#- The pulls a run processes for one source entity (see above). -#}
{% macro pulls_to_process(source_name, entity, consumer, snapshot) -%}
{%- if snapshot %}
select unconsumed.*
from ({{ etl_platform.unconsumed_pulls(source_name, entity, consumer) }}) as unconsumed
where unconsumed.pull_id = (
    select newest.pull_id
    from {{ source('staging', 'pulls') }} as newest
    where
        newest.source = '{{ source_name }}'
        and newest.entity = '{{ entity }}'
        and newest.status = 'committed'
        and {{ etl_platform.run_pulls_filter('newest.pull_id') }}
    order by newest.committed_at desc, newest.pull_id desc
    limit 1
)
{%- else %}
{{ etl_platform.unconsumed_pulls(source_name, entity, consumer) }}
{%- endif %}
{%- endmacro %}

{#- CTEs `run_pulls` and `pull_records`: one row per record of the pulls this run processes, with
    the pull's id, commit time, the record's position (batch_no, row_no), the file it was read from
    (record_file: staging.pull_batches.origin, null for sources that are not files) and is_unchanged.

    is_unchanged (snapshot entities that name their `record_key` field, in a run that builds only
    what has new input): the record is the same, column for column, as the one with the same key in
    the last pull this consumer processed, and neither pull has that key twice. Such a record was
    checked and written to the history (or held) when that pull was processed; its validated model
    does not type or check it again (see unchanged_records). Everywhere else, and in a run that
    builds everything (a release, changed vars, a failed previous run, --all), it is false, and every
    record is checked. -#}
{% macro pull_records(source_name, entity, consumer, snapshot=false, record_key=none) -%}
{%- set compare = snapshot and record_key is not none and etl_platform.run_value('skip_unchanged', 'false') == 'true' -%}
run_pulls as (
    {{ etl_platform.pulls_to_process(source_name, entity, consumer, snapshot) }}
),

{#- MATERIALIZED: the column list is decoded once per batch. Inlined, the planner would repeat the
    decoding (and the detoasting of the whole batch) for every field of every record. -#}
pull_batches as materialized (
    select
        batches.pull_id,
        run_pulls.committed_at as pull_committed_at,
        batches.batch_no,
        {{ etl_platform.batch_column_names('batches') }} as column_names,
        batches.data -> 'rows' as batch_rows,
        batches.origin as record_file
    from {{ source('staging', 'pull_batches') }} as batches
    -- a key listing (mode 'keys') is the history's to read (scd2_history), not a pull of records
    inner join run_pulls on batches.pull_id = run_pulls.pull_id and run_pulls.mode <> 'keys'
),
{%- if compare %}

{#- The last processed pull with records: an empty pull is marked processed without being read
    (select_new_pulls in cli.py), and compared with it every record would count as changed. Last by
    the pull's commit (see the top of this file), not by when it was marked: the pulls a snapshot
    entity's history processes are each the newest of their run's snapshot. -#}
previous_pull as (
    select consumed.pull_id
    from {{ source('conformed_ops', 'consumed_pulls') }} as consumed
    inner join {{ source('staging', 'pulls') }} as pulls on consumed.pull_id = pulls.pull_id
    where
        consumed.consumer = '{{ consumer }}' and consumed.disposition = 'processed'
        and pulls.record_count > 0
    order by pulls.committed_at desc, pulls.pull_id desc
    limit 1
),

{#- Empty when staging no longer keeps that pull (it keeps the last three): then every record is
    checked. -#}
previous_batches as materialized (
    select
        batches.batch_no,
        {{ etl_platform.batch_column_names('batches') }} as column_names,
        batches.data -> 'rows' as batch_rows
    from {{ source('staging', 'pull_batches') }} as batches
    inner join previous_pull on batches.pull_id = previous_pull.pull_id
),

previous_records as materialized (
    select
        previous_batches.column_names,
        record_rows.record,
        {{ etl_platform.record_field('previous_batches.column_names', 'record_rows.record', record_key) }} as record_key
    from previous_batches
    cross join lateral jsonb_array_elements(previous_batches.batch_rows) as record_rows (record)
),
{%- endif %}

{{ 'current_records' if compare else 'pull_records' }} as (
    select
        pull_batches.pull_id,
        pull_batches.pull_committed_at,
        pull_batches.batch_no,
        record_rows.row_no,
        pull_batches.record_file,
        pull_batches.column_names,
        record_rows.record
        {%- if compare %},
        {{ etl_platform.record_field('pull_batches.column_names', 'record_rows.record', record_key) }} as record_key
        {%- else %},
        false as is_unchanged
        {%- endif %}
    from pull_batches
    cross join lateral jsonb_array_elements(pull_batches.batch_rows) with ordinality as record_rows (record, row_no)
)
{%- if compare %},

{#- A key found twice in either pull: its records are all checked (which of them counts is the
    history's choice, made again). -#}
repeated_keys as materialized (
    select current_records.record_key
    from current_records
    where current_records.record_key is not null
    group by current_records.record_key
    having count(*) > 1
    union
    select previous_records.record_key
    from previous_records
    where previous_records.record_key is not null
    group by previous_records.record_key
    having count(*) > 1
),

pull_records as (
    select
        current_records.pull_id,
        current_records.pull_committed_at,
        current_records.batch_no,
        current_records.row_no,
        current_records.record_file,
        current_records.column_names,
        current_records.record,
        previous_records.record_key is not null as is_unchanged
    from current_records
    left join previous_records
        on
            current_records.record_key = previous_records.record_key
            and current_records.record = previous_records.record
            and current_records.column_names = previous_records.column_names
            and current_records.record_key not in (select repeated_keys.record_key from repeated_keys)
)
{%- endif %}
{%- endmacro %}

{#- The trimmed text of field `name` of a record given with its column names (null when empty or
    absent). -#}
{% macro record_field(column_names, record, name) -%}
nullif(trim({{ record }} ->> (array_position({{ column_names }}, '{{ name | replace("'", "''") }}') - 1)), '')
{%- endmacro %}

{#- A batch's column names as a text array (decoded once per batch: see pull_batches). -#}
{% macro batch_column_names(batch) -%}
array(select jsonb_array_elements_text({{ batch }}.data -> 'columns'))
{%- endmacro %}

{#- The rows of the unchanged records (is_unchanged above), appended to a validated model's checked
    rows: the key only, typed as the checked rows type it (`keys`: column -> SQL expression), nothing
    failed, nothing held. The history takes their keys as present in the pull (no delete) and
    nothing else; the data-quality results count them as checked and passing (they passed, or were
    held and quarantined, when first seen). `columns`: the model's columns before dq_columns. -#}
{% macro unchanged_records(columns, keys) -%}
union all
select
    {%- for column in columns %}
    {{ keys[column] if column in keys else 'null' }} as {{ column }},
    {%- endfor %}
    pull_records.pull_id,
    pull_records.pull_committed_at,
    pull_records.batch_no,
    pull_records.row_no,
    cast(array[] as text[]) as dq_failed,
    false as dq_held,
    cast(null as jsonb) as failed_record,
    true as is_unchanged
from pull_records
where pull_records.is_unchanged
{%- endmacro %}

{#- The text of column `name` in the current record (null when empty or absent). -#}
{% macro field(name) -%}
{{ etl_platform.record_field('pull_records.column_names', 'pull_records.record', name) }}
{%- endmacro %}

{#- The record as a JSON object (column name -> value as fetched), for the quarantine. -#}
{% macro record_object(relation='pull_records') -%}
(
    select jsonb_object_agg(record_columns.column_name, {{ relation }}.record -> (record_columns.position - 1)::integer)
    from unnest({{ relation }}.column_names) with ordinality as record_columns (column_name, position)
)
{%- endmacro %}

{#- Where each record came from: carried by every validated row. -#}
{% macro record_origin() -%}
pull_records.pull_id,
        pull_records.pull_committed_at,
        pull_records.batch_no,
        pull_records.row_no
{%- endmacro %}

{#- Post-hook of a history model: the pulls it processed are consumed; older unconsumed pulls of a
    snapshot entity are superseded by the newest. Only pulls of this job's snapshot (run_pulls_filter):
    the pulls its validated model read, computed from the same snapshot and consumed_pulls; a pull
    that committed since, even with an earlier committed_at, stays unconsumed for the next run. -#}
{% macro mark_pulls_consumed(source_name, entity, snapshot) -%}
insert into {{ source('conformed_ops', 'consumed_pulls') }}
    (consumer, pull_id, source, entity, disposition, run_id, consumed_at)
select
    '{{ this.identifier }}',
    unconsumed.pull_id,
    unconsumed.source,
    unconsumed.entity,
    case
        when unconsumed.pull_id in (
            select processed.pull_id
            from ({{ etl_platform.pulls_to_process(source_name, entity, this.identifier, snapshot) }}) as processed
        ) then 'processed'
        else 'superseded'
    end,
    {{ etl_platform.run_id_literal() }},
    now()
from ({{ etl_platform.unconsumed_pulls(source_name, entity, this.identifier) }}) as unconsumed
on conflict (consumer, pull_id) do nothing
{%- endmacro %}
