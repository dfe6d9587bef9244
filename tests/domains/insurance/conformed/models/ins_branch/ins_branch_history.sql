-- Change history (SCD type 2) of insurance.branches (a key absent from a full pull is deleted).
{{ etl_platform.history_config(['branch_code'], 'insurance', 'branches', snapshot=true) }}

{{ etl_platform.scd2_history(
    ref('validated_ins_branch'),
    ['branch_code'],
    ['branch_name', 'region'],
    snapshot=true,
) }}
