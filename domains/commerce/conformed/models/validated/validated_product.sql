-- Products (oltp.products, full pulls) of this run's pull: typed, standardised, checked.
{{ etl_platform.validated_config('product') }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }} (the post-hooks write the results the
-- threshold test reads: with both as parents, a failing test stops the entity's history)

with
{{ etl_platform.pull_records('oltp', 'products', 'product_history', snapshot=true, record_key='product_id') }},

{{ etl_platform.lookup_ctes() }},

-- MATERIALIZED: each typed value is computed once per record; inlined, every rule and output column
-- repeating it would parse the record again (2.7x slower, bench/README.md).
typed as materialized (
    select
        {{ etl_platform.try_cast(etl_platform.field('product_id'), 'bigint') }} as product_id,
        {{ etl_platform.field('sku') }} as sku,
        {{ etl_platform.field('name') }} as product_name,
        {{ etl_platform.field('category') }} as category,
        {{ etl_platform.try_cast(etl_platform.field('unit_price'), 'numeric(12, 2)') }} as unit_price,
        currency_lookup.currency_code,
        coalesce({{ etl_platform.try_cast(etl_platform.field('is_active'), 'boolean') }}, true) as is_active,
        {{ etl_platform.try_cast(etl_platform.field('updated_at'), 'timestamptz') }} as updated_at,
        {{ etl_platform.deleted_flag() }} as is_deleted,
        {{ etl_platform.record_origin() }},
        pull_records.column_names,
        pull_records.record
    from pull_records
    left join currency_lookup on upper({{ etl_platform.field('currency') }}) = currency_lookup.lookup_key
    where not pull_records.is_unchanged
),

checked as (
    select
        typed.*,
        {{ etl_platform.dq_failures([
            ('product.product_id_valid', 'product_id is not null'),
            ('product.unit_price_valid', 'unit_price >= 0'),
            ('product.currency_iso4217', 'currency_code is not null'),
        ]) }} as dq_failed
    from typed
)

{%- set columns = [
    'product_id',
    'sku',
    'product_name',
    'category',
    'unit_price',
    'currency_code',
    'is_active',
    'updated_at',
    'is_deleted',
] %}

select
    {{ columns | join(',\n    ') }},
    {{ etl_platform.dq_columns('checked') }}
from checked
{{ etl_platform.unchanged_records(columns, {'product_id': etl_platform.try_cast(etl_platform.field('product_id'), 'bigint')}) }}
