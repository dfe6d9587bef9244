-- CRM contacts (crm.contacts, full pulls from the CRM API) of this run's pull.
{{ etl_platform.validated_config('crm_contact') }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }} (the post-hooks write the results the
-- threshold test reads: with both as parents, a failing test stops the entity's history)

with
{{ etl_platform.pull_records('crm', 'contacts', 'crm_contact_history', snapshot=true, record_key='contact_id') }},

-- MATERIALIZED: each typed value is computed once per record; inlined, every rule and output column
-- repeating it would parse the record again (2.7x slower, bench/README.md).
typed as materialized (
    select
        {{ etl_platform.field('contact_id') }} as contact_id,
        {{ etl_platform.field('account_id') }} as account_id,
        {{ etl_platform.clean_email(etl_platform.field('email')) }} as email,
        {{ etl_platform.field('first_name') }} as first_name,
        {{ etl_platform.field('last_name') }} as last_name,
        {{ etl_platform.field('phone') }} as phone,
        {{ etl_platform.field('title') }} as title,
        {{ etl_platform.try_cast(etl_platform.field('updated_at'), 'timestamptz') }} as updated_at,
        {{ etl_platform.deleted_flag() }} as is_deleted,
        {{ etl_platform.record_origin() }},
        pull_records.column_names,
        pull_records.record
    from pull_records
    where not pull_records.is_unchanged
),

checked as (
    select
        typed.*,
        {{ etl_platform.dq_failures([
            ('crm_contact.contact_id_present', 'contact_id is not null'),
            ('crm_contact.email_valid', 'email is not null'),
        ]) }} as dq_failed
    from typed
)

{%- set columns = [
    'contact_id',
    'account_id',
    'email',
    'first_name',
    'last_name',
    'phone',
    'title',
    'updated_at',
    'is_deleted',
] %}

select
    {{ columns | join(',\n    ') }},
    {{ etl_platform.dq_columns('checked') }}
from checked
{{ etl_platform.unchanged_records(columns, {'contact_id': etl_platform.field('contact_id')}) }}
