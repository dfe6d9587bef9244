-- Change history of the branches (full pulls: a branch absent from a pull is deleted).
{{ etl_platform.history_config(['branch_code'], 'insurance', 'branches', snapshot=true) }}

{{ etl_platform.scd2_history(ref('validated_ins_branch'), ['branch_code'], ['branch_name', 'region'], snapshot=true) }}
