-- CRM opportunity, one row per opportunity_id (the latest update wins).

with opportunities as (
    select * from {{ ref('base_crm__opportunities') }}
),

ranked as (
    select
        opportunities.*,
        row_number() over (partition by opportunity_id order by updated_at desc nulls last) as recency
    from opportunities
)

select
    opportunity_id,
    account_id,
    trim(name) as opportunity_name,
    lower(trim(stage)) as stage,
    amount,
    upper(trim(currency)) as currency_code,
    close_date,
    updated_at,
    pull_id,
    run_id
from ranked
where recency = 1
