-- Change history (SCD type 2) of insurance.policies (deletes from the key listing).
{{ etl_platform.history_config(['branch_code', 'policy_no'], 'insurance', 'policies') }}

{{ etl_platform.scd2_history(
    ref('validated_ins_policy'),
    ['branch_code', 'policy_no'],
    ['holder', 'start_date', 'premium'],
    change_time='updated_at',
    key_listing={'source': 'insurance', 'entity': 'policies', 'types': {'branch_code': 'char(4)', 'policy_no': 'integer'}},
) }}
