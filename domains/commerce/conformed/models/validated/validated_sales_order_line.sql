-- Order lines (oltp.order_lines, incremental pulls) of this run's pulls: typed and checked.
{{ etl_platform.validated_config('sales_order_line') }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }} (the post-hooks write the results the
-- threshold test reads: with both as parents, a failing test stops the entity's history)

with
{{ etl_platform.pull_records('oltp', 'order_lines', 'sales_order_line_history') }},

-- MATERIALIZED: each typed value is computed once per record; inlined, every rule and output column
-- repeating it would parse the record again (2.7x slower, bench/README.md).
typed as materialized (
    select
        {{ etl_platform.try_cast(etl_platform.field('order_id'), 'bigint') }} as order_id,
        {{ etl_platform.try_cast(etl_platform.field('line_number'), 'integer') }} as line_number,
        {{ etl_platform.try_cast(etl_platform.field('product_id'), 'bigint') }} as product_id,
        {{ etl_platform.try_cast(etl_platform.field('quantity'), 'integer') }} as quantity,
        {{ etl_platform.try_cast(etl_platform.field('unit_price'), 'numeric(12, 2)') }} as unit_price,
        coalesce({{ etl_platform.try_cast(etl_platform.field('discount_pct'), 'numeric(5, 2)') }}, 0) as discount_pct,
        {{ etl_platform.field('discount_pct') }} as discount_pct_raw,
        {{ etl_platform.try_cast(etl_platform.field('updated_at'), 'timestamptz') }} as updated_at,
        {{ etl_platform.deleted_flag() }} as is_deleted,
        {{ etl_platform.record_origin() }},
        pull_records.column_names,
        pull_records.record
    from pull_records
),

checked as (
    select
        typed.*,
        {{ etl_platform.dq_failures([
            ('sales_order_line.key_valid', 'order_id is not null and line_number is not null'),
            ('sales_order_line.product_id_valid', 'product_id is not null'),
            ('sales_order_line.quantity_positive', 'quantity > 0'),
            ('sales_order_line.unit_price_valid', 'unit_price >= 0'),
            ('sales_order_line.discount_in_range',
                "(discount_pct_raw is null or discount_pct_raw ~ '^[+-]?[0-9]{1,3}([.][0-9]+)?$')"
                ~ ' and discount_pct between 0 and 100'),
        ]) }} as dq_failed
    from typed
)

select
    order_id,
    line_number,
    product_id,
    quantity,
    unit_price,
    discount_pct,
    updated_at,
    is_deleted,
    {{ etl_platform.dq_columns('checked') }}
from checked
