-- Change history (SCD type 2) of CRM contacts (crm.contacts, full pulls).
{{ etl_platform.history_config(['contact_id'], 'crm', 'contacts', snapshot=true) }}

{{ etl_platform.scd2_history(
    ref('validated_crm_contact'),
    ['contact_id'],
    ['account_id', 'email', 'first_name', 'last_name', 'phone', 'title'],
    change_time='updated_at', snapshot=true,
) }}
