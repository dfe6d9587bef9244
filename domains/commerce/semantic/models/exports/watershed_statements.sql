-- The statements of the Watershed upload (docs/data-model.md, "Watershed upload"): one xAPI
-- statement per web behaviour event and per order of the retention window. The statement id is a
-- UUID derived from the source and its id, so a re-upload is idempotent in the LRS. The actor is a
-- pseudonymous account (keyed hash of the customer id, or of the session for anonymous visitors).
-- Verbs and activity types per event type: seeds/xapi_verbs.csv. Written to files by the job
-- (meta etl_watershed_export: watershed_<run id>.csv, .template.json and .xapi.json).
{{ config(materialized='table', unique_key='ws_statement_id', meta={'etl_watershed_export': 'watershed'}) }}

with verbs as (
    select * from {{ ref('xapi_verbs') }}
),

events as (
    select
        'web_event' as source_name,
        events.event_id as source_id,
        events.occurred_at,
        events.customer_id,
        events.session_id,
        events.event_type,
        case
            when events.page_url ~ '^[a-z][a-z0-9+.-]*:' then events.page_url
            when events.product_id is not null
                then '{{ var("watershed_home_page", "https://shop.example.com") }}/products/' || events.product_id::text
            else '{{ var("watershed_home_page", "https://shop.example.com") }}/' || coalesce(events.page_url, '')
        end as object_id,
        case
            when events.product_id is not null then 'Product ' || events.product_id::text
            else coalesce(events.page_url, events.event_type)
        end as object_name,
        null::numeric(14, 2) as amount,
        null::text as currency
    from {{ source('conformed', 'web_event') }} as events
    where not events.is_deleted and events.occurred_at is not null
),

orders as (
    select
        'order' as source_name,
        facts.order_id::text as source_id,
        facts.order_ordered_at as occurred_at,
        customers.customer_id,
        null::text as session_id,
        'order' as event_type,
        '{{ var("watershed_home_page", "https://shop.example.com") }}/orders/' || facts.order_id::text as object_id,
        'Order ' || facts.order_id::text as object_name,
        facts.order_net_amount_reporting as amount,
        facts.order_reporting_currency as currency
    from {{ ref('fct_orders') }} as facts
    inner join {{ ref('dim_customer') }} as customers on facts.customer_key = customers.customer_key
    where facts.order_status <> 'cancelled'
),

statements as (
    select * from events
    union all
    select * from orders
),

identified as (
    select
        statements.*,
        md5(statements.source_name || ':' || statements.source_id) as id_hash
    from statements
)

select
    substr(identified.id_hash, 1, 8) || '-' || substr(identified.id_hash, 9, 4) || '-5'
    || substr(identified.id_hash, 14, 3) || '-a' || substr(identified.id_hash, 18, 3) || '-'
    || substr(identified.id_hash, 21, 12) as ws_statement_id,
    identified.occurred_at as ws_timestamp,
    '{{ var("watershed_home_page", "https://shop.example.com") }}' as ws_actor_home_page,
    case
        when identified.customer_id is not null and identified.customer_id <> -1
            then {{ etl_platform.pii_hash("'customer:' || identified.customer_id::text", 'ws_actor_account') }}
        else {{ etl_platform.pii_hash("'session:' || coalesce(identified.session_id, identified.source_id)", 'ws_actor_account') }}
    end as ws_actor_account,
    verbs.verb_id as ws_verb_id,
    verbs.verb_display as ws_verb_display,
    identified.object_id as ws_object_id,
    verbs.activity_type as ws_object_type,
    identified.object_name as ws_object_name,
    identified.amount as ws_result_amount,
    identified.currency as ws_result_currency,
    identified.source_name as ws_source,
    identified.source_id as ws_source_id
from identified
inner join verbs on identified.event_type = verbs.event_type
where identified.occurred_at >= now() - interval '{{ var("retention_days", 1096) }} days'
