-- Calendar dimension: one row per day from var date_start (default 2020-01-01) to var date_end
-- (default: the end of next year), with ISO week and fiscal columns (the fiscal year starts in
-- month var fiscal_year_start_month, default 1; fiscal year N ends in calendar year N), plus the
-- unknown member.
{{ config(materialized='table') }}

with days as (
    select calendar.day::date as date_value
    from generate_series(
        '{{ var("date_start", "2020-01-01") }}'::timestamp,
        {{ var("date_end", "(date_trunc('year', current_date) + interval '2 years' - interval '1 day')") }}::timestamp,
        interval '1 day'
    ) as calendar (day)
),

parts as (
    select
        date_value,
        extract(year from date_value)::integer as calendar_year,
        extract(month from date_value)::integer as calendar_month,
        extract(isodow from date_value)::integer as iso_day_of_week,
        extract(week from date_value)::integer as iso_week,
        extract(isoyear from date_value)::integer as iso_year,
        -- months since the fiscal year started (0..11)
        (extract(month from date_value)::integer - {{ var("fiscal_year_start_month", 1) }} + 12) % 12 as fiscal_month_index
    from days
)

select
    {{ surrogate_key(['date_value']) }} as date_key,
    date_value,
    calendar_year as date_year,
    extract(quarter from date_value)::integer as date_quarter,
    calendar_month as date_month,
    (array['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'])[calendar_month] as date_month_name,
    calendar_year::text || '-' || lpad(calendar_month::text, 2, '0') as date_year_month,
    iso_year as date_iso_year,
    iso_week as date_iso_week,
    iso_day_of_week as date_day_of_week,
    (array['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'])[iso_day_of_week] as date_day_name,
    iso_day_of_week >= 6 as date_is_weekend,
    case
        when {{ var("fiscal_year_start_month", 1) }} = 1 then calendar_year
        when calendar_month >= {{ var("fiscal_year_start_month", 1) }} then calendar_year + 1
        else calendar_year
    end as date_fiscal_year,
    floor(fiscal_month_index::numeric / 3::numeric)::integer + 1 as date_fiscal_quarter,
    fiscal_month_index + 1 as date_fiscal_month
from parts
union all
select
    {{ unknown_key() }} as date_key,
    null::date as date_value,
    null::integer as date_year,
    null::integer as date_quarter,
    null::integer as date_month,
    'Unknown' as date_month_name,
    'Unknown' as date_year_month,
    null::integer as date_iso_year,
    null::integer as date_iso_week,
    null::integer as date_day_of_week,
    'Unknown' as date_day_name,
    null::boolean as date_is_weekend,
    null::integer as date_fiscal_year,
    null::integer as date_fiscal_quarter,
    null::integer as date_fiscal_month
