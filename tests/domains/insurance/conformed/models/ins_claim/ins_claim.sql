-- Current state of each record of insurance.claims (deleted ones kept, is_deleted true).
{{ etl_platform.current_config(['branch_code', 'policy_no', 'claim_no']) }}

{{ etl_platform.current_from_history(
    ref('ins_claim_history'), ['branch_code', 'policy_no', 'claim_no'], ['claim_date', 'amount']
) }}
