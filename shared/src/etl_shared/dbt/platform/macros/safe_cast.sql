{#-
  Casts that give null instead of failing the whole model on one bad value: the value is checked
  against a pattern first, and the record-level rules report (and quarantine) what did not parse.
  The patterns are plain POSIX regular expressions, which PostgreSQL and CockroachDB both support.
-#}

{% macro try_cast(expr, type) -%}
{%- set patterns = {
    'bigint': '^[+-]?[0-9]{1,18}$',
    'integer': '^[+-]?[0-9]{1,9}$',
    'numeric': '^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?$',
    'date': '^[0-9]{4}-[0-9]{2}-[0-9]{2}$',
    'timestamptz': '^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?)? ?(Z|[+-][0-9]{2}(:?[0-9]{2})?)$',
    'timestamp': '^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?)?$',
    'boolean': '^(true|false|t|f|yes|no|y|n|1|0)$',
} -%}
{%- set base = type.split('(')[0] | trim | lower -%}
{%- set sizes = (type.split('(')[1].split(')')[0].split(',') | map('trim') | map('int') | list) if '(' in type else [] -%}
{%- if base in ('char', 'character', 'varchar', 'character varying', 'text') -%}
{#- Text longer than a char(n)/varchar(n) is refused (null), never cut: PostgreSQL's cast would
    truncate it silently. -#}
{%- if sizes -%}
case when char_length({{ expr }}) <= {{ sizes[0] }} then ({{ expr }})::{{ type }} end
{%- else -%}
({{ expr }})::{{ type }}
{%- endif -%}
{%- elif base not in patterns -%}
  {{ exceptions.raise_compiler_error("try_cast: no pattern for type " ~ type) }}
{%- elif base == 'timestamptz' -%}
{#- A timestamp without an offset is taken as UTC, whatever the session's time zone. -#}
case
    when ({{ expr }}) ~* '{{ patterns['timestamptz'] }}' then ({{ expr }})::timestamptz
    when ({{ expr }}) ~* '{{ patterns['timestamp'] }}' then ({{ expr }})::timestamp at time zone 'UTC'
end
{%- elif base == 'numeric' and sizes | length == 2 -%}
{#- numeric(p, s): at most p - s digits before the point and s after it (trailing zeros aside), so
    that the cast neither overflows nor rounds: 9.999 is refused for numeric(15, 2), not made 10.00. -#}
{%- if sizes[0] <= sizes[1] -%}
  {{ exceptions.raise_compiler_error("try_cast: " ~ type ~ " leaves no digit before the point") }}
{%- endif -%}
case when ({{ expr }}) ~ '^[+-]?(0*[0-9]{1,{{ sizes[0] - sizes[1] }}}([.][0-9]{0,{{ sizes[1] }}}0*)?|[.][0-9]{1,{{ sizes[1] }}}0*)$' then ({{ expr }})::{{ type }} end
{%- else -%}
case when ({{ expr }}) ~* '{{ patterns[base] }}' then ({{ expr }})::{{ type }} end
{%- endif -%}
{%- endmacro %}

{#- True when the raw text was given but did not parse (a record-level rule). -#}
{% macro unparsed(raw, typed) -%}
({{ raw }} is not null and {{ typed }} is null)
{%- endmacro %}
