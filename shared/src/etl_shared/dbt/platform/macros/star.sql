{#-
  Star-schema helpers any domain's facts can use (docs/macros.md).

  The version of a history-aware dimension (one row per version, [valid_from, valid_to)) that was
  valid when a fact happened: `versions` describes the dimension as a dict
      {'relation': ref('dim_x'), 'key': natural key column, 'valid_from': ..., 'valid_to': ...,
       'version': the version's number (1 = first)}
  and three macros use it: versions_cte (a CTE of the versions, each knowing how many its key has),
  version_joins (three left joins: the version valid at `at`, the key's first, its last) and
  version_as_of (a column of the matched version). A fact before the key's first version takes the
  first; one after its last version closed (the key was deleted) takes the last; a fact whose key the
  dimension does not know matches nothing (coalesce it with unknown_key()).
-#}

{% macro versions_cte(name, versions, columns, where=none) -%}
{{ name }} as (
    select
        {{ versions['key'] }},
        {{ versions['valid_from'] }},
        {{ versions['valid_to'] }},
        {{ versions['version'] }},
        {%- for column in columns %}
        {{ column }},
        {%- endfor %}
        max({{ versions['version'] }}) over (partition by {{ versions['key'] }}) as {{ name }}_count
    from {{ versions['relation'] }}
    {%- if where %}
    where {{ where }}
    {%- endif %}
)
{%- endmacro %}

{% macro version_joins(name, versions, fact_key, at) -%}
left join {{ name }} as {{ name }}_valid
    on
        {{ fact_key }} = {{ name }}_valid.{{ versions['key'] }}
        and {{ at }} >= {{ name }}_valid.{{ versions['valid_from'] }}
        and ({{ at }} < {{ name }}_valid.{{ versions['valid_to'] }} or {{ name }}_valid.{{ versions['valid_to'] }} is null)
left join {{ name }} as {{ name }}_first
    on {{ fact_key }} = {{ name }}_first.{{ versions['key'] }} and {{ name }}_first.{{ versions['version'] }} = 1
left join {{ name }} as {{ name }}_last
    on
        {{ fact_key }} = {{ name }}_last.{{ versions['key'] }}
        and {{ name }}_last.{{ versions['version'] }} = {{ name }}_last.{{ name }}_count
{%- endmacro %}

{% macro version_as_of(name, versions, column, at) -%}
coalesce(
    {{ name }}_valid.{{ column }},
    case when {{ at }} < {{ name }}_first.{{ versions['valid_from'] }} then {{ name }}_first.{{ column }} end,
    {{ name }}_last.{{ column }}
)
{%- endmacro %}

{#- The unknown member of a dimension: one row, its key unknown_key() (md5('-1'), what every fact
    key coalesces to when the dimension has no row for it), every other column the value given in
    `values` (column -> SQL expression, typed: '-1::bigint', "'Unknown product'", 'null::text').
    Union it to the dimension's known rows. -#}
{% macro unknown_member(key, values) -%}
select
    {{ etl_platform.unknown_key() }} as {{ key }}
    {%- for column, value in values.items() %},
    {{ value }} as {{ column }}
    {%- endfor %}
{%- endmacro %}
