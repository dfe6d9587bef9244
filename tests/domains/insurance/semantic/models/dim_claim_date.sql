-- The calendar of the claims: every day from the first claim date to the last (the business dates
-- actually present, decades back), plus the unknown member.
{{ config(unique_key='claim_date_key') }}
with bounds as (
    select
        min(claim_date) as first_day,
        max(claim_date) as last_day
    from {{ source('conformed', 'ins_claim') }}
    where not is_deleted
),

days as (
    select days.day::date as claim_date_value
    from bounds
    cross join lateral generate_series(bounds.first_day, bounds.last_day, interval '1 day') as days (day)
)

select
    {{ etl_platform.surrogate_key(['claim_date_value']) }} as claim_date_key,
    claim_date_value,
    extract(year from claim_date_value)::integer as claim_date_year,
    extract(month from claim_date_value)::integer as claim_date_month
from days
union all
select
    {{ etl_platform.unknown_key() }} as claim_date_key,
    null::date as claim_date_value,
    null::integer as claim_date_year,
    null::integer as claim_date_month
