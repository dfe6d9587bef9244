-- Business rule: an order's status only moves forward in its lifecycle
-- (placed -> paid -> shipped -> delivered -> returned; placed or paid -> cancelled), as listed in
-- seeds/order_status_transitions.csv. Returns each version whose status change is not allowed.
-- Severity warn: the history records what the source said; the finding is reported, not hidden.
-- Checks the orders whose history this run wrote.
{{ config(severity='warn') }}

with touched as (
    select distinct order_id
    from {{ ref('sales_order_history') }}
    where {{ etl_platform.loaded_this_run() }}
),

versions as (
    select
        order_id,
        order_status,
        valid_from,
        change_type,
        lag(order_status) over (partition by order_id order by valid_from nulls last) as previous_status
    from {{ ref('sales_order_history') }}
    where change_type <> 'delete' and order_id in (select touched.order_id from touched)
)

select
    versions.order_id,
    versions.previous_status,
    versions.order_status,
    versions.valid_from
from versions
left join {{ ref('order_status_transitions') }} as allowed
    on versions.previous_status = allowed.from_status and versions.order_status = allowed.to_status
where
    versions.previous_status is not null
    and versions.previous_status <> versions.order_status
    and allowed.from_status is null
