-- Change history (SCD type 2) of customers (oltp.customers, full pulls: a customer absent from a pull is deleted).
{{ etl_platform.history_config(['customer_id'], 'oltp', 'customers', snapshot=true) }}

{{ etl_platform.scd2_history(
    ref('validated_customer'),
    ['customer_id'],
    ['email', 'first_name', 'last_name', 'phone', 'country_code', 'created_at'],
    change_time='updated_at', snapshot=true,
) }}
