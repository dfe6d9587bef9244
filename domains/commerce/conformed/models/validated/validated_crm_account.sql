-- CRM accounts (crm.accounts, full pulls from the CRM API) of this run's pull.
{{ etl_platform.validated_config('crm_account') }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }} (the post-hooks write the results the
-- threshold test reads: with both as parents, a failing test stops the entity's history)

with
{{ etl_platform.pull_records('crm', 'accounts', 'crm_account_history', snapshot=true, record_key='account_id') }},

{{ etl_platform.lookup_ctes() }},

-- MATERIALIZED: each typed value is computed once per record; inlined, every rule and output column
-- repeating it would parse the record again (2.7x slower, bench/README.md).
typed as materialized (
    select
        {{ etl_platform.field('account_id') }} as account_id,
        {{ etl_platform.field('name') }} as account_name,
        {{ etl_platform.field('industry') }} as industry,
        country_lookup.country_code,
        {{ etl_platform.field('country') }} as country_raw,
        {{ etl_platform.field('website') }} as website,
        {{ etl_platform.clean_email(etl_platform.field('customer_email')) }} as customer_email,
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
    {{ etl_platform.dq_columns('checked') }}
from checked
{{ etl_platform.unchanged_records(columns, {'account_id': etl_platform.field('account_id')}) }}
