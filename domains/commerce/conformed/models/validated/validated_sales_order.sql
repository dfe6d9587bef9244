-- Orders (oltp.orders) of this run's pulls: typed, standardised, checked (rules in seeds/dq_rules.csv).
{{ etl_platform.validated_config('sales_order') }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }} (the post-hooks write the results the
-- threshold test reads: with both as parents, a failing test stops the entity's history)

with
{{ etl_platform.pull_records('oltp', 'orders', 'sales_order_history') }},

{{ etl_platform.lookup_ctes() }},

-- MATERIALIZED: each typed value is computed once per record; inlined, every rule and output column
-- repeating it would parse the record again (2.7x slower, bench/README.md).
typed as materialized (
    select
        {{ etl_platform.try_cast(etl_platform.field('order_id'), 'bigint') }} as order_id,
        {{ etl_platform.try_cast(etl_platform.field('customer_id'), 'bigint') }} as customer_id,
        {{ etl_platform.try_cast(etl_platform.field('order_date'), 'date') }} as order_date,
        {{ etl_platform.try_cast(etl_platform.field('ordered_at'), 'timestamptz') }} as ordered_at,
        lower({{ etl_platform.field('status') }}) as order_status,
        currency_lookup.currency_code,
        {{ etl_platform.try_cast(etl_platform.field('updated_at'), 'timestamptz') }} as updated_at,
        {{ etl_platform.deleted_flag() }} as is_deleted,
        {{ etl_platform.field('currency') }} as currency_raw,
        {{ etl_platform.record_origin() }},
        pull_records.column_names,
        pull_records.record
    from pull_records
    left join currency_lookup on upper({{ etl_platform.field('currency') }}) = currency_lookup.lookup_key
),

checked as (
    select
        typed.*,
        {{ etl_platform.dq_failures([
            ('sales_order.order_id_valid', 'order_id is not null'),
            ('sales_order.customer_id_valid', 'customer_id is not null'),
            ('sales_order.order_date_valid', 'order_date is not null'),
            ('sales_order.status_accepted',
                "order_status in ('placed', 'paid', 'shipped', 'delivered', 'cancelled', 'returned')"),
            ('sales_order.currency_iso4217', 'currency_code is not null'),
        ]) }} as dq_failed
    from typed
)

select
    order_id,
    customer_id,
    order_date,
    ordered_at,
    order_status,
    currency_code,
    updated_at,
    is_deleted,
    {{ etl_platform.dq_columns('checked') }}
from checked
