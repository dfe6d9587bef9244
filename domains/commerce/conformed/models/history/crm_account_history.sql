-- Change history (SCD type 2) of CRM accounts (crm.accounts, full pulls).
{{ etl_platform.history_config(['account_id'], 'crm', 'accounts', snapshot=true) }}

{{ etl_platform.scd2_history(
    ref('validated_crm_account'),
    ['account_id'],
    ['account_name', 'industry', 'country_code', 'website', 'customer_email', 'created_at'],
    change_time='updated_at', snapshot=true,
) }}
