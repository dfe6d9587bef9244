-- Current state of each of the products (deleted ones kept with is_deleted = true).
{{ etl_platform.current_config(['product_id']) }}

{{ etl_platform.current_from_history(
    ref('product_history'),
    ['product_id'],
    ['sku', 'product_name', 'category', 'unit_price', 'currency_code', 'is_active'],
) }}
