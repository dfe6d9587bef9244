{#- A hash surrogate key (no sequences on CockroachDB). The unknown member's key is md5('-1'). -#}
{% macro surrogate_key(columns) -%}
md5(concat_ws('|', {% for column in columns %}coalesce(cast({{ column }} as text), '~null~'){% if not loop.last %}, {% endif %}{% endfor %}))
{%- endmacro %}

{% macro unknown_key() -%}
md5('-1')
{%- endmacro %}
