-- Customers (oltp.customers, full pulls) of this run's pull: typed, standardised (trimmed lower-case
-- email, ISO 3166 alpha-2 country, UTC timestamps) and checked (rules in seeds/dq_rules.csv).
{{ etl_platform.validated_config('customer') }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }} (the post-hooks write the results the
-- threshold test reads: with both as parents, a failing test stops the entity's history)

with
{{ etl_platform.pull_records('oltp', 'customers', 'customer_history', snapshot=true, record_key='customer_id') }},

{{ etl_platform.lookup_ctes() }},

-- MATERIALIZED: each typed value is computed once per record; inlined, every rule and output column
-- repeating it would parse the record again (2.7x slower, bench/README.md).
typed as materialized (
    select
        {{ etl_platform.try_cast(etl_platform.field('customer_id'), 'bigint') }} as customer_id,
        {{ etl_platform.clean_email(etl_platform.field('email')) }} as email,
        {{ etl_platform.field('first_name') }} as first_name,
        {{ etl_platform.field('last_name') }} as last_name,
        {{ etl_platform.field('phone') }} as phone,
        country_lookup.country_code,
        {{ etl_platform.try_cast(etl_platform.field('created_at'), 'timestamptz') }} as created_at,
        {{ etl_platform.try_cast(etl_platform.field('updated_at'), 'timestamptz') }} as updated_at,
        {{ etl_platform.deleted_flag() }} as is_deleted,
        {{ etl_platform.record_origin() }},
        pull_records.column_names,
        pull_records.record
    from pull_records
    left join country_lookup on upper({{ etl_platform.field('country') }}) = country_lookup.lookup_key
    where not pull_records.is_unchanged
),

checked as (
    select
        typed.*,
        {{ etl_platform.dq_failures([
            ('customer.customer_id_valid', 'customer_id is not null'),
            ('customer.updated_at_valid', 'updated_at is not null'),
            ('customer.email_valid', 'email is not null'),
            ('customer.country_known', 'country_code is not null'),
        ]) }} as dq_failed
    from typed
)

{%- set columns = [
    'customer_id',
    'email',
    'first_name',
    'last_name',
    'phone',
    'country_code',
    'created_at',
    'updated_at',
    'is_deleted',
] %}

select
    {{ columns | join(',\n    ') }},
    {{ etl_platform.dq_columns('checked') }}
from checked
{{ etl_platform.unchanged_records(columns, {'customer_id': etl_platform.try_cast(etl_platform.field('customer_id'), 'bigint')}) }}
