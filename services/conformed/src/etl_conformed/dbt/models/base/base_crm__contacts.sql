-- One row per record of the newest committed pull of crm.contacts, typed; no joins, no rules.

with
{{ latest_pull_records('crm', 'contacts') }},

renamed as (
    select
        {{ field('contact_id') }} as contact_id,
        {{ field('account_id') }} as account_id,
        {{ field('email') }} as email,
        {{ field('first_name') }} as first_name,
        {{ field('last_name') }} as last_name,
        {{ field('phone') }} as phone,
        {{ field('title') }} as title,
        {{ field('updated_at') }}::timestamptz as updated_at,
        {{ lineage_columns() }}
    from pull_records
)

select * from renamed
