-- Change history (SCD type 2) of insurance.claims (deletes from the key listing).
{{ etl_platform.history_config(['branch_code', 'policy_no', 'claim_no'], 'insurance', 'claims') }}

{{ etl_platform.scd2_history(
    ref('validated_ins_claim'),
    ['branch_code', 'policy_no', 'claim_no'],
    ['claim_date', 'amount'],
    change_time='updated_at',
    key_listing={'source': 'insurance', 'entity': 'claims', 'types': {'branch_code': 'char(4)', 'policy_no': 'integer', 'claim_no': 'integer'}},
) }}
