-- Web behaviour events (web.web_events: CSV, JSON Lines and XML drops) of this run's pulls.
{{ etl_platform.validated_config('web_event') }}
-- depends_on: {{ ref('dq_rules') }} {{ source('ops', 'dq_results') }} (the post-hooks write the results the
-- threshold test reads: with both as parents, a failing test stops the entity's history)

with
{{ etl_platform.pull_records('web', 'web_events', 'web_event_history') }},

-- MATERIALIZED: each typed value is computed once per record; inlined, every rule and output column
-- repeating it would parse the record again (2.7x slower, bench/README.md).
typed as materialized (
    select
        {{ etl_platform.field('event_id') }} as event_id,
        {{ etl_platform.try_cast(etl_platform.field('occurred_at'), 'timestamptz') }} as occurred_at,
        {{ etl_platform.try_cast(etl_platform.field('customer_id'), 'bigint') }} as customer_id,
        {{ etl_platform.field('session_id') }} as session_id,
        lower({{ etl_platform.field('event_type') }}) as event_type,
        {{ etl_platform.try_cast(etl_platform.field('product_id'), 'bigint') }} as product_id,
        {{ etl_platform.field('page_url') }} as page_url,
        {{ etl_platform.field('user_agent') }} as user_agent,
        {{ etl_platform.deleted_flag() }} as is_deleted,
        {{ etl_platform.record_origin() }},
        pull_records.record_file,
        pull_records.column_names,
        pull_records.record
    from pull_records
),

checked as (
    select
        typed.*,
        {{ etl_platform.dq_failures([
            ('web_event.event_id_present', 'event_id is not null'),
            ('web_event.occurred_at_valid', 'occurred_at is not null'),
            ('web_event.event_type_accepted',
                "event_type in ('page_view', 'product_view', 'add_to_cart', 'checkout', 'search')"),
        ]) }} as dq_failed
    from typed
)

select
    event_id,
    occurred_at,
    customer_id,
    session_id,
    event_type,
    product_id,
    page_url,
    user_agent,
    is_deleted,
    -- the drop file each event came from (staging.pull_batches.origin)
    record_file,
    {{ etl_platform.dq_columns('checked') }}
from checked
