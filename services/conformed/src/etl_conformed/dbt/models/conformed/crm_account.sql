-- CRM account, one row per account_id (the latest update wins); country as ISO 3166 alpha-2.

with accounts as (
    select * from {{ ref('base_crm__accounts') }}
),

country_names as (
    select * from {{ ref('country_names') }}
),

ranked as (
    select
        accounts.*,
        row_number() over (partition by account_id order by updated_at desc nulls last) as recency
    from accounts
)

select
    ranked.account_id,
    trim(ranked.name) as account_name,
    trim(ranked.industry) as industry,
    coalesce(
        case when length(trim(ranked.country)) = 2 then upper(trim(ranked.country)) end,
        country_names.country_code
    ) as country_code,
    ranked.website,
    lower(trim(ranked.customer_email)) as customer_email,
    ranked.created_at,
    ranked.updated_at,
    ranked.pull_id,
    ranked.run_id
from ranked
left join country_names on lower(trim(ranked.country)) = country_names.country_name_lower
where ranked.recency = 1
