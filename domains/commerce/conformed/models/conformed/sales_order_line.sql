-- Current state of each order line, with its amounts. Business rules:
--   net_amount = quantity x unit_price less the line discount (a percentage), rounded to cents, in
--   the order's currency;
--   net_amount_reporting = net_amount converted to the reporting currency (var reporting_currency,
--   default USD) at the daily rate of the order date (fx_rate: weekends and holidays carry the last
--   published rate forward); null while the order or the rate is unknown.
-- Incremental: lines whose history changed since the last run. The rates are joined as the table
-- itself, by its (currency_code, rate_date) index: as a CTE read twice, PostgreSQL materialised them,
-- and a plan from stale statistics (one changed line expected) scanned all 35,000 rates per line.
{{ etl_platform.current_config(['order_id', 'line_number']) }}

with lines as (
    {{ etl_platform.current_from_history(
        ref('sales_order_line_history'),
        ['order_id', 'line_number'],
        ['product_id', 'quantity', 'unit_price', 'discount_pct'],
    ) | indent(4) }}
),

{# The current version of each order, from the history: sales_order holds the same rows, but a
    model that reads it waits for its tests, which wait for the customers (relationships). #}
orders as (
    select
        order_id,
        order_date,
        currency_code
    from {{ ref('sales_order_history') }}
    where is_current
),

amounts as (
    select
        lines.*,
        orders.currency_code,
        orders.order_date,
        round(
            lines.quantity::numeric * lines.unit_price * (1::numeric - lines.discount_pct / 100::numeric), 2
        ) as net_amount
    from lines
    left join orders on lines.order_id = orders.order_id
)

select
    amounts.order_id,
    amounts.line_number,
    amounts.product_id,
    amounts.quantity,
    amounts.unit_price,
    amounts.discount_pct,
    amounts.net_amount,
    amounts.currency_code,
    '{{ var("reporting_currency", "USD") }}' as reporting_currency,
    round(
        amounts.net_amount * reporting_rate.units_per_eur / order_rate.units_per_eur::numeric, 2
    ) as net_amount_reporting,
    amounts.is_deleted,
    amounts.last_change_type,
    amounts.version_valid_from,
    amounts.version_id,
    amounts.pull_id,
    amounts.run_id,
    amounts.loaded_at
from amounts
left join {{ ref('fx_rate') }} as order_rate
    on amounts.currency_code = order_rate.currency_code and amounts.order_date = order_rate.rate_date
left join {{ ref('fx_rate') }} as reporting_rate
    on
        amounts.order_date = reporting_rate.rate_date
        and reporting_rate.currency_code = '{{ var("reporting_currency", "USD") }}'
