-- Current state of each of the CRM accounts (deleted ones kept with is_deleted = true).
{{ etl_platform.current_config(['account_id']) }}

{{ etl_platform.current_from_history(
    ref('crm_account_history'),
    ['account_id'],
    ['account_name', 'industry', 'country_code', 'website', 'customer_email', 'created_at'],
) }}
