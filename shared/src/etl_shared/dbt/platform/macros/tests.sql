{#- Fails (severity error) when a record-level rule of `entity` with severity 'error' had more
    failing records in this job than its threshold allows; the job then exits with code 4. -#}
{% test record_rules_within_threshold(model, entity) %}
select
    results.rule_id,
    results.failures,
    results.checked,
    results.threshold
from {{ source('ops', 'dq_results') }} as results
where
    results.job_id = {{ etl_platform.job_id_value() }}
    and results.zone = 'conformed'
    and results.status = 'fail'
    and results.rule_id in (select rules.rule_id from {{ ref('dq_rules') }} as rules where rules.entity = '{{ entity }}')
    -- keep a reference to the model so the test runs after it: {{ model }}
{% endtest %}

{#- Freshness of one source entity, as dbt's own source freshness: a warning when its newest
    committed (or unchanged) pull is older than `warn_after_hours`, an error when older than `error_after_hours`
    (one test, where there were two per entity: the dbt nodes of every run are what an incremental run
    costs). `failures` is the staleness level: 1 warned, 2 failed. An entity that never delivered is
    reported by `etl status`, not here. Backfill pulls do not count. -#}
{% test pull_freshness(model, source_name, entity, warn_after_hours, error_after_hours) %}
{{ config(fail_calc='coalesce(max(staleness), 0)', warn_if='>= 1', error_if='>= 2') }}
select
    '{{ source_name }}.{{ entity }}' as source_entity,
    max(pulls.committed_at) as newest_pull_at,
    case when max(pulls.committed_at) < now() - interval '{{ error_after_hours }} hours' then 2 else 1 end
        as staleness
from {{ model }} as pulls
where
    pulls.source = '{{ source_name }}' and pulls.entity = '{{ entity }}'
    -- an unchanged pull (staging found the source as it was) is a successful check of the source
    and pulls.status in ('committed', 'unchanged')
    and pulls.backfill_from is null  -- a backfill re-extracts the past: it says nothing of freshness
having max(pulls.committed_at) < now() - interval '{{ warn_after_hours }} hours'
{% endtest %}

{#- Volume: the newest committed pull of a snapshot entity holds a record count within `band`
    (a share, 0.5 = +/-50%) of the pull before it. Needs two pulls. -#}
{% test pull_volume_within_band(model, source_name, entity, band) %}
with recent as (
    select
        pulls.record_count,
        row_number() over (order by pulls.committed_at desc nulls first, pulls.pull_id desc nulls first) as recency
    from {{ model }} as pulls
    where
        pulls.source = '{{ source_name }}' and pulls.entity = '{{ entity }}' and pulls.status = 'committed'
        and pulls.mode <> 'keys'  -- a key listing is no pull of records
),

compared as (
    select
        newest.record_count as newest_records,
        previous.record_count as previous_records
    from recent as newest
    inner join recent as previous on newest.recency = 1 and previous.recency = 2
)

select *
from compared
where
    previous_records > 0
    and abs(newest_records::numeric / previous_records::numeric - 1) > {{ band }}
{% endtest %}

{#- A value range (without the dbt_utils package, which cannot be installed offline): fails for
    values below min_value or above max_value (exclusive: the bounds themselves fail too). -#}
{% test value_in_range(model, column_name, min_value=none, max_value=none, exclusive=false) %}
select {{ column_name }}
from {{ model }}
where
    {{ column_name }} is not null
    and (
        false
        {%- if min_value is not none %} or {{ column_name }} {{ "<=" if exclusive else "<" }} {{ min_value }}{% endif %}
        {%- if max_value is not none %} or {{ column_name }} {{ ">=" if exclusive else ">" }} {{ max_value }}{% endif %}
    )
{% endtest %}

{#- The combination of `columns` is unique (a composite business key). -#}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{#- Every foreign key of a fact resolves: fails for each row of `model` where one of the columns of
    `keys` (a mapping column -> dimension model, whose key column has the same name: the star's
    convention) is null or names no row of its dimension. One pass over the fact with a left join
    per dimension (each on its primary key, so no row is repeated), where dbt's not_null and
    relationships tests read the fact once per column and per test. -#}
{% test keys_resolve(model, keys) %}
select
    {%- for column in keys %}
    facts.{{ column }}{{ "," if not loop.last }}
    {%- endfor %}
from {{ model }} as facts
{%- for column, dimension in keys.items() %}
left join {{ ref(dimension) }} as dimension_{{ loop.index }} on facts.{{ column }} = dimension_{{ loop.index }}.{{ column }}
{%- endfor %}
where
    {%- for column in keys %}
    {{ "or " if not loop.first }}dimension_{{ loop.index }}.{{ column }} is null
    {%- endfor %}
{% endtest %}
