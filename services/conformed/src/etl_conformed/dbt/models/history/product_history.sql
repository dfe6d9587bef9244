-- Change history (SCD type 2) of products (oltp.products, full pulls).
{{ history_config(['product_id'], 'oltp', 'products', snapshot=true) }}

{{ scd2_history(
    ref('validated_product'),
    ['product_id'],
    ['sku', 'product_name', 'category', 'unit_price', 'currency_code', 'is_active'],
    change_time='updated_at', snapshot=true,
) }}
