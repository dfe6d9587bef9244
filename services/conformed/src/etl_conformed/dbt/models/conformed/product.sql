-- Current state of each of the products (deleted ones kept with is_deleted = true).
{{ current_config(['product_id']) }}

{{ current_from_history(
    ref('product_history'),
    ['product_id'],
    ['sku', 'product_name', 'category', 'unit_price', 'currency_code', 'is_active'],
) }}
