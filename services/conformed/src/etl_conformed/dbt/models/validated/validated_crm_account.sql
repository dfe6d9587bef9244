-- CRM accounts (crm.accounts, full pulls from the CRM API) of this run's pull.
{{ config(post_hook=dq_hooks('crm_account')) }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }} (the post-hooks write the results the
-- threshold test reads: with both as parents, a failing test stops the entity's history)

with
{{ pull_records('crm', 'accounts', 'crm_account_history', snapshot=true, record_key='account_id') }},

{{ lookup_ctes() }},

-- MATERIALIZED: each typed value is computed once per record; inlined, every rule and output column
-- repeating it would parse the record again (2.7x slower, bench/README.md).
typed as materialized (
    select
        {{ field('account_id') }} as account_id,
        {{ field('name') }} as account_name,
        {{ field('industry') }} as industry,
        country_lookup.country_code,
        {{ field('country') }} as country_raw,
        {{ field('website') }} as website,
        {{ clean_email(field('customer_email')) }} as customer_email,
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
            ('crm_account.account_id_present', 'account_id is not null'),
            ('crm_account.country_known', 'country_raw is null or country_code is not null'),
        ]) }} as dq_failed
    from typed
)

{%- set columns = [
    'account_id',
    'account_name',
    'industry',
    'country_code',
    'website',
    'customer_email',
    'created_at',
    'updated_at',
    'is_deleted',
] %}

select
    {{ columns | join(',\n    ') }},
    {{ dq_columns('checked') }}
from checked
{{ unchanged_records(columns, {'account_id': field('account_id')}) }}
