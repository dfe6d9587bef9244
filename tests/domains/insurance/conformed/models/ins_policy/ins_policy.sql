-- Current state of each record of insurance.policies (deleted ones kept, is_deleted true).
{{ etl_platform.current_config(['branch_code', 'policy_no']) }}

{{ etl_platform.current_from_history(
    ref('ins_policy_history'), ['branch_code', 'policy_no'], ['holder', 'start_date', 'premium']
) }}
