-- Change history (SCD type 2) of web events (web.web_events, incremental: events are never deleted by absence).
{{ etl_platform.history_config(['event_id'], 'web', 'web_events') }}

{{ etl_platform.scd2_history(
    ref('validated_web_event'),
    ['event_id'],
    ['occurred_at', 'customer_id', 'session_id', 'event_type', 'product_id', 'page_url', 'user_agent'],
    change_time='occurred_at',
) }}
