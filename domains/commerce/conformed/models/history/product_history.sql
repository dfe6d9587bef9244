-- Change history (SCD type 2) of products (oltp.products, full pulls).
{{ etl_platform.history_config(['product_id'], 'oltp', 'products', snapshot=true) }}

{{ etl_platform.scd2_history(
    ref('validated_product'),
    ['product_id'],
    ['sku', 'product_name', 'category', 'unit_price', 'currency_code', 'is_active'],
    change_time='updated_at', snapshot=true,
) }}
