-- Current state of each sales order (deleted orders kept with is_deleted = true).
{{ etl_platform.current_config(['order_id']) }}

{{ etl_platform.current_from_history(
    ref('sales_order_history'),
    ['order_id'],
    ['customer_id', 'order_date', 'ordered_at', 'order_status', 'currency_code'],
) }}
