-- Change history (SCD type 2) of sales orders; incremental entity: every new pull of oltp.orders.
{{ etl_platform.history_config(['order_id'], 'oltp', 'orders') }}
{{ config(post_hook="{{ etl_platform.ensure_index(['order_date']) }}") }}

{{ etl_platform.scd2_history(
    ref('validated_sales_order'),
    ['order_id'],
    ['customer_id', 'order_date', 'ordered_at', 'order_status', 'currency_code'],
    change_time='updated_at',
    key_listing={'source': 'oltp', 'entity': 'orders', 'types': {'order_id': 'bigint'}},
) }}
