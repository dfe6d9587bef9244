-- ECB reference rates: units of each currency per euro on each published date (EUR itself is 1).

with rates as (
    select * from {{ ref('base_fx__ecb_rates') }}
),

euro as (
    select distinct
        rate_date,
        'EUR' as currency_code,
        1::numeric(18, 6) as units_per_eur,
        pull_id,
        run_id
    from rates
)

select
    rate_date,
    currency_code,
    units_per_eur,
    pull_id,
    run_id
from rates
union all
select
    rate_date,
    currency_code,
    units_per_eur,
    pull_id,
    run_id
from euro
