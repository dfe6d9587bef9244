-- Current state of each of the CRM contacts (deleted ones kept with is_deleted = true).
{{ etl_platform.current_config(['contact_id']) }}

{{ etl_platform.current_from_history(
    ref('crm_contact_history'),
    ['contact_id'],
    ['account_id', 'email', 'first_name', 'last_name', 'phone', 'title'],
) }}
