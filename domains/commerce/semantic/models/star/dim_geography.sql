-- Geography dimension: one row per ISO 3166-1 country, plus the unknown member ('ZZ').
{{ config(materialized='table', unique_key='geography_key') }}

with countries as (
    select
        country_code,
        min(country_code_alpha3) as country_code_alpha3,
        min(country_name) as country_name
    from {{ source('conformed', 'country_names') }}
    group by country_code
)

select
    {{ etl_platform.surrogate_key(['country_code']) }} as geography_key,
    country_code as geography_country_code,
    country_code_alpha3 as geography_country_alpha3,
    country_name as geography_country_name
from countries
union all
select
    {{ etl_platform.unknown_key() }} as geography_key,
    'ZZ' as geography_country_code,
    'ZZZ' as geography_country_alpha3,
    'Unknown country' as geography_country_name
