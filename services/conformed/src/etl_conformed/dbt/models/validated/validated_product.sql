-- Products (oltp.products, full pulls) of this run's pull: typed, standardised, checked.
{{ config(post_hook=dq_hooks('product')) }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }} (the post-hooks write the results the
-- threshold test reads: with both as parents, a failing test stops the entity's history)

with
{{ pull_records('oltp', 'products', 'product_history', snapshot=true, record_key='product_id') }},

{{ lookup_ctes() }},

-- MATERIALIZED: each typed value is computed once per record; inlined, every rule and output column
-- repeating it would parse the record again (2.7x slower, bench/README.md).
typed as materialized (
    select
        {{ try_cast(field('product_id'), 'bigint') }} as product_id,
        {{ field('sku') }} as sku,
        {{ field('name') }} as product_name,
        {{ field('category') }} as category,
        {{ try_cast(field('unit_price'), 'numeric(12, 2)') }} as unit_price,
        currency_lookup.currency_code,
        coalesce({{ try_cast(field('is_active'), 'boolean') }}, true) as is_active,
        {{ try_cast(field('updated_at'), 'timestamptz') }} as updated_at,
        {{ deleted_flag() }} as is_deleted,
        {{ record_origin() }},
        pull_records.column_names,
        pull_records.record
    from pull_records
    left join currency_lookup on upper({{ field('currency') }}) = currency_lookup.lookup_key
    where not pull_records.is_unchanged
),

checked as (
    select
        typed.*,
        {{ dq_failures([
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
    {{ dq_columns('checked') }}
from checked
{{ unchanged_records(columns, {'product_id': try_cast(field('product_id'), 'bigint')}) }}
