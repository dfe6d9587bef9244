-- Current state of each record of insurance.branches (deleted ones kept, is_deleted true).
{{ etl_platform.current_config(['branch_code']) }}

{{ etl_platform.current_from_history(
    ref('ins_branch_history'), ['branch_code'], ['branch_name', 'region']
) }}
