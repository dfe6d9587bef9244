{#-
  Personal data (columns marked `meta: {pii: true}` in the conformed contracts: emails, phones,
  names, addresses) is masked in every semantic table and export unless the model opts in with
  `config(meta={'pii_opt_in': ['column', ...]})`:
    pii_hash(expr, column)    a keyed hash: 'pii_' + 16 hex digits of md5(key || ':' || value), the same
                              value gives the same token (joins and counts still work), the key comes
                              from the secret ETL_PII_KEY (kept in ops.pii_keys, never in compiled SQL);
    pii_redact(expr, column)  partial redaction: the first character and '***'.
  md5 with a secret prefix is a pseudonymisation, not an HMAC: PostgreSQL and CockroachDB share no
  HMAC function. The key table is readable by the jobs' roles only, not by Qlik.
-#}

{% macro pii_opted_in(column) -%}
{#- (config.get is undefined when sqlfluff renders the models: nothing is opted in then) -#}
{%- set meta = (config.get('meta') or {}) if config.get is defined else {} -%}
{{ return(column in meta.get('pii_opt_in', [])) }}
{%- endmacro %}

{% macro pii_hash(expr, column) -%}
{%- if etl_platform.pii_opted_in(column) -%}
{{ expr }}
{%- else -%}
case when {{ expr }} is not null then 'pii_' || substr(md5(
    (select pii_keys.key_value from {{ source('ops', 'pii_keys') }} as pii_keys where pii_keys.key_name = 'semantic')
    || ':' || lower(trim(cast({{ expr }} as text)))
), 1, 16) end
{%- endif -%}
{%- endmacro %}

{% macro pii_redact(expr, column) -%}
{%- if etl_platform.pii_opted_in(column) -%}
{{ expr }}
{%- else -%}
case when {{ expr }} is not null then substr(trim(cast({{ expr }} as text)), 1, 1) || '***' end
{%- endif -%}
{%- endmacro %}
