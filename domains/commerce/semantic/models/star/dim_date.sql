-- Calendar dimension: one row per day, with ISO week and fiscal columns (the fiscal year starts in
-- month var fiscal_year_start_month, default 1; fiscal year N ends in calendar year N), plus the
-- unknown member. It spans the business dates present: from 1 January of the year of the earliest
-- order date (or of this year) to 31 December of the later of next year and the year of the latest
-- order date. Vars calendar_start and calendar_end (ETL_CALENDAR_START, ETL_CALENDAR_END) fix either
-- end instead; a fact dated outside the calendar resolves to the unknown member.
{{ config(materialized='table', unique_key='date_key') }}

{%- set calendar_start = var('calendar_start', none) %}
{%- set calendar_end = var('calendar_end', none) %}
{#- coalesce: least() and greatest() with a null (no order yet) differ between PostgreSQL and others -#}
{%- set earliest = "date_trunc('year', least(coalesce(order_dates.first_date, current_date), current_date))::date" %}
{%- set latest = "(date_trunc('year', greatest(coalesce(order_dates.last_date, current_date), current_date + interval '1 year'))"
    ~ " + interval '1 year' - interval '1 day')::date" %}

with order_dates as (
    select
        min(sales_order.order_date) as first_date,
        max(sales_order.order_date) as last_date
    from {{ source('conformed', 'sales_order') }} as sales_order
),

bounds as (
    select
        {{ "date '" ~ calendar_start ~ "'" if calendar_start else earliest }} as first_day,
        {{ "date '" ~ calendar_end ~ "'" if calendar_end else latest }} as last_day
    from order_dates
),

days as (
    select calendar.day::date as date_value
    from bounds
    cross join lateral generate_series(
        bounds.first_day::timestamp, bounds.last_day::timestamp, interval '1 day'
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
    {{ etl_platform.surrogate_key(['date_value']) }} as date_key,
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
    {{ etl_platform.unknown_key() }} as date_key,
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
