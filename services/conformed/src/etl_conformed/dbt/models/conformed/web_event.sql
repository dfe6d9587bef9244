-- Web behaviour events from the CSV, JSON Lines and XML drops, one row per event_id.

with events as (
    select * from {{ ref('base_web__web_events') }}
),

ranked as (
    select
        events.*,
        row_number() over (partition by event_id order by occurred_at desc nulls last) as recency
    from events
)

select
    event_id,
    occurred_at,
    customer_id,
    session_id,
    lower(trim(event_type)) as event_type,
    product_id,
    page_url,
    user_agent,
    pull_id,
    run_id
from ranked
where recency = 1
