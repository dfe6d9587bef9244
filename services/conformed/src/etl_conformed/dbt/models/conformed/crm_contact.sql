-- CRM contact, one row per contact_id (the latest update wins); trimmed lower-case email.

with contacts as (
    select * from {{ ref('base_crm__contacts') }}
),

ranked as (
    select
        contacts.*,
        row_number() over (partition by contact_id order by updated_at desc nulls last) as recency
    from contacts
)

select
    contact_id,
    account_id,
    lower(trim(email)) as email,
    trim(first_name) as first_name,
    trim(last_name) as last_name,
    phone,
    title,
    updated_at,
    pull_id,
    run_id
from ranked
where recency = 1
