-- Change history (SCD type 2) of order lines (oltp.order_lines, incremental: every new pull).
{{ etl_platform.history_config(['order_id', 'line_number'], 'oltp', 'order_lines') }}

{{ etl_platform.scd2_history(
    ref('validated_sales_order_line'),
    ['order_id', 'line_number'],
    ['product_id', 'quantity', 'unit_price', 'discount_pct'],
    change_time='updated_at',
    key_listing={'source': 'oltp', 'entity': 'order_lines', 'types': {'order_id': 'bigint', 'line_number': 'integer'}},
) }}
