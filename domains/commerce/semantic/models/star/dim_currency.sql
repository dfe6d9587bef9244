-- Currency dimension: every ISO 4217 code, current and historic, plus the unknown member.
{{ config(materialized='table', unique_key='currency_key') }}

select
    {{ etl_platform.surrogate_key(['currency_code']) }} as currency_key,
    currency_code,
    currency_name,
    code_status as currency_status
from {{ source('conformed', 'currency_codes') }}
union all
select
    {{ etl_platform.unknown_key() }} as currency_key,
    'XXX' as currency_code,
    'Unknown currency' as currency_name,
    'unknown' as currency_status
