{#-
  The change ledger of an export (docs/macros.md, "Change ledger"): an incremental model whose rows
  are immutable records with ids (xAPI statements), each stamped with the run that created or voided
  it, so that the export job writes only what changed since its last export (etl_semantic's
  Watershed export reads `<prefix>_run_id`).

  The model passes its rows as they should be now (`current`: a CTE name; on an incremental run only
  the rows of the keys in `touched`, a CTE of the key columns of every record loaded since the last
  build, deleted ones included), the columns that identify a record (`key`), the columns whose
  values make up its content (`content`) and the other columns it keeps (`extra`, not hashed: a
  watermark such as `<prefix>_source_loaded_at`). It gets, from ledger_rows:

    - a new row for each current record whose content is not the content of the record's active
      row: id = a UUID of the key, the content hash and the record's version in the ledger (1 + its
      rows there, voided ones included: a record that changes gets a new id, one that changes back
      too, so an id is never reused; the same history gives the same ids whatever the run ids),
      `<prefix>_is_voided` false;
    - the active row of each touched key whose content changed or which is gone (deleted, or out of
      the model's filter), as a voided row under its old id (`<prefix>_is_voided` true): the upsert on
      the id marks it voided in place;
    - and, in both, `<prefix>_row_hash`, `<prefix>_run_id` (this run) and `<prefix>_changed_at` (the
      job's start: the time of a voiding statement, stored so that a rerun writes the same).

  The model is incremental with `incremental_strategy='upsert'` and `unique_key` the id column;
  unchanged records are not written again, so a run without new input writes nothing.

  The new and the voided rows are anti-joins written as NOT EXISTS: as a left join kept where the
  other side is null, the planner estimated one row and joined ledger_versions to it in a nested
  loop (12 s of the Watershed ledger's 20 s after a 1% delta at 1,000,000 orders, bench/semantic).
-#}

{#- A lower-case RFC 4122-shaped UUID (version 5 nibble, variant a) of an md5 of `text_sql`. -#}
{% macro uuid_from_text(text_sql) -%}
{%- set hashed = 'md5(' ~ text_sql ~ ')' -%}
substr({{ hashed }}, 1, 8) || '-' || substr({{ hashed }}, 9, 4) || '-5' || substr({{ hashed }}, 14, 3) || '-a'
|| substr({{ hashed }}, 18, 3) || '-' || substr({{ hashed }}, 21, 12)
{%- endmacro %}

{#- The content hash of a record: md5 of its content columns as text, nulls marked. -#}
{% macro row_hash(columns, alias) -%}
md5(concat_ws('|', {% for column in columns %}coalesce(cast({{ alias }}.{{ column }} as text), '~null~'){% if not loop.last %}, {% endif %}{% endfor %}))
{%- endmacro %}

{#- The newest value of `column` among `relation`'s rows where `where` holds, as a timestamptz
    literal (1900-01-01 on the first build or an empty table): a watermark read once, when dbt
    compiles the model. With the run value ledger_compare_all = 'true' (the semantic job after a change
    of the PII key) 1900-01-01 too: every record is compared again. -#}
{% macro newest_value(relation, column, where='true') -%}
{%- set newest = none -%}
{%- if execute and is_incremental() and etl_platform.run_value('ledger_compare_all', 'false') != 'true' -%}
    {%- set newest = run_query("select max(" ~ column ~ ")::text from " ~ relation ~ " where " ~ where).columns[0].values()[0] -%}
{%- endif -%}
'{{ newest or "1900-01-01 00:00:00+00" }}'::timestamptz
{%- endmacro %}

{% macro ledger_rows(current, key, content, extra=[], id_column='record_id', prefix='record', touched=none) -%}
{%- set run_id = etl_platform.run_id_literal() -%}
{%- set changed_at = etl_platform.run_value_literal('job_started_at', '1970-01-01T00:00:00+00:00') ~ '::timestamptz' -%}
{%- set columns = key + content + extra -%}
{%- set id_parts = [] -%}
{%- for column in key -%}{%- do id_parts.append('ledger_current.' ~ column) -%}{%- endfor -%}
{%- set version_sql = '(coalesce(ledger_versions.ledger_versions, 0) + 1)::text' if is_incremental() else "'1'" -%}
{%- do id_parts.extend(['ledger_current.' ~ prefix ~ '_row_hash', version_sql]) -%}
ledger_current as (
    select
        {%- for column in columns %}
        current_rows.{{ column }},
        {%- endfor %}
        {{ etl_platform.row_hash(key + content, 'current_rows') }} as {{ prefix }}_row_hash
    from {{ current }} as current_rows
),

{%- if is_incremental() %}

ledger_active as (
    select ledger.*
    from {{ this }} as ledger
    where
        not ledger.{{ prefix }}_is_voided
        and ({{ key | join(', ') }}) in (select {{ key | join(', ') }} from {{ touched }})
),

ledger_versions as (
    select
        {%- for column in key %}
        ledger.{{ column }},
        {%- endfor %}
        count(*) as ledger_versions
    from {{ this }} as ledger
    where ({{ key | join(', ') }}) in (select {{ key | join(', ') }} from {{ touched }})
    group by {{ key | join(', ') }}
),
{%- endif %}

ledger_new as (
    select
        {{ etl_platform.uuid_from_text("concat_ws(':', " ~ id_parts | join(', ') ~ ")") }} as {{ id_column }},
        {%- for column in columns %}
        ledger_current.{{ column }},
        {%- endfor %}
        ledger_current.{{ prefix }}_row_hash,
        false as {{ prefix }}_is_voided,
        {{ run_id }} as {{ prefix }}_run_id,
        {{ changed_at }} as {{ prefix }}_changed_at
    from ledger_current
    {%- if is_incremental() %}
    left join ledger_versions
        on
            {%- for column in key %}
            ledger_current.{{ column }} = ledger_versions.{{ column }}{{ ' and' if not loop.last }}
            {%- endfor %}
    where not exists (
        select 1
        from ledger_active
        where
            {%- for column in key %}
            ledger_current.{{ column }} = ledger_active.{{ column }} and
            {%- endfor %}
            ledger_current.{{ prefix }}_row_hash = ledger_active.{{ prefix }}_row_hash
    )
    {%- endif %}
)

{%- if is_incremental() %},

ledger_voided as (
    select
        ledger_active.{{ id_column }},
        {%- for column in columns %}
        ledger_active.{{ column }},
        {%- endfor %}
        ledger_active.{{ prefix }}_row_hash,
        true as {{ prefix }}_is_voided,
        {{ run_id }} as {{ prefix }}_run_id,
        {{ changed_at }} as {{ prefix }}_changed_at
    from ledger_active
    where not exists (
        select 1
        from ledger_current
        where
            {%- for column in key %}
            ledger_active.{{ column }} = ledger_current.{{ column }} and
            {%- endfor %}
            ledger_active.{{ prefix }}_row_hash = ledger_current.{{ prefix }}_row_hash
    )
)
{%- endif %},

ledger as (
    select * from ledger_new
    {%- if is_incremental() %}
    union all
    select * from ledger_voided
    {%- endif %}
)
{%- endmacro %}

{#- Aggregates rebuilt by period (docs/macros.md, "Aggregates by period"): the pre-hook of an
    incremental aggregate (incremental_strategy='upsert', unique_key its grain) that deletes the rows
    of every period in `touched_sql` (a query of one column, the touched periods), so that a period
    left with no rows disappears; the model's query computes only those periods (filter it with
    `column in (select ... from touched)`). Nothing on a full build. The touched periods are the
    domain's to say (the dates of the records changed since the newest source timestamp the aggregate
    holds: etl_platform.newest_value), as the model knows which inputs it reads. -#}
{% macro replace_periods(period_column, touched_sql) -%}
{%- if is_incremental() -%}
delete from {{ this }} where {{ period_column }} in (select touched.touched_period from ({{ touched_sql }}) as touched (touched_period))
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}
