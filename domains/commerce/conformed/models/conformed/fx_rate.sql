-- Daily FX rates: units of each currency per euro for every calendar day from the first published
-- rate to today. Business rule: a day without a published rate (weekend, TARGET holiday, or today
-- before publication) carries forward the last rate published before it; published_rate_date says
-- which one, is_carried_forward whether it was carried. EUR is 1 on every day. A withdrawn currency
-- (seeds/currency_codes.csv, e.g. HRK since the euro) is carried no further than its last day.
-- Built by every run (meta etl_every_run), new pulls or not: it carries the last published rate
-- forward to today.
{{ config(
    materialized='table',
    unique_key=['currency_code', 'rate_date'],
    meta={'etl_every_run': true},
) }}

{#- fx_rate_history holds every rate since 1999 (220,000 on the benchmark): it is read twice, once
    for the bounds of each currency's calendar and once for the rates inside them, rather than
    gathered once into a CTE (which PostgreSQL would write to disk) and hashed whole. -#}
with current_rates as (
    select
        rate_date,
        currency_code,
        units_per_eur
    from {{ ref('fx_rate_history') }}
    where is_current and not is_deleted and currency_code <> 'EUR'
),

{# The calendar starts at the first order (or the first published rate when there is none): rates
    are only ever looked up for order dates, and the ECB history goes back to 1999. The rate carried
    into the first day is the last one published before it. The first order is read from the order
    history (by its order_date index), not from sales_order: through sales_order's tests, the rates
    would wait for the customers (relationships), and the order lines for the rates. #}
first_day as (
    select min(order_date) as rate_date
    from {{ ref('sales_order_history') }}
),

start_dates as (
    select
        current_rates.currency_code,
        coalesce(
            max(case when current_rates.rate_date <= first_day.rate_date then current_rates.rate_date end),
            min(current_rates.rate_date)
        ) as first_date,
        max(current_rates.rate_date) as last_published
    from current_rates
    cross join first_day
    group by current_rates.currency_code
),

last_day as (
    select greatest(max(last_published), {{ var('fx_last_day', 'current_date') }}) as rate_date
    from start_dates
),

currencies as (
    select
        start_dates.currency_code,
        start_dates.first_date,
        coalesce(codes.withdrawn_on - 1, last_day.rate_date) as last_date
    from start_dates
    cross join last_day
    left join {{ ref('currency_codes') }} as codes on start_dates.currency_code = codes.currency_code
),

{# The rates inside the calendars (the second read). #}
published as (
    select
        rates.rate_date,
        rates.currency_code,
        rates.units_per_eur
    from {{ ref('fx_rate_history') }} as rates
    inner join currencies on rates.currency_code = currencies.currency_code
    where
        rates.is_current and not rates.is_deleted
        and rates.rate_date >= currencies.first_date
),

days as (
    select
        currencies.currency_code,
        calendar.day::date as rate_date
    from currencies
    cross join lateral generate_series(
        currencies.first_date::timestamp, currencies.last_date::timestamp, interval '1 day'
    ) as calendar (day)
),

joined as (
    select
        days.rate_date,
        days.currency_code,
        published.units_per_eur,
        published.rate_date as published_rate_date,
        count(published.units_per_eur) over (
            partition by days.currency_code order by days.rate_date nulls last rows unbounded preceding
        ) as rate_group
    from days
    left join published
        on days.currency_code = published.currency_code and days.rate_date = published.rate_date
),

filled as (
    select
        rate_date,
        currency_code,
        first_value(units_per_eur) over by_group as units_per_eur,
        first_value(published_rate_date) over by_group as published_rate_date
    from joined
    window by_group as (partition by currency_code, rate_group order by rate_date nulls last)
),

euro as (
    select distinct
        rate_date,
        'EUR' as currency_code,
        1::numeric(18, 6) as units_per_eur,
        rate_date as published_rate_date
    from filled
)

select
    rate_date,
    currency_code,
    units_per_eur,
    published_rate_date,
    published_rate_date <> rate_date as is_carried_forward
from filled
union all
select
    rate_date,
    currency_code,
    units_per_eur,
    published_rate_date,
    false as is_carried_forward
from euro
