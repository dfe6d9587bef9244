-- The statements of the Watershed upload (docs/data-model.md, "Watershed upload"): one xAPI
-- statement per web behaviour event and per order of the retention window, kept as the platform's
-- change ledger (etl_platform.ledger_rows, docs/macros.md): a statement is immutable; a record that
-- changes gets a new statement (a new id) and its old one is marked voided, a record deleted or
-- cancelled has its statement voided. Each row carries the run that created or voided it, so the job
-- exports only what changed since its last export (meta etl_watershed_export: watershed_<run id>.*).
-- Incremental: only the web events and orders loaded into conformed (or rebuilt into fct_orders)
-- since the newest ws_source_loaded_at of their source here are compared. The actor is a
-- pseudonymous account (keyed hash of the customer id, or of the session for anonymous visitors).
-- Verbs and activity types per event type: seeds/xapi_verbs.csv. A change of the PII key, the home
-- page or the verbs changes statements the ledger does not compare again: rebuild with --full-refresh
-- (docs/runbook.md). Retention (meta etl_retention) by ws_timestamp.
{{ config(
    materialized='incremental',
    incremental_strategy='upsert',
    unique_key='ws_statement_id',
    on_schema_change='fail',
    meta={
        'etl_watershed_export': 'watershed',
        'etl_retention': {'column': 'ws_timestamp', 'keys': ['ws_statement_id']},
    },
    indexes=[{'columns': ['ws_source', 'ws_source_loaded_at']}, {'columns': ['ws_source', 'ws_source_id']}, {'columns': ['ws_run_id']}],
) }}

{%- set home_page = var("watershed_home_page", "https://shop.example.com") %}

with
{% if is_incremental() %}
    touched as (
        select
            'web_event' as ws_source,
            changed_events.event_id as ws_source_id
        from {{ source('conformed', 'web_event') }} as changed_events
        where changed_events.loaded_at > {{ etl_platform.newest_value(this, 'ws_source_loaded_at', "ws_source = 'web_event'") }}
        union
        select
            'order' as ws_source,
            changed_orders.order_id::text as ws_source_id
        from {{ source('conformed', 'sales_order') }} as changed_orders
        where changed_orders.loaded_at > {{ etl_platform.newest_value(this, 'ws_source_loaded_at', "ws_source = 'order'") }}
        union
        select
            'order' as ws_source,
            rebuilt_orders.order_id::text as ws_source_id
        from {{ ref('fct_orders') }} as rebuilt_orders
        where rebuilt_orders.order_source_loaded_at > {{ etl_platform.newest_value(this, 'ws_source_loaded_at', "ws_source = 'order'") }}
    ),
{% endif %}

verbs as (
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
                then '{{ home_page }}/products/' || events.product_id::text
            else '{{ home_page }}/' || coalesce(events.page_url, '')
        end as object_id,
        case
            when events.product_id is not null then 'Product ' || events.product_id::text
            else coalesce(events.page_url, events.event_type)
        end as object_name,
        null::numeric(14, 2) as amount,
        null::text as currency,
        events.loaded_at as source_loaded_at
    from {{ source('conformed', 'web_event') }} as events
    where
        not events.is_deleted and events.occurred_at is not null
        {% if is_incremental() %}
            and events.event_id in (
                select touched.ws_source_id from touched
                where touched.ws_source = 'web_event'
            )
        {% endif %}
),

orders as (
    select
        'order' as source_name,
        facts.order_id::text as source_id,
        facts.order_ordered_at as occurred_at,
        customers.customer_id,
        null::text as session_id,
        'order' as event_type,
        '{{ home_page }}/orders/' || facts.order_id::text as object_id,
        'Order ' || facts.order_id::text as object_name,
        facts.order_net_amount_reporting as amount,
        facts.order_reporting_currency as currency,
        facts.order_source_loaded_at as source_loaded_at
    from {{ ref('fct_orders') }} as facts
    inner join {{ ref('dim_customer') }} as customers on facts.customer_key = customers.customer_key
    where
        facts.order_status <> 'cancelled'
        {% if is_incremental() %}
            -- by order_id, not order_id::text: the index on fct_orders.order_id serves it (the
            -- cast read the whole table); the case keeps web events' ids from the cast
            and facts.order_id in (
                select case when touched.ws_source = 'order' then touched.ws_source_id::bigint end
                from touched
                where touched.ws_source = 'order'
            )
        {% endif %}
),

statements as (
    select * from events
    union all
    select * from orders
),

current_statements as (
    select
        statements.occurred_at as ws_timestamp,
        '{{ home_page }}' as ws_actor_home_page,
        case
            when statements.customer_id is not null and statements.customer_id <> -1
                then {{ etl_platform.pii_hash("'customer:' || statements.customer_id::text", 'ws_actor_account') }}
            else {{ etl_platform.pii_hash("'session:' || coalesce(statements.session_id, statements.source_id)", 'ws_actor_account') }}
        end as ws_actor_account,
        verbs.verb_id as ws_verb_id,
        verbs.verb_display as ws_verb_display,
        statements.object_id as ws_object_id,
        verbs.activity_type as ws_object_type,
        statements.object_name as ws_object_name,
        statements.amount as ws_result_amount,
        statements.currency as ws_result_currency,
        statements.source_name as ws_source,
        statements.source_id as ws_source_id,
        statements.source_loaded_at as ws_source_loaded_at
    from statements
    inner join verbs on statements.event_type = verbs.event_type
    where statements.occurred_at >= now() - interval '{{ var("retention_days", 1096) }} days'
),

{{ etl_platform.ledger_rows(
    'current_statements',
    key=['ws_source', 'ws_source_id'],
    content=[
        'ws_timestamp', 'ws_actor_home_page', 'ws_actor_account', 'ws_verb_id', 'ws_verb_display',
        'ws_object_id', 'ws_object_type', 'ws_object_name', 'ws_result_amount', 'ws_result_currency',
    ],
    extra=['ws_source_loaded_at'],
    id_column='ws_statement_id',
    prefix='ws',
    touched='touched',
) }}

select * from ledger
