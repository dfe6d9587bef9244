-- Policies (current state; deleted ones kept, flagged), plus the unknown member.
{{ config(unique_key='policy_key') }}
select
    {{ etl_platform.surrogate_key(['branch_code', 'policy_no']) }} as policy_key,
    branch_code as policy_branch_code,
    policy_no,
    holder as policy_holder,
    start_date as policy_start_date,
    premium as policy_premium,
    is_deleted as policy_is_deleted
from {{ source('conformed', 'ins_policy') }}
union all
select
    {{ etl_platform.unknown_key() }} as policy_key,
    '????'::char(4) as policy_branch_code,
    -1 as policy_no,
    null::char(20) as policy_holder,
    null::date as policy_start_date,
    null::numeric(15, 2) as policy_premium,
    false as policy_is_deleted
