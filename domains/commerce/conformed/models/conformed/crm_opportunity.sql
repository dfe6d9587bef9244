-- Current state of each of the CRM opportunities (deleted ones kept with is_deleted = true).
{{ etl_platform.current_config(['opportunity_id']) }}

{{ etl_platform.current_from_history(
    ref('crm_opportunity_history'),
    ['opportunity_id'],
    ['account_id', 'opportunity_name', 'stage', 'amount', 'currency_code', 'close_date'],
) }}
