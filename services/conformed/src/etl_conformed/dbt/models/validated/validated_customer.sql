-- Customers (oltp.customers, full pulls) of this run's pull: typed, standardised (trimmed lower-case
-- email, ISO 3166 alpha-2 country, UTC timestamps) and checked (rules in seeds/dq_rules.csv).
{{ config(post_hook=dq_hooks('customer')) }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }} (the post-hooks write the results the
-- threshold test reads: with both as parents, a failing test stops the entity's history)

with
{{ pull_records('oltp', 'customers', 'customer_history', snapshot=true, record_key='customer_id') }},

{{ lookup_ctes() }},

-- MATERIALIZED: each typed value is computed once per record; inlined, every rule and output column
-- repeating it would parse the record again (2.7x slower, bench/README.md).
typed as materialized (
    select
        {{ try_cast(field('customer_id'), 'bigint') }} as customer_id,
        {{ clean_email(field('email')) }} as email,
        {{ field('first_name') }} as first_name,
        {{ field('last_name') }} as last_name,
        {{ field('phone') }} as phone,
        country_lookup.country_code,
        {{ try_cast(field('created_at'), 'timestamptz') }} as created_at,
        {{ try_cast(field('updated_at'), 'timestamptz') }} as updated_at,
        {{ deleted_flag() }} as is_deleted,
        {{ record_origin() }},
        pull_records.column_names,
        pull_records.record
    from pull_records
    left join country_lookup on upper({{ field('country') }}) = country_lookup.lookup_key
    where not pull_records.is_unchanged
),

checked as (
    select
        typed.*,
        {{ dq_failures([
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
    {{ dq_columns('checked') }}
from checked
{{ unchanged_records(columns, {'customer_id': try_cast(field('customer_id'), 'bigint')}) }}
