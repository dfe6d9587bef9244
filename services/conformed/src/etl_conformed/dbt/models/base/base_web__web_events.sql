-- One row per record of the newest committed pull of web.web_events, typed; no joins, no rules.

with
{{ latest_pull_records('web', 'web_events') }},

renamed as (
    select
        {{ field('event_id') }} as event_id,
        {{ field('occurred_at') }}::timestamptz as occurred_at,
        {{ field('customer_id') }}::bigint as customer_id,
        {{ field('session_id') }} as session_id,
        {{ field('event_type') }} as event_type,
        {{ field('product_id') }}::bigint as product_id,
        {{ field('page_url') }} as page_url,
        {{ field('user_agent') }} as user_agent,
        {{ lineage_columns() }}
    from pull_records
)

select * from renamed
