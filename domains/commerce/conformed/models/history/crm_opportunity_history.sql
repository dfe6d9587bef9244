-- Change history (SCD type 2) of CRM opportunities (crm.opportunities, full pulls).
{{ etl_platform.history_config(['opportunity_id'], 'crm', 'opportunities', snapshot=true) }}

{{ etl_platform.scd2_history(
    ref('validated_crm_opportunity'),
    ['opportunity_id'],
    ['account_id', 'opportunity_name', 'stage', 'amount', 'currency_code', 'close_date'],
    change_time='updated_at', snapshot=true,
) }}
