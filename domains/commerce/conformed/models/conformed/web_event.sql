-- Current state of each of the web events (deleted ones kept with is_deleted = true).
{{ etl_platform.current_config(['event_id']) }}

{{ etl_platform.current_from_history(
    ref('web_event_history'),
    ['event_id'],
    ['occurred_at', 'customer_id', 'session_id', 'event_type', 'product_id', 'page_url', 'user_agent'],
) }}
