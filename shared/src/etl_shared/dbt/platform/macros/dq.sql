{#-
  Record-level data-quality rules.

  Every rule has an id, a severity, a threshold and a description in the seed dq_rules. A validated
  model names the condition each record must meet (dq_failures) and gets:
    dq_failed      the ids of the rules the record fails;
    dq_held        true when one of them has severity 'error': the record is quarantined and does
                   not go on to the history (a 'warn' failure is quarantined as a note, and goes on);
    failed_record  the record as fetched (JSON object), kept only for failing records.
  Its post-hooks (dq_post_hooks) copy the failures into conformed.quarantine and write one row per
  rule into ops.dq_results: records checked, records failing, status. A rule fails when its share
  of failing records is above its threshold; the test record_rules_within_threshold then fails the
  job with the data-quality exit code (4) and stops the entity's history from being written.
-#}

{% macro dq_failures(rules) -%}
array_remove(array[
    {%- for rule_id, condition in rules %}
        case when not coalesce(({{ condition }}), false) then '{{ rule_id }}' end{{ "," if not loop.last }}
    {%- endfor %}
    ]::text[], null)
{%- endmacro %}

{#- The columns every validated model ends with: where the record came from, the rules it failed,
    whether it is held, the record as fetched for the quarantine, and is_unchanged (false: these
    records were checked; see unchanged_records). `checked` is the CTE holding
    them (dq_failed, column_names, record and the origin columns). -#}
{% macro dq_columns(checked) -%}
{{ checked }}.pull_id,
    {{ checked }}.pull_committed_at,
    {{ checked }}.batch_no,
    {{ checked }}.row_no,
    {{ checked }}.dq_failed,
    cardinality({{ checked }}.dq_failed) > 0 and exists (
        select 1
        from {{ ref('dq_rules') }} as rules
        where rules.severity = 'error' and rules.rule_id = any({{ checked }}.dq_failed)
    ) as dq_held,
    case when cardinality({{ checked }}.dq_failed) > 0 then {{ etl_platform.record_object(checked) }} end as failed_record,
    false as is_unchanged
{%- endmacro %}

{#- The config of a validated model (a table rebuilt every run): its primary key is the record's
    place in staging, pull_id, batch_no and row_no (a model that makes several rows of one record
    numbers them apart in row_no), its post-hooks record the data-quality results, and only the job
    reads it, so PostgreSQL may empty it with TRUNCATE (meta etl_replace, etl_replace_rows). -#}
{% macro validated_config(entity) -%}
{{ config(unique_key=['pull_id', 'batch_no', 'row_no'], post_hook=etl_platform.dq_hooks(entity), meta={'etl_replace': 'truncate'}) }}
{%- endmacro %}

{#- The post-hooks of a validated model, as templates: ref() and source() give the right relations
    only when the hook is rendered at run time, not when config() is parsed. -#}
{% macro dq_hooks(entity) -%}
{{ return([
    "{{ etl_platform.dq_post_hooks('" ~ entity ~ "')[0] }}",
    "{{ etl_platform.dq_post_hooks('" ~ entity ~ "')[1] }}",
]) }}
{%- endmacro %}

{% macro dq_post_hooks(entity) -%}
{%- set quarantine -%}
insert into {{ source('conformed_ops', 'quarantine') }}
    (run_id, rule_id, severity, entity, pull_id, batch_no, row_no, record, reason, job_id, quarantined_at)
select
    {{ etl_platform.run_id_literal() }},
    rules.rule_id,
    rules.severity,
    '{{ entity }}',
    validated.pull_id,
    validated.batch_no,
    validated.row_no,
    validated.failed_record,
    rules.description,
    {{ etl_platform.job_id_value() }},
    now()
from {{ this }} as validated
cross join lateral unnest(validated.dq_failed) as failed (rule_id)
inner join {{ ref('dq_rules') }} as rules on failed.rule_id = rules.rule_id
where cardinality(validated.dq_failed) > 0
on conflict (run_id, rule_id, pull_id, batch_no, row_no) do nothing
{%- endset -%}
{%- set results -%}
insert into ops.dq_results
    (job_id, rule_id, run_id, zone, severity, status, failures, checked, threshold, message, recorded_at)
select
    {{ etl_platform.job_id_value() }},
    rules.rule_id,
    {{ etl_platform.run_id_literal() }},
    'conformed',
    rules.severity,
    case
        when coalesce(failures.failing, 0) = 0 then 'pass'
        when rules.severity = 'error'
            and coalesce(failures.failing, 0)::numeric > rules.threshold::numeric * checked.total::numeric then 'fail'
        else 'warn'
    end,
    coalesce(failures.failing, 0),
    checked.total,
    rules.threshold,
    rules.description,
    now()
from {{ ref('dq_rules') }} as rules
cross join (select count(*) as total from {{ this }}) as checked
left join (
    select
        failed.rule_id,
        count(*) as failing
    from {{ this }} as validated
    cross join lateral unnest(validated.dq_failed) as failed (rule_id)
    where cardinality(validated.dq_failed) > 0
    group by failed.rule_id
) as failures on rules.rule_id = failures.rule_id
where rules.entity = '{{ entity }}'
on conflict (job_id, rule_id) do update
set
    status = excluded.status,
    failures = excluded.failures,
    checked = excluded.checked,
    threshold = excluded.threshold,
    recorded_at = excluded.recorded_at
{%- endset -%}
{{ return([quarantine, results]) }}
{%- endmacro %}

{#- The job's id (set by the runner, see run_values.sql), or a fixed id for a manual dbt run. -#}
{% macro job_id_value() -%}
{{ etl_platform.run_value_literal('job_id', '00000000-0000-0000-0000-000000000000') }}::uuid
{%- endmacro %}

{#- Standardisation helpers shared by the validated models. -#}

{#- Lookup CTEs for the standardisation joins. A validated model computes the raw text first, then
    joins these on an upper-case key: a join is computed once per record, where a correlated lookup
    would re-extract the record's JSON for every row of the seed.
    country_lookup: an ISO 3166-1 alpha-2 or alpha-3 code, or an English name -> alpha-2 code;
    currency_lookup: an ISO 4217 code (current or historic) -> itself. -#}
{% macro lookup_ctes() -%}
country_lookup as (
    select
        lookup_key,
        min(country_code) as country_code
    from (
        select
            upper(country_code) as lookup_key,
            country_code
        from {{ ref('country_names') }}
        union all
        select
            upper(country_code_alpha3) as lookup_key,
            country_code
        from {{ ref('country_names') }}
        union all
        select
            upper(country_name_lower) as lookup_key,
            country_code
        from {{ ref('country_names') }}
    ) as keys
    group by lookup_key
),

currency_lookup as (
    select
        upper(currency_code) as lookup_key,
        currency_code
    from {{ ref('currency_codes') }}
)
{%- endmacro %}

{#- A trimmed, lower-case email, or null when it is not shaped like one. -#}
{% macro clean_email(raw) -%}
case when lower({{ raw }}) ~ '^[^@ ]+@[^@ ]+[.][^@ ]+$' then lower({{ raw }}) end
{%- endmacro %}

{#- The record's delete flag (is_deleted or deleted), false when the source has none. -#}
{% macro deleted_flag() -%}
coalesce({{ etl_platform.try_cast(etl_platform.field('is_deleted'), 'boolean') }}, {{ etl_platform.try_cast(etl_platform.field('deleted'), 'boolean') }}, false)
{%- endmacro %}
